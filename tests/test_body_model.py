"""The body model builder: the dm_control rodent through MjSpec, scaled, with keypoint sites."""

import hashlib
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml

from mimic_nwb.body_model import (
    KEYPOINT_SITE_PREFIX,
    build_body_model,
    load_site_map,
    set_site_offsets,
)
from mimic_nwb.data import data_path

SITES = data_path("rat23_rodent_sites.yaml")


@pytest.fixture(scope="module")
def rat():
    return build_body_model(SITES)


@pytest.fixture(scope="module")
def rat_unscaled():
    return build_body_model(SITES, scale=1.0)


def test_rodent_structure(rat):
    m = rat.model
    assert (m.nq, m.nv, m.nu) == (74, 73, 38)
    assert rat.model_name == "rat"
    assert rat.scale == 0.9  # from the site map
    assert rat.qpos_names[:7] == ("root_x", "root_y", "root_z", "root_qw", "root_qx", "root_qy", "root_qz")
    assert rat.qpos_units[:7] == ("meters",) * 3 + ("dimensionless",) * 4
    assert rat.qvel_names[:6] == ("root_vx", "root_vy", "root_vz", "root_wx", "root_wy", "root_wz")
    assert rat.qvel_units[:6] == ("meters/second",) * 3 + ("radians/second",) * 3
    assert len(rat.qpos_names) == len(rat.qpos_units) == m.nq
    assert len(rat.qvel_names) == len(rat.qvel_units) == m.nv
    assert set(rat.qpos_units[7:]) == {"radians"} and set(rat.qvel_units[6:]) == {"radians/second"}
    assert rat.qpos_names[7] == mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, 1)
    assert len(rat.actuator_names) == 38 and rat.body_names[0] == "world"
    assert rat.timestep == pytest.approx(m.opt.timestep)
    assert rat.mujoco_version == mujoco.__version__
    assert m.geom(mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "floor")).type == mujoco.mjtGeom.mjGEOM_PLANE


def test_torque_actuators_keep_the_activation_filter(rat):
    m = rat.model
    # Gain = force range (dm_control torque_actuators=True), no bias ...
    np.testing.assert_allclose(m.actuator_gainprm[:, 0], m.actuator_forcerange[:, 1])
    assert np.all(m.actuator_biastype == mujoco.mjtBias.mjBIAS_NONE)
    # ... and the declared 40 ms first-order filter is still there: controls are not forces.
    assert np.all(m.actuator_dyntype == mujoco.mjtDyn.mjDYN_FILTER)
    np.testing.assert_allclose(m.actuator_dynprm[:, 0], 0.04)
    np.testing.assert_allclose(m.actuator_ctrlrange, np.tile([-1.0, 1.0], (38, 1)))
    assert (m.actuator_trntype == mujoco.mjtTrn.mjTRN_TENDON).sum() == 8
    declared = build_body_model(SITES, actuators="as_declared").model
    assert np.all(declared.actuator_biastype == mujoco.mjtBias.mjBIAS_AFFINE)
    # "auto" (the default): every rodent actuator declares a force range, so torque.
    assert rat.actuator_kind == "torque"
    with pytest.raises(ValueError, match="actuators"):
        build_body_model(SITES, actuators="muscle")


# MuJoCo's XML writer keeps 6 significant digits, and the model is compiled from that text.
XML_PRECISION = dict(rtol=1e-5, atol=1e-10)


def test_scaling(rat, rat_unscaled):
    a, b = rat.model, rat_unscaled.model
    for field in ("body_pos", "jnt_pos", "geom_pos", "site_pos"):
        x, y = getattr(a, field), getattr(b, field)
        np.testing.assert_allclose(x, 0.9 * y, **XML_PRECISION, err_msg=field)
    body_geoms = a.geom_type != mujoco.mjtGeom.mjGEOM_PLANE
    np.testing.assert_allclose(a.geom_size[body_geoms, 0], 0.9 * b.geom_size[body_geoms, 0], **XML_PRECISION)
    np.testing.assert_allclose(a.body_subtreemass[1], 0.9**3 * b.body_subtreemass[1], rtol=1e-4)
    # Site-map offsets are for the unscaled model: they are scaled with it.
    sm = load_site_map(SITES)
    for k, name in enumerate(rat.keypoint_names):
        np.testing.assert_allclose(rat.initial_offsets[k], 0.9 * np.array(sm.sites[name][1]), **XML_PRECISION)


def test_keypoint_sites(rat):
    m = rat.model
    sm = load_site_map(SITES)
    assert rat.keypoint_names == sm.keypoint_names
    assert len(rat.keypoint_site_ids) == 23
    for k, name in enumerate(rat.keypoint_names):
        sid = rat.keypoint_site_ids[k]
        assert m.site(sid).name == KEYPOINT_SITE_PREFIX + name
        assert rat.keypoint_bodies[k] == sm.sites[name][0] == m.body(m.site_bodyid[sid]).name
    ordered = build_body_model(SITES, keypoint_names=["HandR", "Snout"])
    assert ordered.keypoint_names == ("HandR", "Snout")
    assert ordered.keypoint_bodies == ("hand_R", "skull")


def test_xml_compiles_alone(rat):
    assert "file=" not in rat.xml and dict(rat.assets) == {}  # the skin (.skn) is dropped
    fresh = mujoco.MjModel.from_xml_string(rat.xml)
    assert (fresh.nq, fresh.nu, fresh.nsite) == (rat.model.nq, rat.model.nu, rat.model.nsite)
    np.testing.assert_array_equal(fresh.body_pos, rat.model.body_pos)
    assert rat.xml_sha256 == hashlib.sha256(rat.xml.encode()).hexdigest()
    d = mujoco.MjData(fresh)
    mujoco.mj_step(fresh, d)  # simulates
    assert np.all(np.isfinite(d.qpos))


def test_site_map_errors(tmp_path):
    with pytest.raises(ValueError, match="keypoint 'Tail' is not in the site map"):
        build_body_model(SITES, keypoint_names=["Snout", "Tail"])
    raw = yaml.safe_load(SITES.read_text())
    raw["sites"]["Snout"] = ["nose_body", 0.0, 0.0, 0.0]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="keypoint 'Snout' is on body 'nose_body'.*does not have"):
        build_body_model(bad)
    raw["sites"]["Snout"] = ["skull", 0.0, 0.0]
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="site 'Snout' must be \\[body, x, y, z\\]"):
        load_site_map(bad)
    raw["sites"]["Snout"] = ["skull", 0.0, 0.0, 0.0]
    raw["trunk_keypoints"] = ["SpineX"]
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="trunk_keypoints names 'SpineX'"):
        load_site_map(bad)
    with pytest.raises(ValueError, match="needs a 'sites' mapping"):
        load_site_map({"root_keypoint": "SpineL"})


def test_set_site_offsets_with_sameframe_sites(rat):
    model = mujoco.MjModel.from_xml_string(rat.xml)  # a private copy to modify
    data = mujoco.MjData(model)
    k = rat.keypoint_names.index("Snout")  # zero offset in the site map
    sid = int(rat.keypoint_site_ids[k])
    assert model.site_sameframe[sid] == mujoco.mjtSameFrame.mjSAMEFRAME_BODY
    offset = np.array([0.03, -0.004, 0.01])

    # The pitfall: writing site_pos alone changes nothing for a sameframe site.
    model.site_pos[sid] = offset
    mujoco.mj_kinematics(model, data)
    body = model.site_bodyid[sid]
    np.testing.assert_allclose(data.site_xpos[sid], data.xpos[body])

    set_site_offsets(model, [sid], offset[None])
    mujoco.mj_kinematics(model, data)
    expected = data.xpos[body] + data.xmat[body].reshape(3, 3) @ offset
    np.testing.assert_allclose(data.site_xpos[sid], expected, atol=1e-12)
    with pytest.raises(ValueError, match="offsets"):
        set_site_offsets(model, [sid], np.zeros((2, 3)))


def test_with_site_offsets(rat):
    offsets = rat.initial_offsets + 0.002
    moved = rat.with_site_offsets(offsets)
    np.testing.assert_allclose(moved.initial_offsets, offsets, **XML_PRECISION)
    np.testing.assert_allclose(moved.model.site_pos[moved.keypoint_site_ids], offsets, **XML_PRECISION)
    assert moved.xml_sha256 != rat.xml_sha256 and moved.scale == rat.scale
    fresh = mujoco.MjModel.from_xml_string(moved.xml)
    np.testing.assert_allclose(fresh.site_pos[moved.keypoint_site_ids], offsets, **XML_PRECISION)


def test_skin_kept_and_scaled_with_the_model(rat):
    skinned = build_body_model(SITES, skins=True)
    unscaled = build_body_model(SITES, skins=True, scale=1.0)
    source = (Path(rat.source).parent / "rodent_walker_skin.skn").read_bytes()
    assert dict(unscaled.assets) == {"rodent_walker_skin.skn": source}
    assert skinned.model.nskin == 1 and len(skinned.assets["rodent_walker_skin.skn"]) == len(source)
    # Vertices and bone bind positions follow the bodies: the skin stays on the scaled rat.
    a, b = skinned.model, unscaled.model
    np.testing.assert_allclose(a.skin_vert, 0.9 * b.skin_vert, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a.skin_bonebindpos, 0.9 * b.skin_bonebindpos, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(a.skin_face, b.skin_face)
    np.testing.assert_array_equal(a.skin_bonevertweight, b.skin_bonevertweight)
    fresh = mujoco.MjModel.from_xml_string(skinned.xml, dict(skinned.assets))
    np.testing.assert_array_equal(fresh.skin_vert, a.skin_vert)

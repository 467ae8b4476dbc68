"""Body models written by others: file assets, their own floor, bodies without mass, and
dm_control's dog (a second quadruped, 162 STL meshes) registered by STAC to keypoints made
from it with a known pose.

Tolerances for the dog (noise-free keypoints, 27 sites, 79 of its 85 degrees of freedom
observed, true offsets 3 mm away from the site map's): the fitted model keypoints lie within
1 mm of the true ones on average and 5 mm at most (measured 0.35 and 1.4 mm: the redundant
spine, neck and tail chains leave a little slack), the root within 1 cm (measured 5.6 mm), and
calibration moves the offsets toward the truth (measured 4.8 -> 3.8 mm: keypoints at joint
centres do not tell their offsets from the pose).
"""

import struct
import zlib
from datetime import datetime, timezone
from pathlib import Path

import mujoco
import numpy as np
import pytest
import yaml
from ndx_pose import Skeletons
from pynwb import NWBHDF5IO, NWBFile

from mimic_nwb.body_model import MjcfError, build_body_model
from mimic_nwb.errors import InputError
from mimic_nwb.session import append, read_session
from mimic_nwb.stac import StacConfig, model_keypoint_positions, run_stac
from mimic_nwb.stac.nwb import stac
from mimic_nwb.writers import body_model_to_nwb
from ndx_mimic.testing import mock

from helpers import new_session

# --------------------------------------------------------------------------------------------
# Files as other tools write them
# --------------------------------------------------------------------------------------------


def stl_box(half):
    """Binary STL of a closed box of half-sizes ``half`` (m), faces wound outward."""
    hx, hy, hz = half
    v = np.array([[x, y, z] for x in (-hx, hx) for y in (-hy, hy) for z in (-hz, hz)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    triangles = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    out = bytearray(b"\0" * 80 + struct.pack("<I", len(triangles)))
    for tri in triangles:
        p = v[list(tri)]
        normal = np.cross(p[1] - p[0], p[2] - p[0])
        out += struct.pack("<12fH", *(normal / np.linalg.norm(normal)), *p.ravel(), 0)
    return bytes(out)


def png(width, height, rgb):
    """An RGB PNG of one colour."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write_model(folder: Path, body="", world="", compiler='meshdir="meshes" texturedir="textures"'):
    """A two-body animal whose bones are STL meshes in ``meshes/`` (two files share the name
    ``bone.stl`` in different folders) with a PNG texture in ``textures/``."""
    (folder / "meshes" / "left").mkdir(parents=True)
    (folder / "textures").mkdir()
    (folder / "meshes" / "bone.stl").write_bytes(stl_box((0.05, 0.02, 0.02)))
    (folder / "meshes" / "left" / "bone.stl").write_bytes(stl_box((0.03, 0.01, 0.01)))
    (folder / "textures" / "fur.png").write_bytes(png(4, 4, (200, 120, 40)))
    path = folder / "animal.xml"
    path.write_text(f"""
<mujoco model="animal">
  <compiler {compiler}/>
  <asset>
    <mesh name="trunk" file="bone.stl"/>
    <mesh name="leg" file="left/bone.stl"/>
    <texture name="fur" type="2d" file="fur.png"/>
    <material name="fur" texture="fur"/>
  </asset>
  <worldbody>
    {world}
    <body name="trunk" pos="0 0 0.1">
      <geom type="mesh" mesh="trunk" material="fur" density="1000"/>
      <body name="leg" pos="0.05 0 -0.03">
        <joint name="hip" type="hinge" axis="0 1 0" range="-1 1"/>
        {body}
      </body>
    </body>
  </worldbody>
</mujoco>""")
    return path


LEG = '<geom type="mesh" mesh="leg" density="1000"/>'
SITES = {"sites": {"Back": ["trunk", 0.0, 0.0, 0.02], "Foot": ["leg", 0.0, 0.0, -0.02]}}


def compiled_from_file_alone(body_model, path):
    """The BodyModel written to an NWB file, read back and compiled from the file's contents."""
    nwbfile = NWBFile("body model", "id", datetime(2024, 1, 1, tzinfo=timezone.utc))
    nwbfile.create_processing_module("mimic", "derived").add(body_model_to_nwb(body_model))
    with NWBHDF5IO(path, "w") as io:
        io.write(nwbfile)
    with NWBHDF5IO(path, "r") as io:
        stored = io.read().processing["mimic"]["BodyModel"]
        assets = stored.assets
        return mujoco.MjModel.from_xml_string(stored.mjcf, assets), assets


# --------------------------------------------------------------------------------------------
# File assets
# --------------------------------------------------------------------------------------------


def test_file_assets_are_stored_and_the_model_compiles_from_them(tmp_path, monkeypatch):
    path = write_model(tmp_path / "src", body=LEG)
    bm = build_body_model(SITES, mjcf=path)
    files = {
        "bone.stl": (tmp_path / "src/meshes/bone.stl").read_bytes(),
        "bone_1.stl": (tmp_path / "src/meshes/left/bone.stl").read_bytes(),
        "fur.png": (tmp_path / "src/textures/fur.png").read_bytes(),
    }
    assert dict(bm.assets) == files  # byte for byte, one plain name per distinct file
    assert "meshdir" not in bm.xml and "texturedir" not in bm.xml and "left/" not in bm.xml
    assert (bm.model.nmesh, bm.model.ntex) == (2, 1)
    assert bm.model.body_mass[bm.model.body("leg").id] == pytest.approx(1000 * 0.06 * 0.02 * 0.02, rel=1e-3)

    # Elsewhere, with the source folder gone: the text and the assets are enough, also after
    # moving the sites (recompiled) and after a round trip through an NWB file.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").rename(tmp_path / "gone")
    fresh = mujoco.MjModel.from_xml_string(bm.xml, dict(bm.assets))
    np.testing.assert_array_equal(fresh.mesh_vert, bm.model.mesh_vert)
    moved = bm.with_site_offsets(bm.initial_offsets + 0.001)
    assert dict(moved.assets) == files
    stored, assets = compiled_from_file_alone(moved, tmp_path / "animal.nwb")
    assert assets == files
    np.testing.assert_array_equal(stored.mesh_vert, bm.model.mesh_vert)
    np.testing.assert_allclose(stored.site_pos[moved.keypoint_site_ids], bm.initial_offsets + 0.001, rtol=1e-5)


def test_asset_paths_resolve_as_mujoco_resolves_them(tmp_path):
    # assetdir sets both folders; an absolute path is used as written.
    path = write_model(tmp_path, body=LEG, compiler='assetdir="meshes"')
    (tmp_path / "meshes" / "fur.png").write_bytes((tmp_path / "textures" / "fur.png").read_bytes())
    text = path.read_text().replace('file="left/bone.stl"', f'file="{tmp_path / "meshes/left/bone.stl"}"')
    path.write_text(text)
    bm = build_body_model(SITES, mjcf=path)
    assert sorted(bm.assets) == ["bone.stl", "bone_1.stl", "fur.png"]
    small = stl_box((0.03, 0.01, 0.01))
    assert bm.assets["bone_1.stl"] == small

    # Scaled: the mesh scale carries the factor, the stored files stay as they were.
    half = build_body_model(SITES, mjcf=path, scale=0.5)
    assert half.assets["bone_1.stl"] == small
    np.testing.assert_allclose(half.model.mesh_vert, 0.5 * bm.model.mesh_vert, rtol=1e-5, atol=1e-9)


def test_missing_asset_file_is_one_line(tmp_path):
    path = write_model(tmp_path, body=LEG)
    (tmp_path / "meshes" / "left" / "bone.stl").unlink()
    with pytest.raises(
        MjcfError, match=r"animal.xml reads mesh 'leg' from 'left/bone.stl': cannot read .*bone.stl"
    ) as err:
        build_body_model(SITES, mjcf=path)
    assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------
# The model's own floor
# --------------------------------------------------------------------------------------------


def planes(bm):
    m = bm.model
    return [m.geom(i).name for i in range(m.ngeom) if m.geom_type[i] == mujoco.mjtGeom.mjGEOM_PLANE]


def test_own_ground_plane_is_kept(tmp_path):
    # Any name, any way of writing its orientation: one floor, no "repeated name 'floor'".
    for i, ground in enumerate(
        [
            '<geom name="floor" type="plane" size="5 5 .1"/>',
            '<geom name="ground" type="plane" size="5 5 .1" euler="0 0 30"/>',
            '<frame euler="0 0 90"><geom name="arena" type="plane" size="5 5 .1"/></frame>',
            '<geom type="plane" size="5 5 .1"/>',
        ]
    ):
        bm = build_body_model(SITES, mjcf=write_model(tmp_path / str(i), body=LEG, world=ground))
        assert len(planes(bm)) == 1, ground
    # Not a ground: a wall, and a box that happens to be called floor.
    world = '<geom name="wall" type="plane" size="5 5 .1" zaxis="1 0 0"/><geom name="floor" type="box" size=".1 .1 .1" pos="1 1 0"/>'
    bm = build_body_model(SITES, mjcf=write_model(tmp_path / "walls", body=LEG, world=world))
    assert planes(bm) == ["wall", "floor_1"]
    assert bm.model.geom("floor_1").pos[2] == 0
    # A height field on the world body is the ground too.
    hfield = tmp_path / "terrain"
    write_model(hfield, body=LEG)
    (hfield / "meshes" / "terrain.bin").write_bytes(struct.pack("<2i", 2, 2) + np.zeros(4, "<f4").tobytes())
    text = (hfield / "animal.xml").read_text()
    text = text.replace("<asset>", '<asset><hfield name="terrain" file="terrain.bin" size="2 2 0.1 0.05"/>')
    text = text.replace('<body name="trunk"', '<geom type="hfield" hfield="terrain"/><body name="trunk"')
    (hfield / "animal.xml").write_text(text)
    bm = build_body_model(SITES, mjcf=hfield / "animal.xml", scale=2.0)
    assert planes(bm) == [] and "terrain.bin" in bm.assets
    np.testing.assert_allclose(bm.model.hfield_size[0], [4, 4, 0.2, 0.1])


def test_ground_plane_away_from_zero_is_refused(tmp_path):
    path = write_model(tmp_path, body=LEG, world='<geom name="ground" type="plane" size="5 5 .1" pos="0 0 0.2"/>')
    with pytest.raises(MjcfError, match=r"ground plane 'ground' lies at z = 0.2 m; the floor must be at z = 0"):
        build_body_model(SITES, mjcf=path)
    assert len(planes(build_body_model(SITES, mjcf=path, floor=False))) == 1


# --------------------------------------------------------------------------------------------
# Bodies without mass
# --------------------------------------------------------------------------------------------


def test_moving_body_without_mass_is_named(tmp_path):
    # The leg's mesh removed: its hinge moves a body that has nothing to weigh.
    path = write_model(tmp_path / "a", body="")
    with pytest.raises(MjcfError, match=r"^mjcf: animal.xml: moving body 'leg' without mass") as err:
        build_body_model(SITES, mjcf=path)
    assert "\n" not in str(err.value)
    text = path.read_text().replace(
        "</body>\n    </body>",
        '</body>\n      <body name="tail" pos="-0.05 0 0"><joint name="wag" axis="0 0 1"/></body>\n    </body>',
    )
    path.write_text(text)
    with pytest.raises(MjcfError, match=r"moving bodies 'leg', 'tail' without mass"):
        build_body_model(SITES, mjcf=path)
    # Other refusals are one line naming the file too.
    bad = write_model(tmp_path / "b", body=LEG.replace('mesh="leg"', 'mesh="arm"'))
    with pytest.raises(MjcfError, match=r"^mjcf: animal.xml does not compile: .*arm") as err:
        build_body_model(SITES, mjcf=bad)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------
# dm_control's dog
# --------------------------------------------------------------------------------------------


def dog_mjcf():
    import dm_control

    return Path(dm_control.__file__).parent / "suite" / "dog.xml"


DOG_SITES = {
    "Snout": ["skull", 0.1, 0.0, 0.0],
    "EarL": ["skull", 0.0, 0.04, 0.04],
    "EarR": ["skull", 0.0, -0.04, 0.04],
    "Jaw": ["jaw", 0.05, 0.0, 0.0],
    "Neck": ["C_4", 0.0, 0.0, 0.0],
    "Withers": ["torso", 0.08, 0.0, 0.12],
    "SpineM": ["L_4", 0.0, 0.0, 0.0],
    "Pelvis": ["pelvis", 0.0, 0.0, 0.0],
    "TailBase": ["Ca_1", 0.0, 0.0, 0.0],
    "TailMid": ["Ca_10", 0.0, 0.0, 0.0],
    "TailTip": ["Ca_21", 0.0, 0.0, 0.0],
    **{
        f"{joint}{side}": [f"{body}_{side}", 0.0, 0.0, 0.0]
        for side in "LR"
        for joint, body in (
            ("Shoulder", "upper_arm"),
            ("Elbow", "lower_arm"),
            ("Wrist", "hand"),
            ("Paw", "finger"),
            ("Hip", "upper_leg"),
            ("Knee", "lower_leg"),
            ("Ankle", "foot"),
            ("Toe", "toe"),
        )
    },
}
DOG_SITE_MAP = {
    "skeleton": "dog27",
    "sites": DOG_SITES,
    "root_keypoint": "SpineM",
    "trunk_keypoints": ["Withers", "SpineM", "Pelvis", "ShoulderL", "ShoulderR", "HipL", "HipR"],
    "regularized_keypoints": ["Withers", "SpineM", "Pelvis"],
}


@pytest.fixture(scope="module")
def dog():
    return build_body_model(DOG_SITE_MAP, mjcf=dog_mjcf(), skins=True)


def test_dog_builds_with_its_meshes_floor_and_skin(dog):
    m = dog.model
    assert (m.nq, m.nmesh, m.nskin) == (87, 162, 1)  # 80 + the ball's free joint
    assert dog.model_name == "dog" and len(dog.keypoint_names) == 27
    assert dog.actuator_kind == "as_declared"  # its actuators declare gains, no force range
    assert [m.geom(i).name for i in range(m.ngeom) if m.geom_type[i] == mujoco.mjtGeom.mjGEOM_PLANE] == [
        "floor",
        "wall_px",
        "wall_py",
        "wall_nx",
        "wall_ny",
    ]
    folder = dog_mjcf().parent / "dog_assets"
    assert dog.assets["BONEC_1.stl"] == (folder / "BONEC_1.stl").read_bytes()
    assert dog.assets["dog_skin.skn"] == (folder / "dog_skin.skn").read_bytes()
    assert {"skin_texture.png", "tennis_ball.png"} <= set(dog.assets)


def test_dog_model_compiles_from_the_nwb_file_alone(dog, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing of dm_control's folder is reachable by a relative path
    model, assets = compiled_from_file_alone(dog, tmp_path / "dog.nwb")
    assert assets == dict(dog.assets)
    assert (model.nq, model.nmesh, model.nskin, model.ntex) == (87, 162, 1, 4)
    np.testing.assert_array_equal(model.mesh_vert, dog.model.mesh_vert)
    np.testing.assert_allclose(model.body_mass, dog.model.body_mass, rtol=1e-6)


def dog_clip(bm, n_frames, seed=0):
    """Ground truth from the dog itself: every limited hinge follows a sinusoid inside its range
    (0.5-1.5 Hz at 50 Hz); the root walks 20 cm turning a quarter turn, 10 cm higher than the
    model stands, so that no limb reaches through the floor (STAC keeps every geom above it);
    offsets = the site map's, moved by 3 mm per axis except for the regularised keypoints.
    Returns qpos (T, nq), offsets (K, 3) and keypoints (T, K, 3), metres."""
    rng = np.random.default_rng(seed)
    m = bm.model
    t = np.arange(n_frames) / 50.0
    qpos = np.tile(m.qpos0, (n_frames, 1))
    for j in range(m.njnt):
        if m.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE or not m.jnt_limited[j]:
            continue
        lo, hi = m.jnt_range[j]
        center = np.clip(0.0, lo + 0.25 * (hi - lo), hi - 0.25 * (hi - lo))
        amp = 0.5 * min(center - lo, hi - center)
        qpos[:, m.jnt_qposadr[j]] = center + amp * np.sin(
            2 * np.pi * rng.uniform(0.5, 1.5) * t + rng.uniform(0, 2 * np.pi)
        )
    heading = np.linspace(0, np.pi / 2, n_frames)
    qpos[:, 0] = np.linspace(0.0, 0.2, n_frames)
    qpos[:, 2] += 0.1
    qpos[:, 3], qpos[:, 6] = np.cos(heading / 2), np.sin(heading / 2)
    regularized = np.isin(bm.keypoint_names, bm.site_map.regularized_keypoints)
    offsets = bm.initial_offsets + np.where(regularized[:, None], 0.0, rng.normal(0, 0.003, (len(regularized), 3)))
    return qpos, offsets, model_keypoint_positions(bm, qpos, offsets)


def test_dog_registered_to_keypoints_made_from_it(dog):
    qpos, offsets, keypoints = dog_clip(dog, 30)
    config = StacConfig(
        n_workers=1,
        n_calibration_frames=10,
        n_calibration_rounds=2,
        up_direction=(0.0, 0.0, 1.0),
        floor_height=0.0,
        # The random ground-truth pose puts the tail inside the pelvis: the self-contact term
        # would push the fit away from it.
        contact_weight=0.0,
    )
    result = run_stac(keypoints, dog, config)
    assert result.valid.all() and result.calibrated
    to_truth = np.linalg.norm(result.model_keypoints - keypoints, axis=2)
    assert to_truth.mean() < 0.001 and to_truth.max() < 0.005
    assert np.linalg.norm(result.qpos[:, :3] - qpos[:, :3], axis=1).mean() < 0.01
    start = np.linalg.norm(dog.initial_offsets - offsets, axis=1).mean()
    assert np.linalg.norm(result.offsets - offsets, axis=1).mean() < start
    # The ball is no part of the dog: no keypoint moves it, it stays where the model puts it.
    ball = dog.model.jnt_qposadr[dog.model.joint("ball_root").id]
    np.testing.assert_array_equal(result.qpos[:, ball : ball + 7], np.tile(dog.model.qpos0[ball : ball + 7], (30, 1)))


def test_dog_through_the_stac_stage_compiles_from_the_session_alone(dog, tmp_path, monkeypatch):

    # 90 frames: the stage refuses a clip shorter than its widest series (qpos, 87 columns).
    qpos, _, keypoints = dog_clip(dog, 90, seed=4)
    path = new_session(tmp_path, subject_id="dog-01", species="Canis familiaris")
    with append(path) as s:
        skeleton = mock.mock_Skeleton(name="dog27", nodes=list(dog.keypoint_names), edges=np.zeros((0, 2), "uint8"))
        behavior = s.module("behavior", "keypoints")
        behavior.add(Skeletons(skeletons=[skeleton]))
        behavior.add(mock.mock_PoseEstimation(skeleton=skeleton, positions=keypoints))
    site_map = tmp_path / "dog27_sites.yaml"
    site_map.write_text(yaml.safe_dump(DOG_SITE_MAP))
    config = StacConfig(
        n_workers=1,
        n_calibration_frames=10,
        n_calibration_rounds=2,
        up_direction=(0.0, 0.0, 1.0),
        floor_height=0.0,
        # The random ground-truth pose puts the tail inside the pelvis: the self-contact term
        # would push the fit away from it.
        contact_weight=0.0,
    )
    stac(path, config, site_map=site_map, mjcf=dog_mjcf())

    monkeypatch.chdir(tmp_path)
    with read_session(path) as nwbfile:
        mimic = nwbfile.processing["mimic"]
        stored = mimic["BodyModel"]
        model = mujoco.MjModel.from_xml_string(stored.mjcf, stored.assets)
        assert (model.nq, model.nmesh) == (87, 162) and model.nskin == 0  # skins dropped by default
        registration = mimic["StacRegistration"]
        fitted = np.asarray(registration.qpos.data[:])
    data = mujoco.MjData(model)
    sites = [model.site(f"keypoint_{n}").id for n in dog.keypoint_names]
    error = []
    for t, q in enumerate(fitted):  # the stored model at the stored poses puts its sites on the keypoints
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        error.append(np.linalg.norm(data.site_xpos[sites] - keypoints[t], axis=1))
    assert np.mean(error) < 0.001 and np.max(error) < 0.005

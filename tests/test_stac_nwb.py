"""STAC on a session file: BodyModel + StacRegistration appended, valid, reusable offsets, bad inputs."""

import mujoco
import numpy as np
import pytest
import scipy.io
import yaml
from pynwb import validate

from mimic_nwb.cli import main
from mimic_nwb.data import data_path
from mimic_nwb.errors import InputError
from mimic_nwb.importers.keypoints import KeypointImportConfig, import_keypoints
from mimic_nwb.session import read_session
from mimic_nwb.stac import StacConfig
from mimic_nwb.stac.geometry import body_penetration, self_contact_depth
from mimic_nwb.stac.nwb import stac_session
from ndx_mimic.mimic import pose_as_array

from helpers import digest, new_session

FAST = StacConfig(n_workers=1, n_calibration_frames=40, n_calibration_rounds=2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The first 200 frames of the real rat clip, as a DANNCE file."""
    folder = tmp_path_factory.mktemp("clip")
    pred = scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"][:200]
    path = folder / "clip200.mat"
    scipy.io.savemat(path, {"pred": pred})
    return path


@pytest.fixture(scope="module")
def registered(clip, tmp_path_factory):
    path = new_session(tmp_path_factory.mktemp("stac"))
    import_keypoints(path, clip, KeypointImportConfig(skeleton="rat23", rate=50.0))
    summary, result = stac_session(path, config=FAST, progress=False)
    return path, summary, result


def test_registration_is_appended_and_valid(registered):
    path, summary, result = registered
    assert "200 of 200 frames fitted" in summary
    with read_session(path) as nwbfile:
        mimic = nwbfile.processing["mimic"]
        stac, body_model = mimic["StacRegistration"], mimic["BodyModel"]
        assert stac.body_model is body_model
        assert stac.pose_estimation is nwbfile.processing["behavior"]["PoseEstimation"]
        assert stac.qpos.data.shape == (200, 74) and len(body_model.qpos_names) == 74
        assert stac.qpos.rate == 50.0
        np.testing.assert_allclose(stac.qpos.data[:], result.qpos)
        # model keypoints overlay the data: same frame, a few millimetres apart
        data = pose_as_array(stac.pose_estimation)
        distance = np.linalg.norm(stac.model_keypoints_array() - data, axis=2)
        np.testing.assert_allclose(np.nanmean(distance), stac.mean_error, rtol=1e-6)
        assert stac.mean_error < 0.004
        sites = stac.keypoint_sites.to_dataframe()
        assert set(sites.loc[sites.regularized, "keypoint"]) == {"HandL", "HandR", "SpineF", "SpineL", "SpineM"}
        assert body_model.actuator_kind == "torque" and body_model.scale == pytest.approx(0.9)
        assert '"n_calibration_frames": 40' in stac.parameters
    assert validate(path=str(path)) == []


def test_penetration_stored_and_reported(registered):
    """The stored penetration is what the stored model in the stored poses gives (recomputed
    from the file alone), and the summary names the deepest body."""
    path, summary, result = registered
    depth, body = result.max_penetration
    assert f"deepest below the floor {1000 * depth:.2f} mm ({body})" in summary
    assert "frames with a geom > 1 mm deep" in summary
    assert f"deepest self-contact {1000 * result.self_penetration.max():.2f} mm" in summary
    with read_session(path) as nwbfile:
        stac = nwbfile.processing["mimic"]["StacRegistration"]
        model = mujoco.MjModel.from_xml_string(stac.body_model.mjcf)
        qpos = stac.qpos.data[:]
        stored = stac.penetration.data[:]
        names = [str(n) for n in stac.penetration.column_names[:]]
        assert stac.penetration.unit == "meters" and stac.penetration.rate == 50.0
        assert stac.max_penetration == pytest.approx(np.nanmax(stored))
        stored_self = stac.self_contact_depth.data[:]
        assert stac.self_contact_depth.unit == "meters"
        # Every keypoint of the clip is seen: none excluded (the optional column is written).
        assert not np.any(stac.keypoint_sites["excluded"].data[:])
    bodies, recomputed = body_penetration(model, qpos)
    assert names == [model.body(int(b)).name for b in bodies]
    np.testing.assert_allclose(stored, recomputed, atol=1e-12)
    np.testing.assert_allclose(stored_self, self_contact_depth(model, qpos), atol=1e-12)
    assert np.nanmax(stored_self) <= 0.001
    # A physically valid reference: no geom deeper than 1 mm in any frame of the clip.
    assert np.nanmax(stored) <= 0.001
    assert "vertebra_C30" in names and "foot_L" in names


def test_stored_mjcf_compiles_with_fitted_sites(registered):
    import mujoco

    path, _, result = registered
    with read_session(path) as nwbfile:
        body_model = nwbfile.processing["mimic"]["BodyModel"]
        model = mujoco.MjModel.from_xml_string(body_model.mjcf, body_model.assets)
    assert model.nq == 74 and model.nu == 38
    site_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, f"keypoint_{k}") for k in result.keypoint_names]
    # the MJCF text keeps ~8 significant digits: offsets come back within a micrometre
    np.testing.assert_allclose(model.site_pos[site_ids], result.offsets, atol=1e-6)


def test_offsets_from_another_session_skip_calibration(registered, clip, tmp_path):
    first, _, first_result = registered
    second = new_session(tmp_path)
    import_keypoints(second, clip, KeypointImportConfig(skeleton="rat23", rate=50.0))
    _, result = stac_session(second, config=FAST, offsets_from=first, progress=False)
    assert not result.calibrated
    np.testing.assert_allclose(result.offsets, first_result.offsets)


def test_rerun_needs_replace(registered, capsys):
    path, _, _ = registered
    before = digest(path)
    assert main(["stac", str(path), "--workers", "1", "--no-progress"]) == 2
    assert "StacRegistration already exists" in capsys.readouterr().err
    assert digest(path) == before


def test_bad_inputs_write_nothing(clip, tmp_path, capsys):
    empty = new_session(tmp_path, "empty.nwb")
    before = digest(empty)
    assert main(["stac", str(empty), "--no-progress"]) == 2
    assert "no keypoints at processing/behavior/PoseEstimation" in capsys.readouterr().err
    assert digest(empty) == before

    path = new_session(tmp_path, "s.nwb")
    import_keypoints(path, clip, KeypointImportConfig(skeleton="rat23", rate=50.0))
    before = digest(path)
    sites = yaml.safe_load(data_path("rat23_rodent_sites.yaml").read_text())
    bad_body = dict(sites, sites={**sites["sites"], "Snout": ["tail_tip", 0, 0, 0]})
    missing = dict(sites, sites={k: v for k, v in sites["sites"].items() if k != "EarL"})
    for name, content, message in [
        ("bad_body.yaml", bad_body, "tail_tip"),
        ("missing.yaml", missing, "EarL"),
    ]:
        site_map = tmp_path / name
        site_map.write_text(yaml.safe_dump(content))
        assert main(["stac", str(path), "--site-map", str(site_map), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
        assert digest(path) == before
    assert main(["stac", str(path), "--up", "0,0", "--no-progress"]) == 2
    assert "up_direction: expected a non-zero 3-vector" in capsys.readouterr().err
    assert digest(path) == before


def test_unknown_skeleton_needs_a_site_map(tmp_path):
    path = new_session(tmp_path)
    mouse = data_path("mouse22_dannce_save_data_MAX.mat")
    import_keypoints(path, mouse, KeypointImportConfig(skeleton="mouse22", rate=100.0))
    with pytest.raises(InputError, match="skeleton 'mouse22': no built-in site map"):
        stac_session(path, config=FAST, progress=False)

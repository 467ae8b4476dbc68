"""STAC on a session file: BodyModel + StacRegistration appended, valid, reusable offsets, bad inputs."""

import dataclasses
import json

import mujoco
import numpy as np
import pytest
import scipy.io
import yaml
from ndx_pose import Skeletons
from pynwb import validate

import mimic_nwb
import mimic_nwb.stac.nwb
from mimic_nwb.cli import main
from mimic_nwb.data import data_path
from mimic_nwb.errors import InputError, StaleInputError
from mimic_nwb.importers.keypoint_data import load_skeleton
from mimic_nwb.importers.keypoints import KeypointImportConfig, import_keypoints
from mimic_nwb.session import append, read_session
from mimic_nwb.stac import StacConfig, StacStageResult, stac
from mimic_nwb.stac.geometry import body_penetration, self_contact_depth
from ndx_mimic.mimic import pose_as_array
from ndx_mimic.testing import mock

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
    stage = stac(path, FAST)
    return path, stage.summary(), stage.result, stage


def test_registration_is_appended_and_valid(registered):
    path, summary, result, _ = registered
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
    path, summary, result, _ = registered
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

    path, _, result, _ = registered
    with read_session(path) as nwbfile:
        body_model = nwbfile.processing["mimic"]["BodyModel"]
        model = mujoco.MjModel.from_xml_string(body_model.mjcf, body_model.assets)
    assert model.nq == 74 and model.nu == 38
    site_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, f"keypoint_{k}") for k in result.keypoint_names]
    # the MJCF text keeps ~8 significant digits: offsets come back within a micrometre
    np.testing.assert_allclose(model.site_pos[site_ids], result.offsets, atol=1e-6)


def test_typed_result(registered):
    path, summary, result, stage = registered
    assert isinstance(stage, StacStageResult) and stage.path == path
    assert stage.name == "processing/mimic/StacRegistration" and stage.body_model == "processing/mimic/BodyModel"
    assert stage.keypoints == "processing/behavior/PoseEstimation"
    assert stage.site_map == data_path("rat23_rodent_sites.yaml")
    assert stage.frames_fitted == 200 and stage.mean_error == result.mean_error
    assert summary.startswith(
        f"{path}: processing/mimic/StacRegistration: 200 of 200 frames fitted, mean keypoint error"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        stage.name = "other"
    with read_session(path) as nwbfile:
        parameters = json.loads(nwbfile.processing["mimic"]["StacRegistration"].parameters)
    assert parameters["keypoints"] == "processing/behavior/PoseEstimation" and parameters["offsets_from"] is None


def test_offsets_from_another_session_skip_calibration(registered, clip, tmp_path):
    first, _, first_result, _ = registered
    second = new_session(tmp_path)
    import_keypoints(second, clip, KeypointImportConfig(skeleton="rat23", rate=50.0))
    with mimic_nwb.open(first) as source:  # a Session or a path
        result = stac(second, FAST, offsets_from=source).result
    assert not result.calibrated
    np.testing.assert_allclose(result.offsets, first_result.offsets)
    with read_session(second) as nwbfile:
        parameters = json.loads(nwbfile.processing["mimic"]["StacRegistration"].parameters)
    assert parameters["offsets_from"] == f"{first}: processing/mimic/StacRegistration"


def test_rerun_needs_replace(registered, capsys):
    path, _, _, _ = registered
    before = digest(path)
    assert main(["stac", str(path), "--workers", "1", "--no-progress"]) == 2
    assert "StacRegistration already exists" in capsys.readouterr().err
    assert digest(path) == before


def test_bad_inputs_write_nothing(clip, tmp_path, capsys):
    empty = new_session(tmp_path, "empty.nwb")
    before = digest(empty)
    assert main(["stac", str(empty), "--no-progress"]) == 2
    assert "no keypoints (PoseEstimation) in processing/behavior; import them" in capsys.readouterr().err
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
        stac(path, FAST)


def _rat_positions(frames):
    """The first ``frames`` of the real clip: (T, 23, 3) metres in rat23's keypoint order."""
    pred = scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"][:frames]
    return np.transpose(pred, (0, 2, 1)) / 1000.0


def test_site_map_found_by_keypoint_names_and_keypoints_chosen_by_name(tmp_path):
    """Keypoints under a skeleton of another name with exactly rat23's names (in another order):
    the built-in rat23 site map is found by the names. Two PoseEstimations: STAC refuses to
    choose, and registers the one named."""
    rat23 = load_skeleton("rat23").nodes
    order = list(np.random.default_rng(3).permutation(len(rat23)))
    positions = _rat_positions(80)[:, order]
    path = new_session(tmp_path)
    with append(path) as s:
        skeleton = mock.mock_Skeleton(
            name="rat23_skeleton", nodes=[rat23[i] for i in order], edges=np.zeros((0, 2), "uint8")
        )
        behavior = s.module("behavior", "keypoints")
        behavior.add(Skeletons(skeletons=[skeleton]))
        behavior.add(mock.mock_PoseEstimation(skeleton=skeleton, name="first", positions=positions))
        behavior.add(mock.mock_PoseEstimation(skeleton=skeleton, name="second", positions=positions + 0.001))
    before = digest(path)
    with pytest.raises(InputError, match=r"2 PoseEstimation results in processing/behavior \(first, second\)"):
        stac(path, FAST)
    assert digest(path) == before
    stage = stac(path, FAST, keypoints="second")
    assert stage.site_map == data_path("rat23_rodent_sites.yaml") and stage.keypoints == "processing/behavior/second"
    assert stage.frames_fitted == 80 and stage.mean_error < 0.004
    with read_session(path) as nwbfile:
        registration = nwbfile.processing["mimic"]["StacRegistration"]
        assert registration.pose_estimation is nwbfile.processing["behavior"]["second"]
        # columns follow the skeleton's order
        assert [str(n) for n in registration.keypoint_errors.column_names[:]] == [rat23[i] for i in order]


def test_clip_shorter_than_the_widest_series_is_refused(tmp_path, capsys):
    """60 frames: the qpos series (74 columns) would have more columns than rows, which
    nwbinspector's orientation check flags; refused in one line, the session unchanged."""
    clip = tmp_path / "clip60.mat"
    scipy.io.savemat(clip, {"pred": scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"][:60]})
    path = new_session(tmp_path)
    import_keypoints(path, clip, KeypointImportConfig(skeleton="rat23", rate=50.0))
    before = digest(path)
    assert main(["stac", str(path), "--workers", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "60 frames; stac needs at least 74" in err and err.count("\n") == 1, err
    assert digest(path) == before


def test_keypoints_replaced_during_the_fit_are_not_linked(clip, tmp_path, monkeypatch):
    """Another writer replaces the keypoints while STAC fits: the append is refused (it would
    link keypoints the registration was not computed from) and the session keeps the new ones."""
    path = new_session(tmp_path)
    import_keypoints(path, clip, KeypointImportConfig(skeleton="rat23", rate=50.0))
    run_stac = mimic_nwb.stac.nwb.run_stac

    def fit_while_replaced(*args, **kwargs):
        result = run_stac(*args, **kwargs)
        import_keypoints(path, clip, KeypointImportConfig(skeleton="rat23", rate=100.0), replace=True)
        return result

    monkeypatch.setattr(mimic_nwb.stac.nwb, "run_stac", fit_while_replaced)
    with pytest.raises(StaleInputError, match="input processing/behavior/PoseEstimation changed since it was read"):
        stac(path, StacConfig(n_workers=1, n_calibration_frames=20, n_calibration_rounds=1))
    with read_session(path) as nwbfile:
        assert "mimic" not in nwbfile.processing or "StacRegistration" not in nwbfile.processing["mimic"]
        assert nwbfile.processing["behavior"]["PoseEstimation"].pose_estimation_series["Snout"].rate == 100.0

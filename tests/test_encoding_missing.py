"""Encoding models on a session whose keypoints have scattered missing detections (issue 12).

Simulated units (mimic_nwb.groundtruth) are driven by the joint angles at a known lag; 1 % of
the measured keypoint coordinates are missing at random. The kinematics feature set is built
from the registration's model keypoints, so it stays complete, and short gaps of unfitted frames
are interpolated: encoding still runs, the true feature set and lag win, null units do not.
"""

import numpy as np
import pytest
from ndx_pose import Skeletons
from scipy.ndimage import gaussian_filter1d

from mimic_nwb.encoding import EncodingConfig
from mimic_nwb.encoding.nwb import encode
from mimic_nwb.features import MAX_INTERPOLATED_GAP, fill_short_gaps, read_feature_set
from mimic_nwb.groundtruth import movement_labels, simulate_units
from mimic_nwb.importers.units import UnitImportConfig, import_units
from mimic_nwb.render import session_tracks
from mimic_nwb.session import append, read_session
from ndx_mimic.testing import mock

from helpers import new_session, toy_registration

RATE = 50.0
FRAMES = 3000  # 60 s
LAG = -0.1  # s: activity leads the joint angles (premotor)


def smooth(rng, shape, sigma_frames=5):
    x = gaussian_filter1d(rng.standard_normal(shape), sigma_frames, axis=0)
    return x / x.std(axis=0)


def session_with_missing_keypoints(folder, missing_share=0.01, seed=0, second_registration=False):
    """Toy registration: smooth random joint angles and (independent) keypoint trajectories;
    ``missing_share`` of the measured keypoint coordinates NaN at random (whole 3D points), the
    model keypoints complete, as STAC writes them."""
    rng = np.random.default_rng(seed)
    path = new_session(folder)
    qpos = np.zeros((FRAMES, 9))
    qpos[:, 2], qpos[:, 3] = 0.05, 1.0
    qpos[:, 7:9] = 0.5 * smooth(rng, (FRAMES, 2))
    model = 0.02 * smooth(rng, (FRAMES, 3, 3)) + np.array([0.05, 0.0, 0.03])
    measured = model + 0.001 * rng.standard_normal(model.shape)
    missing = rng.random(measured.shape[:2]) < missing_share
    measured[missing] = np.nan
    timing = dict(rate=RATE, starting_time=0.0)
    with append(path) as s:
        behavior = s.module("behavior", "keypoints")
        skeleton = mock.mock_Skeleton()
        behavior.add(Skeletons(skeletons=[skeleton]))
        pose = mock.mock_PoseEstimation(skeleton=skeleton, positions=measured)
        behavior.add(pose)
        body_model = s.add(mock.mock_BodyModel())
        s.add(toy_registration(qpos, model, body_model, skeleton, pose, timing))
        if second_registration:  # another fit of the same keypoints, e.g. with other settings
            s.add(toy_registration(-qpos, model, body_model, skeleton, pose, timing, "StacRegistration_b"))
    return path, int(missing.sum())


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    path, n_missing = session_with_missing_keypoints(tmp_path_factory.mktemp("missing"))
    assert n_missing > 0.005 * FRAMES * 3
    with read_session(path) as nwbfile:
        driven = simulate_units(nwbfile, [("joint_angles", LAG, "DLS")] * 4, 0.0, FRAMES / RATE, seed=1)
    rng = np.random.default_rng(2)
    spikes = dict(zip(driven.names, driven.spike_times))
    for i in range(2):  # null units: constant rate
        spikes[f"null{i}"] = np.sort(rng.uniform(0.0, FRAMES / RATE - 0.1, 600))
    import_units(
        path,
        spikes,
        UnitImportConfig(
            sampling_rate=30000.0,
            session_end=FRAMES / RATE,
            unit_table={name: {"brain_region": "DLS"} for name in spikes},
        ),
    )
    return path, driven.names


def test_kinematics_are_complete_despite_missing_detections(session):
    path, _ = session
    with read_session(path) as nwbfile:
        measured = nwbfile.processing["behavior"]["PoseEstimation"].pose_estimation_series["head"].data[:]
        assert np.isnan(measured).any()
        kinematics = read_feature_set(nwbfile, "kinematics")
        assert kinematics.values.shape == (FRAMES, 18) and np.isfinite(kinematics.values).all()
        assert kinematics.source.endswith("StacRegistration")


def test_true_feature_set_and_lag_win_and_null_units_are_not_significant(session):
    path, driven = session
    config = EncodingConfig(lags=(-0.3, -0.1, 0.1), chunk_duration=2.0)
    encoded = encode(path, ["kinematics", "joint_angles"], config)
    result, best = encoded.result, encoded.best
    assert "6 units x 2 feature sets x 3 lags" in encoded.summary()
    winners = best.loc[best.groupby("unit")["cv_llr"].idxmax()].set_index("unit")
    for unit in driven:
        assert winners.loc[unit, "feature_set"] == "joint_angles", winners
        assert np.isclose(winners.loc[unit, "lag"], LAG), winners
        assert winners.loc[unit, "significant"]
    assert not best[best["unit"].str.startswith("null")]["significant"].any()
    # Every bin of the session is used except those whose lag partners fall outside it.
    assert (result.fold_of_bin >= 0).sum() >= FRAMES - int(round(0.4 * RATE)) - 2


def test_fill_short_gaps_interpolates_short_runs_only():
    times = np.arange(40) / RATE
    values = np.c_[np.sin(times), times * 2.0]
    holes = values.copy()
    holes[5:9, 0] = np.nan  # 4 missing frames: neighbours 0.1 s apart -> filled
    holes[20:30, 1] = np.nan  # 10 missing frames: 0.22 s -> kept NaN
    holes[0:2, 1] = np.nan  # at the start: nothing to interpolate from
    filled = fill_short_gaps(holes, times)
    assert MAX_INTERPOLATED_GAP == 0.1
    np.testing.assert_allclose(filled[5:9, 0], np.interp(times[5:9], times[[4, 9]], values[[4, 9], 0]))
    assert np.isnan(filled[20:30, 1]).all() and np.isnan(filled[0:2, 1]).all()
    np.testing.assert_array_equal(filled[np.isfinite(holes)], holes[np.isfinite(holes)])
    holes[5:10, 0] = np.nan  # 5 missing frames: 0.12 s apart -> kept
    assert np.isnan(fill_short_gaps(holes, times)[5:10, 0]).all()


def test_unfitted_frames_in_short_gaps_do_not_stop_encoding(tmp_path):
    """Frames the registration could not fit (NaN qpos): short gaps interpolated, long ones masked."""
    path, _ = session_with_missing_keypoints(tmp_path, missing_share=0.0, seed=3)
    import h5py

    with h5py.File(path, "r+") as f:
        qpos = f["processing/mimic/StacRegistration/qpos/data"]
        for start in range(100, FRAMES - 100, 97):  # a 2-frame gap every ~2 s
            qpos[start : start + 2] = np.nan
        qpos[1500:1550] = np.nan  # one 1-s gap: masked
    with read_session(path) as nwbfile:
        angles = read_feature_set(nwbfile, "joint_angles")
        assert np.isnan(angles.values).any(axis=1).sum() == 50
        driven = simulate_units(nwbfile, [("joint_angles", LAG, "DLS")] * 2, 0.0, FRAMES / RATE, seed=4)
    import_units(
        path,
        dict(zip(driven.names, driven.spike_times)),
        UnitImportConfig(
            sampling_rate=30000.0,
            session_end=FRAMES / RATE,
            unit_table={n: {"brain_region": "DLS"} for n in driven.names},
        ),
    )
    encoded = encode(path, ["joint_angles"], EncodingConfig(lags=(-0.1, 0.0), chunk_duration=2.0))
    result, best = encoded.result, encoded.best
    assert best["significant"].all()
    unused = np.flatnonzero(result.fold_of_bin < 0)
    # Bins centred inside the 1-s gap (51: 29.98 s < centre < 31.00 s), the 5 before it that pair
    # with it at lag -0.1 s, and the session's last 5 bins (no partner at -0.1 s); nothing else.
    assert unused.size == 51 + 5 + 5 and unused[0] == 1494 and unused[-6] == 1549


def test_several_registrations_are_named_never_chosen_silently(tmp_path):
    from mimic_nwb.errors import InputError
    from mimic_nwb.features import available_feature_sets

    path, _ = session_with_missing_keypoints(tmp_path, missing_share=0.0, second_registration=True)
    with read_session(path) as nwbfile:
        names = available_feature_sets(nwbfile)
        assert names == [
            f"{r}/{s}"
            for r in ("StacRegistration", "StacRegistration_b")
            for s in ("kinematics", "joint_angles", "joint_velocities")
        ]
        with pytest.raises(
            InputError,
            match="feature set 'joint_angles' is ambiguous: 2 StacRegistration results; "
            "choose one of StacRegistration/joint_angles, StacRegistration_b/joint_angles",
        ):
            read_feature_set(nwbfile, "joint_angles", path)
        a = read_feature_set(nwbfile, "StacRegistration/joint_angles")
        b = read_feature_set(nwbfile, "StacRegistration_b/joint_angles")
        np.testing.assert_array_equal(a.values, -b.values)
        assert a.name == "StacRegistration/joint_angles" and b.source.endswith("StacRegistration_b/qpos")
        with pytest.raises(InputError, match="unknown feature set 'Nope/kinematics'"):
            read_feature_set(nwbfile, "Nope/kinematics", path)
        # the other lookups of a registration name it too: never the first of several
        choose = "2 StacRegistration results in processing/mimic .StacRegistration, StacRegistration_b.: choose one"
        with pytest.raises(InputError, match=choose):
            movement_labels(nwbfile, path=path)
        with pytest.raises(InputError, match=choose):
            session_tracks(nwbfile, path)
        labels, times = movement_labels(nwbfile, registration="StacRegistration_b")
        assert labels.shape == times.shape and set(labels) <= {"Rear", "Walk", "Still"}

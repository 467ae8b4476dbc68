"""Keypoint import: real DANNCE files, ndx-pose files of both layouts, timing, and bad inputs."""

import re
import warnings

import h5py
import numpy as np
import pytest
import scipy.io
from pynwb import validate

import mimic_nwb
from mimic_nwb.cli import main
from mimic_nwb.data import data_path
from mimic_nwb.errors import InputError
from mimic_nwb.importers.keypoints import KeypointImportConfig, import_keypoints, load_skeleton, read_nwb_pose
from mimic_nwb.session import read_session
from ndx_mimic.mimic import pose_as_array

from helpers import digest, new_session

RAT_CLIP = data_path("rat23_dannce_clip_1000.mat")
MOUSE = data_path("mouse22_dannce_save_data_MAX.mat")


def test_rat_clip_round_trip_in_meters(tmp_path):
    path = new_session(tmp_path)
    summary = import_keypoints(path, RAT_CLIP, KeypointImportConfig(skeleton="rat23", rate=50.0)).summary()
    assert "1000 frames x 23 keypoints" in summary and "missing detections: 0" in summary
    pred = scipy.io.loadmat(RAT_CLIP)["pred"]
    with read_session(path) as nwbfile:
        pose = nwbfile.processing["behavior"]["PoseEstimation"]
        positions = pose_as_array(pose)
        np.testing.assert_allclose(positions, np.transpose(pred, (0, 2, 1)) / 1000.0)
        snout = pose.pose_estimation_series["Snout"]
        assert snout.unit == "meters" and snout.rate == 50.0
        assert list(pose.skeleton.nodes[:3]) == ["Snout", "EarL", "EarR"]
        assert pose.skeleton.subject is nwbfile.subject
        assert pose.source_software == "DANNCE"
    assert validate(path=str(path)) == []


def test_mouse_file_with_confidence_and_irregular_timestamps(tmp_path):
    path = new_session(tmp_path)
    times = np.cumsum(np.full(400, 0.01) + np.random.default_rng(0).uniform(-1e-4, 1e-4, 400))
    np.save(tmp_path / "times.npy", times)
    assert (
        main(
            [
                "import-keypoints",
                str(path),
                str(MOUSE),
                "--skeleton",
                "mouse22",
                "--timestamps",
                str(tmp_path / "times.npy"),
            ]
        )
        == 0
    )
    p_max = scipy.io.loadmat(MOUSE)["p_max"]
    with read_session(path) as nwbfile:
        series = nwbfile.processing["behavior"]["PoseEstimation"].pose_estimation_series
        np.testing.assert_allclose(series["Snout"].timestamps[:], times)
        k = load_skeleton("mouse22").nodes.index("Snout")
        np.testing.assert_allclose(series["Snout"].confidence[:], p_max[:, k])
    # irregular clock: one series holds the timestamps, the 21 others link to them
    with h5py.File(path, "r") as f:
        group = f["processing/behavior/PoseEstimation"]
        links = [group[name].get("timestamps", getlink=True) for name in series_names(group)]
        assert sum(isinstance(link, h5py.HardLink) for link in links) == 1
        assert sum(isinstance(link, h5py.SoftLink) for link in links) == 21
    assert validate(path=str(path)) == []


def series_names(group):
    return [name for name, obj in group.items() if obj.attrs.get("neurodata_type") == "PoseEstimationSeries"]


def test_missing_detections_stay_nan_and_are_counted(tmp_path):
    pred = scipy.io.loadmat(RAT_CLIP)["pred"].copy()
    pred[10:20, :, 4] = np.nan
    pred[500, :, 0] = np.nan
    source = tmp_path / "gaps.mat"
    scipy.io.savemat(source, {"pred": pred})
    path = new_session(tmp_path)
    summary = import_keypoints(path, source, KeypointImportConfig(skeleton="rat23", rate=50.0)).summary()
    assert "missing detections: 11 of 23000" in summary
    with read_session(path) as nwbfile:
        positions = pose_as_array(nwbfile.processing["behavior"]["PoseEstimation"])
        assert np.isnan(positions[10:20, 4]).all() and np.isnan(positions[500, 0]).all()
        assert np.isnan(positions).any(axis=2).sum() == 11


def test_multi_animal_predictions_pick_one(tmp_path):
    pred = scipy.io.loadmat(RAT_CLIP)["pred"][:100]
    two = np.stack([pred, pred + 100.0], axis=1)  # (N, A, 3, K)
    source = tmp_path / "two.mat"
    scipy.io.savemat(source, {"pred": two})
    path = new_session(tmp_path)
    with pytest.raises(InputError, match="holds 2 animals"):
        import_keypoints(path, source, KeypointImportConfig(skeleton="rat23", rate=50.0))
    import_keypoints(path, source, KeypointImportConfig(skeleton="rat23", rate=50.0, animal=1))
    with read_session(path) as nwbfile:
        positions = pose_as_array(nwbfile.processing["behavior"]["PoseEstimation"])
    np.testing.assert_allclose(positions, (np.transpose(pred, (0, 2, 1)) + 100.0) / 1000.0)


def _write_ndx_pose_01_file(path, positions, nodes, edges):
    """An NWB file laid out as ndx-pose 0.1.x wrote it: nodes/edges inside PoseEstimation."""
    with h5py.File(path, "w") as f:
        f.attrs["nwb_version"] = "2.5.0"
        group = f.create_group("processing/behavior/PoseEstimation")
        group.attrs.update(neurodata_type="PoseEstimation", namespace="ndx-pose", object_id="x")
        group.create_dataset("nodes", data=np.array(nodes, dtype=object), dtype=h5py.string_dtype())
        group.create_dataset("edges", data=np.asarray(edges, dtype="uint8").reshape(-1, 2))
        group.create_dataset("source_software", data="DeepLabCut")
        for k, node in enumerate(nodes):
            series = group.create_group(node)
            series.attrs.update(neurodata_type="PoseEstimationSeries", namespace="ndx-pose")
            data = series.create_dataset("data", data=positions[:, k] * 1000.0)
            data.attrs.update(unit="mm", conversion=1.0)
            series.create_dataset("reference_frame", data="arena corner")
            series.create_dataset("confidence", data=np.full(len(positions), 0.9))
            series.create_dataset("timestamps", data=np.arange(len(positions)) / 30.0)


@pytest.mark.parametrize("edges", [[[0, 1], [1, 2]], []], ids=["edges", "empty_edges"])
def test_reads_ndx_pose_01_layout(tmp_path, edges):
    positions = 0.1 * np.random.default_rng(1).normal(size=(60, 3, 3))
    source = tmp_path / "old.nwb"
    _write_ndx_pose_01_file(source, positions, ["nose", "neck", "tail"], edges)
    keypoints = read_nwb_pose(source)
    assert keypoints.layout.startswith("ndx-pose 0.1.x")
    np.testing.assert_allclose(keypoints.positions, positions)
    assert keypoints.skeleton.edges.shape == (len(edges), 2)
    path = new_session(tmp_path)
    summary = import_keypoints(path, source).summary()
    assert "layout: ndx-pose 0.1.x" in summary
    with read_session(path) as nwbfile:
        pose = nwbfile.processing["behavior"]["PoseEstimation"]
        np.testing.assert_allclose(pose_as_array(pose), positions)
        nose = pose.pose_estimation_series["nose"]
        # the source's regular 30 Hz timestamps are stored as a rate
        assert nose.timestamps is None and nose.rate == 30.0 and nose.starting_time == 0.0
    assert validate(path=str(path)) == []


def test_reads_current_ndx_pose_layout_from_another_session(tmp_path):
    first = new_session(tmp_path, "first.nwb")
    import_keypoints(first, RAT_CLIP, KeypointImportConfig(skeleton="rat23", rate=50.0))
    second = new_session(tmp_path, "second.nwb")
    summary = import_keypoints(second, first).summary()
    assert "linked Skeleton" in summary
    with read_session(first) as a, read_session(second) as b:
        np.testing.assert_array_equal(
            pose_as_array(a.processing["behavior"]["PoseEstimation"]),
            pose_as_array(b.processing["behavior"]["PoseEstimation"]),
        )


def _mat(tmp_path, name, **arrays):
    path = tmp_path / name
    scipy.io.savemat(path, arrays)
    return path


PRED = scipy.io.loadmat(RAT_CLIP)["pred"][:50]


def _bad_inputs(tmp_path):
    """(argv after 'import-keypoints SESSION', expected message) for malformed inputs."""
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(RAT_CLIP.read_bytes()[:5000])
    garbage = tmp_path / "garbage.mat"
    garbage.write_bytes(b"\x00\x01not a mat file at all" * 50)
    backwards = tmp_path / "backwards.txt"
    backwards.write_text("\n".join(str(t) for t in [0.0, 0.02, 0.01] + [0.1 + i for i in range(47)]))
    short_times = tmp_path / "short.txt"
    short_times.write_text("0\n0.02\n")
    bad_skeleton = _mat(tmp_path, "noidx.mat", joint_names=np.array([["a"]], dtype=object))
    return [
        ([str(truncated), "--skeleton", "rat23", "--rate", "50"], "truncated.mat: not a readable .mat file"),
        ([str(garbage), "--skeleton", "rat23", "--rate", "50"], "garbage.mat: not a readable .mat file"),
        ([str(tmp_path / "absent.mat"), "--skeleton", "rat23", "--rate", "50"], "absent.mat: no such file"),
        ([str(_mat(tmp_path, "nopred.mat", data=PRED)), "--skeleton", "rat23", "--rate", "50"], "no 'pred' array"),
        (
            [str(_mat(tmp_path, "flat.mat", pred=PRED[:, 0])), "--skeleton", "rat23", "--rate", "50"],
            "pred must have shape",
        ),
        (
            [str(_mat(tmp_path, "k22.mat", pred=PRED[:, :, :22])), "--skeleton", "rat23", "--rate", "50"],
            "pred has 22 keypoints but skeleton rat23 has 23",
        ),
        ([str(RAT_CLIP), "--skeleton", "rat99", "--rate", "50"], "skeleton 'rat99': unknown"),
        ([str(RAT_CLIP), "--skeleton", str(bad_skeleton), "--rate", "50"], "skeleton file has no 'joints_idx'"),
        (
            [str(RAT_CLIP), "--skeleton", "rat23", "--rate", "50", "--units", "m"],
            "implausible with units 'm' \\(millimetres declared as metres\\?\\)",
        ),
        (
            [str(_mat(tmp_path, "tiny.mat", pred=PRED / 1000.0)), "--skeleton", "rat23", "--rate", "50"],
            "implausible with units 'mm' \\(metres declared as millimetres\\?\\)",
        ),
        (
            [str(_mat(tmp_path, "short.mat", pred=PRED)), "--skeleton", "rat23", "--timestamps", str(backwards)],
            "timestamps: not strictly increasing",
        ),
        (
            [str(_mat(tmp_path, "short2.mat", pred=PRED)), "--skeleton", "rat23", "--timestamps", str(short_times)],
            "timestamps: 2 values for 50 frames",
        ),
        ([str(RAT_CLIP), "--skeleton", "rat23"], "give the frame rate"),
        ([str(RAT_CLIP), "--skeleton", "rat23", "--rate", "-50"], "rate: -50.0 Hz must be finite and positive"),
        (
            [
                str(_mat(tmp_path, "pmax.mat", pred=PRED, p_max=np.ones((49, 23)))),
                "--skeleton",
                "rat23",
                "--rate",
                "50",
            ],
            "p_max has shape \\(49, 23\\)",
        ),
        (
            [str(_mat(tmp_path, "ids.mat", pred=PRED, sampleID=np.arange(10))), "--skeleton", "rat23", "--rate", "50"],
            "sampleID has 10 entries but pred has 50 frames",
        ),
        (
            [str(_mat(tmp_path, "nan.mat", pred=np.full_like(PRED, np.nan))), "--skeleton", "rat23", "--rate", "50"],
            "no frame has two observed keypoints",
        ),
        ([str(RAT_CLIP), "--skeleton", "rat23", "--rate", "50", "--animal", "2"], "pred holds one animal"),
    ]


def test_bad_keypoint_inputs_exit_2_one_line_file_unchanged(tmp_path, capsys):
    path = new_session(tmp_path)
    before = digest(path)
    for argv, message in _bad_inputs(tmp_path):
        assert main(["import-keypoints", str(path), *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("mimic-nwb: error: ") and "\n" not in err, err
        assert re.search(message, err), (message, err)
        assert digest(path) == before
    assert not list(tmp_path.glob(".session.nwb.*.tmp.nwb"))


def test_importing_twice_needs_replace(tmp_path, capsys):
    path = new_session(tmp_path)
    argv = ["import-keypoints", str(path), str(RAT_CLIP), "--skeleton", "rat23", "--rate", "50"]
    assert main(argv) == 0
    before = digest(path)
    assert main(argv) == 2
    assert "processing/behavior/PoseEstimation already exists" in capsys.readouterr().err
    assert digest(path) == before
    assert main([*argv, "--replace"]) == 0


def test_not_nwb_session_is_refused(tmp_path, capsys):
    fake = tmp_path / "fake.nwb"
    fake.write_text("hello")
    assert main(["import-keypoints", str(fake), str(RAT_CLIP), "--skeleton", "rat23", "--rate", "50"]) == 2
    assert "not an NWB file" in capsys.readouterr().err
    assert fake.read_text() == "hello"


# --- issue 12: units, names, clocks and frame ids of keypoints written by other tools ---------

RAT23 = load_skeleton("rat23").nodes


def _ndx_pose_01_rat(path, positions_m, unit="pixels", rate=30.0, order=None):
    """An ndx-pose 0.1.x file as another tool wrote it: rat23's keypoints in millimetres declared
    as ``unit``, a regular clock stored as timestamps, and no skeleton name of its own."""
    order = order or RAT23
    with h5py.File(path, "w") as f:
        f.attrs["nwb_version"] = "2.5.0"
        group = f.create_group("processing/behavior/PoseEstimation")
        group.attrs.update(neurodata_type="PoseEstimation", namespace="ndx-pose", object_id="x")
        group.create_dataset("nodes", data=np.array(order, dtype=object), dtype=h5py.string_dtype())
        group.create_dataset("edges", data=np.zeros((0, 2), dtype="uint8"))
        group.create_dataset("source_software", data="DANNCE")
        times = np.arange(len(positions_m)) / rate
        for node in order:
            series = group.create_group(node)
            series.attrs.update(neurodata_type="PoseEstimationSeries", namespace="ndx-pose")
            data = series.create_dataset("data", data=positions_m[:, RAT23.index(node)] * 1000.0)
            data.attrs.update(unit=unit, conversion=1.0, resolution=-1.0)
            series.create_dataset("reference_frame", data="arena centre")
            series.create_dataset("timestamps", data=times)


def _inspector_findings(path, *names):
    nwbinspector = pytest.importorskip("nwbinspector")
    return [m for m in nwbinspector.inspect_nwbfile(nwbfile_path=str(path)) if m.check_function_name in names]


def test_ndx_pose_01_in_pixels_imports_with_units_mm_as_rat23_at_a_rate(tmp_path, capsys):
    positions = np.transpose(PRED[:50], (0, 2, 1))[:, :, :] / 1000.0
    positions = np.concatenate([positions, positions[::-1]])  # 100 frames
    shuffled = list(np.random.default_rng(3).permutation(RAT23))
    source = tmp_path / "other_tool.nwb"
    _ndx_pose_01_rat(source, positions, order=shuffled)
    path = new_session(tmp_path)
    before = digest(path)
    assert main(["import-keypoints", str(path), str(source)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is in 'pixels'; only length units" in err and "--units" in err and "\n" not in err
    assert main(["import-keypoints", str(path), str(source), "--units", "m"]) == 2  # size check still applies
    assert "implausible with units 'm'" in capsys.readouterr().err
    assert digest(path) == before
    assert main(["import-keypoints", str(path), str(source), "--units", "mm"]) == 0
    out = capsys.readouterr().out
    assert "has exactly rat23's keypoints: stored as rat23" in out and "read as mm (the file declares 'pixels')" in out
    with read_session(path) as nwbfile:
        pose = nwbfile.processing["behavior"]["PoseEstimation"]
        assert pose.skeleton.name == "rat23" and list(pose.skeleton.nodes[:]) == RAT23
        np.testing.assert_allclose(pose_as_array(pose), positions)
        snout = pose.pose_estimation_series["Snout"]
        assert snout.unit == "meters" and snout.timestamps is None and snout.rate == 30.0
    assert validate(path=str(path)) == []
    assert _inspector_findings(path, "check_regular_timestamps", "check_data_orientation") == []


def test_site_map_found_by_keypoint_names_when_the_skeleton_name_is_unknown():
    from mimic_nwb.stac.nwb import _site_map_for

    assert _site_map_for("subject1_skeleton", None, list(reversed(RAT23))) == data_path("rat23_rodent_sites.yaml")
    with pytest.raises(InputError, match="skeleton 'subject1_skeleton': no built-in site map"):
        _site_map_for("subject1_skeleton", None, RAT23[:-1])


def test_units_override_a_current_ndx_pose_file(tmp_path):
    first = new_session(tmp_path, "first.nwb")
    import_keypoints(first, RAT_CLIP, KeypointImportConfig(skeleton="rat23", rate=50.0))
    with h5py.File(first, "a") as f:  # another tool's mistake: meters declared as pixels
        for node in RAT23:
            f[f"processing/behavior/PoseEstimation/{node}/data"].attrs["unit"] = "pixels"
    with pytest.raises(InputError, match="is in 'pixels'"):
        read_nwb_pose(first)
    keypoints = read_nwb_pose(first, units="m")
    np.testing.assert_allclose(keypoints.positions, np.transpose(scipy.io.loadmat(RAT_CLIP)["pred"], (0, 2, 1)) / 1000)


def test_keypoint_names_instead_of_a_skeleton_file(tmp_path):
    path = new_session(tmp_path)
    names = tmp_path / "names.txt"
    names.write_text("\n".join(RAT23))
    summary = import_keypoints(path, RAT_CLIP, KeypointImportConfig(keypoint_names=names, rate=50.0)).summary()
    assert "(rat23, 50 Hz" in summary


def _dannce_with_ids(tmp_path, ids, name="ids.mat"):
    pred = scipy.io.loadmat(RAT_CLIP)["pred"][: len(ids)]
    return _mat(tmp_path, name, pred=pred, sampleID=np.asarray(ids, dtype=np.float64)[None, :])


def test_dannce_sample_ids_every_10th_frame_at_100_hz_is_a_100_s_clip(tmp_path):
    ids = 1 + 10 * np.arange(1000)  # sampleID 1, 11, 21, ...
    source = _dannce_with_ids(tmp_path, ids)
    path = new_session(tmp_path)
    summary = import_keypoints(
        path, source, KeypointImportConfig(skeleton="rat23", rate=100.0, starting_time=2.0)
    ).summary()
    assert "sampleID steps by 10" in summary
    with read_session(path) as nwbfile:
        behavior = nwbfile.processing["behavior"]
        snout = behavior["PoseEstimation"].pose_estimation_series["Snout"]
        assert snout.rate == 10.0 and snout.starting_time == 2.0  # regular: 10 Hz from the ids
        duration = (len(snout.data) - 1) / snout.rate
        assert duration == pytest.approx(99.9)
        frame_ids = behavior["PoseEstimation_frame_ids"]
        np.testing.assert_array_equal(frame_ids.data[:], ids)
        assert frame_ids.rate == 10.0 and "sampleID" in frame_ids.description
        assert "PoseEstimation_frame_ids" in behavior["PoseEstimation"].description
    assert validate(path=str(path)) == []


def test_dannce_sample_ids_with_gaps_give_timestamps(tmp_path):
    ids = np.r_[0:300, 350:1050]  # a 50-frame gap
    source = _dannce_with_ids(tmp_path, ids)
    path = new_session(tmp_path)
    import_keypoints(path, source, KeypointImportConfig(skeleton="rat23", rate=50.0))
    with read_session(path) as nwbfile:
        series = nwbfile.processing["behavior"]["PoseEstimation"].pose_estimation_series["Snout"]
        np.testing.assert_allclose(series.timestamps[:], ids / 50.0)
        ids_series = nwbfile.processing["behavior"]["PoseEstimation_frame_ids"]
        np.testing.assert_allclose(ids_series.timestamps[:], ids / 50.0)
    # replacing the keypoints replaces their frame ids too
    import_keypoints(path, RAT_CLIP, KeypointImportConfig(skeleton="rat23", rate=50.0), replace=True)
    with read_session(path) as nwbfile:
        assert "PoseEstimation_frame_ids" not in nwbfile.processing["behavior"].data_interfaces


def test_regular_timestamps_become_a_rate(tmp_path):
    times = 3.0 + np.arange(1000) / 50.0 + np.random.default_rng(0).uniform(-1e-9, 1e-9, 1000)
    np.save(tmp_path / "times.npy", times)
    path = new_session(tmp_path)
    summary = import_keypoints(
        path, RAT_CLIP, KeypointImportConfig(skeleton="rat23", timestamps=tmp_path / "times.npy")
    ).summary()
    assert "regular timestamps stored as 50 Hz from 3 s" in summary
    with read_session(path) as nwbfile:
        snout = nwbfile.processing["behavior"]["PoseEstimation"].pose_estimation_series["Snout"]
        assert snout.timestamps is None and snout.rate == 50.0 and snout.starting_time == pytest.approx(3.0, abs=1e-8)


def test_odd_numbers_are_refused_at_the_door(tmp_path, capsys):
    path = new_session(tmp_path)
    before = digest(path)
    text = tmp_path / "text.mat"
    scipy.io.savemat(text, {"pred": np.array(["12.5", "13.0"])})
    cells = tmp_path / "cells.mat"
    scipy.io.savemat(cells, {"pred": np.array([["a", 1.0]], dtype=object)})
    complex_ = _mat(tmp_path, "complex.mat", pred=PRED * (1 + 1e-3j))
    ids = 1 + 10 * np.arange(50)
    cases = [
        ([str(text), "--skeleton", "rat23", "--rate", "50"], "text.mat: pred: holds text, not numbers"),
        ([str(cells), "--skeleton", "rat23", "--rate", "50"], "cells.mat: pred: holds text or cells, not numbers"),
        ([str(complex_), "--skeleton", "rat23", "--rate", "50"], "complex.mat: pred: complex values"),
        ([str(RAT_CLIP), "--skeleton", "rat23", "--rate", "inf"], "rate: inf Hz must be finite and positive"),
        ([str(RAT_CLIP), "--skeleton", "rat23", "--rate", "nan"], "rate: nan Hz must be finite and positive"),
        (
            [str(RAT_CLIP), "--skeleton", "rat23", "--rate", "50", "--starting-time", "nan"],
            "starting_time: nan s must be a finite number of seconds",
        ),
        (
            [str(RAT_CLIP), "--skeleton", "rat23", "--rate", "50", "--starting-time=-inf"],
            "starting_time: -inf s must be a finite",
        ),
        (
            [str(_mat(tmp_path, "one.mat", pred=PRED[:1])), "--skeleton", "rat23", "--rate", "50"],
            "one.mat: 1 frame\\(s\\); a clip needs at least 3 frames",
        ),
        (
            [str(_mat(tmp_path, "two.mat", pred=PRED[:2])), "--skeleton", "rat23", "--rate", "50"],
            "a clip needs at least 3 frames",
        ),
        (
            [
                str(_dannce_with_ids(tmp_path, np.r_[ids[:20], ids[19:49]], "dup.mat")),
                "--skeleton",
                "rat23",
                "--rate",
                "100",
            ],
            "dup.mat: sampleID repeats at frame 20 \\(191 then 191\\)",
        ),
        (
            [
                str(_dannce_with_ids(tmp_path, np.r_[ids[:20], ids[5], ids[21:]], "back.mat")),
                "--skeleton",
                "rat23",
                "--rate",
                "100",
            ],
            "back.mat: sampleID goes back at frame 20 \\(191 then 51\\)",
        ),
        (
            [str(_dannce_with_ids(tmp_path, ids + 0.5, "half.mat")), "--skeleton", "rat23", "--rate", "100"],
            "sampleID holds values that are not whole frame numbers",
        ),
        (
            [str(_mat(tmp_path, "nans.mat", pred=PRED)), "--skeleton", "rat23", "--keypoint-names", "a,b"],
            "give --skeleton or --keypoint-names, not both",
        ),
    ]
    times = tmp_path / "times.txt"
    times.write_text("\n".join(str(t) for t in np.arange(50) / 10.0))
    cases.append(
        (
            [
                str(_dannce_with_ids(tmp_path, np.r_[ids[:20], ids[19:49]], "dup2.mat")),
                "--skeleton",
                "rat23",
                "--timestamps",
                str(times),
            ],
            "dup2.mat: sampleID repeats at frame 20",
        )
    )
    for argv, message in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # refused, not a warning
            code = main(["import-keypoints", str(path), *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2, (argv, err)
        assert err.startswith("mimic-nwb: error: ") and "\n" not in err, err
        assert re.search(message, err), (message, err)
        assert digest(path) == before


def test_issue_case_ndx_pose_01_file_to_stac(tmp_path):
    """The issue's file: ndx-pose 0.1.x, rat23's names in another order under no known skeleton
    name, millimetres declared as pixels, 30 Hz timestamps: imported with --units mm, registered."""
    from mimic_nwb.stac import StacConfig
    from mimic_nwb.stac.nwb import stac

    positions = np.transpose(scipy.io.loadmat(RAT_CLIP)["pred"][:120], (0, 2, 1)) / 1000.0
    source = tmp_path / "other_tool.nwb"
    _ndx_pose_01_rat(source, positions, order=list(np.random.default_rng(5).permutation(RAT23)))
    path = new_session(tmp_path)
    assert main(["import-keypoints", str(path), str(source), "--units", "mm"]) == 0
    result = stac(path, StacConfig(n_workers=1, n_calibration_frames=40, n_calibration_rounds=2))
    assert "120 of 120 frames fitted" in result.summary() and result.mean_error < 0.01
    findings = _inspector_findings(path, "check_regular_timestamps")
    assert findings == []


def test_import_into_an_open_session_returns_a_typed_result(tmp_path):
    path = new_session(tmp_path)
    times = tmp_path / "times.npy"
    np.save(times, 1.0 + np.arange(1000) / 50.0)
    with mimic_nwb.open(path, "a") as session:
        result = import_keypoints(
            session, RAT_CLIP, KeypointImportConfig(skeleton="rat23", timestamps=times), name="rat"
        )
        # the open session shows the append
        assert session.keypoints("rat").pose_estimation_series["Snout"].rate == 50.0
    assert result.path == path and result.name == "processing/behavior/rat" and result.skeleton == "rat23"
    assert result.frame_ids is None and result.videos == ()
    assert result.keypoints.positions.shape == (1000, 23, 3) and result.keypoints.starting_time == pytest.approx(1.0)
    assert result.summary() == f"{path}: processing/behavior/rat: {result.keypoints.summary()}"


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(rate=-50.0), "^rate: -50.0 Hz must be finite and positive"),
        (dict(rate="fast"), "^rate: 'fast' is not a number of Hz"),
        (dict(starting_time=-1), "^starting_time: -1.0 s is before session_start_time"),
        (dict(rate=50.0, timestamps=[0.0, 0.02]), "^rate and timestamps: give a frame rate or timestamps, not both"),
        (dict(skeleton="rat23", keypoint_names="a,b"), "^skeleton and keypoint_names: .*not both"),
        (dict(units="inches"), "^units 'inches': use one of mm, cm, m"),
    ],
)
def test_config_refuses_bad_values_naming_the_field(values, message):
    with pytest.raises(ValueError, match=message):
        KeypointImportConfig(**values)


def test_clip_length_for_a_stage_matches_nwbinspector_orientation_check():
    """The minimum a stage states is exactly where nwbinspector's orientation check stops firing."""
    from nwbinspector.checks import check_data_orientation
    from pynwb import TimeSeries

    from mimic_nwb.importers.keypoint_data import check_clip_length

    def flagged(frames, columns):
        series = TimeSeries(name="qpos", data=np.zeros((frames, columns)), unit="mixed", rate=50.0)
        return check_data_orientation(series) is not None

    assert flagged(73, 74) and not flagged(74, 74)
    check_clip_length(74, 74, "stac", "s.nwb")
    with pytest.raises(InputError, match="s.nwb: 60 frames; stac needs at least 74"):
        check_clip_length(60, 74, "stac", "s.nwb")
    assert flagged(2, 3) and not flagged(3, 3)  # the import's own minimum, MIN_FRAMES = 3

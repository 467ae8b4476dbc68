"""3D keypoints from the SLEAP family and Anipose, each file written the way its tool writes it.

Layouts (see mimic_nwb/importers/sleap.py and anipose.py): sleap-anipose's triangulated
``points3d.h5`` (one dataset ``tracks`` (frames, tracks, nodes, 3), optional ``frames`` range);
SLEAP's analysis HDF5 (``tracks`` (tracks, D, nodes, frames) in MATLAB order, ``node_names``,
``track_names``, ``point_scores``, ``edge_inds``; sleap-io's "standard" order with a ``dims``
attribute); Anipose's pose-3d CSV. Ground truth: the real rat clip, in millimetres.
"""

import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
from pynwb import validate

from mimic_nwb.cli import main
from mimic_nwb.data import data_path
from mimic_nwb.errors import InputError
from mimic_nwb.importers.anipose import read_anipose_csv
from mimic_nwb.importers.keypoints import KeypointImportConfig, import_keypoints, load_skeleton
from mimic_nwb.importers.sleap import read_sleap_h5
from mimic_nwb.session import read_session
from ndx_mimic.mimic import pose_as_array

from helpers import digest, new_session

RAT23 = load_skeleton("rat23").nodes
CLIP_MM = np.transpose(scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"][:200], (0, 2, 1))  # (N, K, 3)
SECOND_MM = CLIP_MM + np.array([300.0, -200.0, 0.0])  # another animal, elsewhere in the arena


def _triangulated(path, frames=None):
    """sleap-anipose ``triangulate(..., fname=path)``: (frames, tracks, nodes, 3), gzip, a Description."""
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "tracks", data=np.stack([CLIP_MM, SECOND_MM], axis=1), chunks=True, compression="gzip", compression_opts=1
        )
        f["tracks"].attrs["Description"] = (
            "Shape: (n_frames, n_tracks, n_nodes, 3). Camera views used: ['back', 'side']"
        )
        if frames is not None:
            f.create_dataset("frames", data=frames, compression="gzip", compression_opts=1)
            f["frames"].attrs["Description"] = "Range, inclusive to exclusive, of frames triangulated over."
    return path


def _analysis(path, order, preset="matlab", dims=3):
    """SLEAP's analysis export of 3D points: nodes in ``order``, two tracks, point scores."""
    perm = [RAT23.index(n) for n in order]
    tracks = np.stack([CLIP_MM, SECOND_MM], axis=1)[:, :, perm, :dims]  # (frames, tracks, nodes, D)
    scores = np.random.default_rng(0).uniform(0.2, 1.0, tracks.shape[:3])
    edges = np.array([[0, 1], [1, 2], [2, 3]])
    with h5py.File(path, "w") as f:
        if preset == "matlab":  # SLEAP transposes every array for MATLAB
            f.create_dataset("tracks", data=np.transpose(tracks, (1, 3, 2, 0)))
            f.create_dataset("point_scores", data=np.transpose(scores, (1, 2, 0)))
            f.create_dataset("track_occupancy", data=np.ones(tracks.shape[:2], dtype=np.uint8))
            f.create_dataset("edge_inds", data=edges.T)
        elif preset == "legacy":  # older SLEAP exports with transpose=False
            f.attrs["transpose"] = False
            f.create_dataset("tracks", data=np.transpose(tracks, (0, 2, 3, 1)))
            f.create_dataset("point_scores", data=np.transpose(scores, (0, 2, 1)))
            f.create_dataset("track_occupancy", data=np.ones(tracks.shape[:2], dtype=np.uint8))
            f.create_dataset("edge_inds", data=edges)
        else:  # sleap-io preset="standard", with its dims attributes
            f.attrs.update(preset="standard", format="analysis", sleap_io_version="1.0")
            f.create_dataset("tracks", data=tracks).attrs["dims"] = json.dumps(["frame", "track", "node", "xy"])
            f.create_dataset("point_scores", data=scores).attrs["dims"] = json.dumps(["frame", "track", "node"])
            f.create_dataset("track_occupancy", data=np.ones(tracks.shape[:2], dtype=np.uint8))
            f.create_dataset("edge_inds", data=edges)
        f.create_dataset("node_names", data=[n.encode() for n in order])
        f.create_dataset("track_names", data=[b"rat_a", b"rat_b"])
        f.create_dataset("edge_names", data=[[order[a].encode(), order[b].encode()] for a, b in edges])
        f.create_dataset("video_path", data=b"back.mp4")
    return path, scores


def _anipose(path, nodes, positions_mm, aligned=False):
    """``anipose triangulate``'s pose-3d CSV: x, y, z, error, ncams, score per node, M, center, fnum."""
    table = {}
    rng = np.random.default_rng(1)
    for k, node in enumerate(nodes):
        ncams = rng.integers(1, 4, len(positions_mm)).astype(float)
        ncams[ncams < 2] = np.nan  # Anipose leaves points seen by fewer than two cameras empty
        for a, axis in enumerate("xyz"):
            table[f"{node}_{axis}"] = np.where(np.isnan(ncams), np.nan, positions_mm[:, k, a])
        table[f"{node}_error"] = np.where(np.isnan(ncams), np.nan, rng.uniform(0, 5, len(positions_mm)))
        table[f"{node}_ncams"] = ncams
        table[f"{node}_score"] = np.where(np.isnan(ncams), np.nan, rng.uniform(0.5, 1, len(positions_mm)))
    m = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1.0]]) if aligned else np.eye(3)
    for i in range(3):
        for j in range(3):
            table[f"M_{i}{j}"] = m[i, j]
    for i in range(3):
        table[f"center_{i}"] = 12.5 * i if aligned else 0.0
    table["fnum"] = np.arange(len(positions_mm))
    pd.DataFrame(table).to_csv(path, index=False)
    return pd.DataFrame(table)


def test_triangulated_tracks_named_by_skeleton_track_chosen(tmp_path):
    source = _triangulated(tmp_path / "points3d.h5", frames=[100, 300])
    path = new_session(tmp_path)
    summary = import_keypoints(path, source, KeypointImportConfig(skeleton="rat23", rate=50.0, track=1)).summary()
    assert "200 frames x 23 keypoints (rat23, 50 Hz" in summary and "sleap-anipose" in summary
    with read_session(path) as nwbfile:
        behavior = nwbfile.processing["behavior"]
        pose = behavior["PoseEstimation"]
        np.testing.assert_allclose(pose_as_array(pose), SECOND_MM / 1000.0)
        assert pose.source_software == "sleap-anipose" and pose.skeleton.name == "rat23"
        frame_ids = behavior["PoseEstimation_frame_ids"]
        np.testing.assert_array_equal(frame_ids.data[:], np.arange(100, 300))
        snout = pose.pose_estimation_series["Snout"]
        assert snout.rate == 50.0 and snout.starting_time == 0.0
    assert validate(path=str(path)) == []


def test_triangulated_tracks_named_by_keypoint_names_in_file_order(tmp_path):
    source = _triangulated(tmp_path / "points3d.h5")
    shuffled = list(np.random.default_rng(2).permutation(RAT23))
    # a file as a lab has it: its nodes in its own order, named on the command line
    with h5py.File(source, "a") as f:
        data = f["tracks"][:]
        del f["tracks"]
        f.create_dataset("tracks", data=data[:, :, [RAT23.index(n) for n in shuffled]])
    keypoints = read_sleap_h5(source, keypoint_names=",".join(shuffled), track="0")
    assert keypoints.skeleton.name == "rat23" and keypoints.skeleton.nodes == RAT23
    np.testing.assert_allclose(keypoints.positions, CLIP_MM / 1000.0)


@pytest.mark.parametrize("preset", ["matlab", "standard", "legacy"])
def test_sleap_analysis_3d(tmp_path, preset):
    order = list(np.random.default_rng(4).permutation(RAT23))
    source, scores = _analysis(tmp_path / f"{preset}.analysis.h5", order, preset)
    keypoints = read_sleap_h5(source, track="rat_a")
    assert keypoints.skeleton.name == "rat23"  # node names exactly rat23's, in another order
    np.testing.assert_allclose(keypoints.positions, CLIP_MM / 1000.0)
    np.testing.assert_allclose(keypoints.confidence, scores[:, 0][:, [order.index(n) for n in RAT23]])
    assert "track rat_a" in keypoints.layout
    path = new_session(tmp_path)
    assert main(["import-keypoints", str(path), str(source), "--track", "rat_b", "--rate", "100"]) == 0
    with read_session(path) as nwbfile:
        np.testing.assert_allclose(pose_as_array(nwbfile.processing["behavior"]["PoseEstimation"]), SECOND_MM / 1000)


def test_sleap_analysis_with_unknown_nodes_keeps_its_names_and_edges(tmp_path):
    order = [f"node{i}" for i in range(23)]
    with h5py.File(_analysis(tmp_path / "fly.analysis.h5", RAT23)[0], "a") as f:
        del f["node_names"]
        f.create_dataset("node_names", data=[n.encode() for n in order])
    keypoints = read_sleap_h5(tmp_path / "fly.analysis.h5", track=0)
    assert keypoints.skeleton.name == "fly.analysis" and keypoints.skeleton.nodes == order
    np.testing.assert_array_equal(keypoints.skeleton.edges, [[0, 1], [1, 2], [2, 3]])


def test_anipose_csv(tmp_path):
    source = tmp_path / "session1.csv"
    table = _anipose(source, RAT23, CLIP_MM, aligned=True)
    path = new_session(tmp_path)
    summary = import_keypoints(path, source, KeypointImportConfig(rate=100.0)).summary()
    assert "Anipose pose-3d CSV" in summary and "(rat23, 100 Hz" in summary
    with read_session(path) as nwbfile:
        behavior = nwbfile.processing["behavior"]
        pose = behavior["PoseEstimation"]
        positions = pose_as_array(pose)
        expected = CLIP_MM / 1000.0
        missing = np.isnan(table[[f"{n}_x" for n in RAT23]].to_numpy())
        expected[missing] = np.nan
        np.testing.assert_allclose(positions, expected)
        np.testing.assert_allclose(pose.pose_estimation_series["Snout"].confidence[:], table["Snout_score"])
        assert "rotated by `M`" in pose.pose_estimation_series["Snout"].reference_frame
        np.testing.assert_array_equal(behavior["PoseEstimation_frame_ids"].data[:], np.arange(200))
    assert validate(path=str(path)) == []


def test_anipose_csv_with_its_own_names(tmp_path):
    nodes = ["nose", "neck", "tailbase", "paw_l", "paw_r"]
    source = tmp_path / "mouse_a.csv"
    _anipose(source, nodes, CLIP_MM[:, :5] * 0.4)
    keypoints = read_anipose_csv(source)
    assert keypoints.skeleton.name == "mouse_a" and keypoints.skeleton.nodes == nodes
    assert keypoints.frame_ids_name == "fnum"


def test_bad_pose3d_files_exit_2_one_line_file_unchanged(tmp_path, capsys):
    path = new_session(tmp_path)
    before = digest(path)
    triangulated = _triangulated(tmp_path / "points3d.h5")
    flat = tmp_path / "flat.h5"
    with h5py.File(flat, "w") as f:
        f.create_dataset("tracks", data=np.zeros((10, 23, 3)))
    bad_range = _triangulated(tmp_path / "range.h5", frames=[0, 50])
    two_d, _ = _analysis(tmp_path / "2d.analysis.h5", RAT23, dims=2)
    three_d, _ = _analysis(tmp_path / "3d.analysis.h5", RAT23)
    text = tmp_path / "text.csv"
    table = _anipose(text, RAT23, CLIP_MM)
    table["EarL_y"] = table["EarL_y"].astype(object)
    table.loc[7, "EarL_y"] = "n/a?"
    table.to_csv(text, index=False)
    no_columns = tmp_path / "plain.csv"
    no_columns.write_text("a,b\n1,2\n")
    not_h5 = tmp_path / "fake.h5"
    not_h5.write_text("nope")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("something", data=[1, 2])
    short = tmp_path / "short.csv"
    _anipose(short, RAT23, CLIP_MM[:2])
    cases = [
        ([str(triangulated), "--rate", "50", "--track", "0"], "points3d.h5: the file has no node names"),
        (
            [str(triangulated), "--skeleton", "rat23", "--rate", "50"],
            "holds 2 tracks \\(track_0, track_1\\); choose one",
        ),
        ([str(triangulated), "--skeleton", "rat23", "--rate", "50", "--track", "5"], "track 5 is out of range 0..1"),
        (
            [str(triangulated), "--skeleton", "mouse22", "--rate", "50", "--track", "0"],
            "tracks has 23 nodes but 22 keypoint names",
        ),
        (
            [str(triangulated), "--skeleton", "rat23", "--rate", "50", "--track", "0", "--units", "m"],
            "implausible with units 'm'",
        ),
        (
            [str(flat), "--skeleton", "rat23", "--rate", "50"],
            "a triangulated file holds \\(frames, tracks, nodes, 3\\)",
        ),
        ([str(bad_range), "--skeleton", "rat23", "--rate", "50", "--track", "0"], "frames \\[0, 50\\] is not the"),
        ([str(two_d), "--rate", "50", "--track", "0"], "SLEAP points are 2-D; only 3D points are imported"),
        ([str(three_d), "--rate", "50", "--track", "rat_c"], "no track 'rat_c' \\(tracks: rat_a, rat_b\\)"),
        ([str(text), "--rate", "50"], "column 'EarL_y' holds 'n/a\\?' in row 8, not a number"),
        ([str(no_columns), "--rate", "50"], "no <keypoint>_x, _y, _z columns"),
        ([str(not_h5), "--rate", "50"], "fake.h5: not an HDF5 file"),
        ([str(other), "--rate", "50"], "neither NWB \\(ndx-pose\\) nor SLEAP"),
        ([str(short), "--rate", "50"], "a clip needs at least 3 frames"),
    ]
    for argv, message in cases:
        assert main(["import-keypoints", str(path), *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("mimic-nwb: error: ") and "\n" not in err, err
        assert re.search(message, err), (message, err)
        assert digest(path) == before
    assert not list(tmp_path.glob(".session.nwb.*.tmp.nwb"))


def test_nwbinspector_has_no_clock_or_orientation_findings(tmp_path):
    nwbinspector = pytest.importorskip("nwbinspector")
    source = tmp_path / "session1.csv"
    _anipose(source, RAT23, CLIP_MM)
    path = new_session(tmp_path)
    import_keypoints(path, source, KeypointImportConfig(rate=100.0))
    fired = {m.check_function_name for m in nwbinspector.inspect_nwbfile(nwbfile_path=str(path))}
    assert not fired & {"check_regular_timestamps", "check_data_orientation", "check_timestamps_match_first_dimension"}
    with pytest.raises(InputError, match="give the frame rate"):
        import_keypoints(path, source, replace=True)

"""Behaviour labels into a session: bout tables, per-frame labels, replace, bad input."""

import re
import shutil

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from mimic_nwb.cli import main
from mimic_nwb.errors import InputError
from mimic_nwb.importers.labels import LabelImportConfig, bouts_from_frames, import_labels
from mimic_nwb.session import append

from helpers import digest, session_templates

NUM_FRAMES = 500  # keypoints cover 0-10 s


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """A plain session and one with 500 frames of keypoints at 50 Hz, copied by each test."""
    return session_templates(tmp_path_factory.mktemp("templates"), NUM_FRAMES)


@pytest.fixture
def session(templates, tmp_path):
    path = tmp_path / "session.nwb"
    shutil.copy(templates["plain"], path)
    return path


@pytest.fixture
def session_with_keypoints(templates, tmp_path):
    path = tmp_path / "session.nwb"
    shutil.copy(templates["keypoints"], path)
    return path


def read_bouts(path, name="behavior_labels"):
    with NWBHDF5IO(str(path), "r") as io:
        table = io.read().intervals[name]
        return {column: list(table[column][:]) for column in table.colnames}


BOUTS_CSV = "start,stop,label,cluster_id\n0.0,1.5,Walk,3\n1.5,2.25,Rear,7\n4.0,6.0,FaceGroom,12\n"


# ----------------------------------------------------------------------------------------------
# Round trips


def test_csv_bouts_round_trip_through_cli(session, tmp_path, capsys):
    (tmp_path / "bouts.csv").write_text(BOUTS_CSV)
    assert main(["import-labels", str(session), str(tmp_path / "bouts.csv")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "3 bouts of 3 labels" in out
    bouts = read_bouts(session)
    assert bouts == dict(
        start_time=[0.0, 1.5, 4.0],
        stop_time=[1.5, 2.25, 6.0],
        label=["Walk", "Rear", "FaceGroom"],
        cluster_id=[3, 7, 12],
    )


def test_tsv_with_time_column_names_and_no_cluster_ids(session, tmp_path):
    (tmp_path / "bouts.tsv").write_text("start_time\tstop_time\tlabel\n0.5\t1.0\tIdle\n1.0\t3.0\tWalk\n")
    import_labels(session, tmp_path / "bouts.tsv", LabelImportConfig(session_end=5.0))
    assert read_bouts(session) == dict(start_time=[0.5, 1.0], stop_time=[1.0, 3.0], label=["Idle", "Walk"])


def test_per_frame_labels_run_length_encoded():
    labels = ["Walk"] * 3 + ["Rear"] * 2 + [""] * 2 + ["Rear"] * 1 + ["Walk"] * 2
    clusters = [1, 1, 2, 5, 5, 0, 0, 5, 1, 1]
    times = np.arange(10) / 10.0
    bouts = bouts_from_frames(labels, times, 0.1, cluster_ids=clusters)
    assert bouts.label == ["Walk", "Walk", "Rear", "Rear", "Walk"]
    np.testing.assert_allclose(bouts.start, [0.0, 0.2, 0.3, 0.7, 0.8])
    np.testing.assert_allclose(bouts.stop, [0.2, 0.3, 0.5, 0.8, 1.0])  # '' frames 5-6 are a gap
    assert bouts.cluster_id.tolist() == [1, 2, 5, 5, 1]


def test_per_frame_labels_on_the_keypoints_clock(session_with_keypoints):
    labels = np.array(["Idle"] * 100 + ["Walk"] * 250 + ["Rear"] * 150)
    clusters = np.repeat([0, 4, 9], [100, 250, 150])
    result = import_labels(session_with_keypoints, labels, LabelImportConfig(cluster_ids=clusters))
    assert "3 bouts of 3 labels (500 per-frame labels)" in result.summary()
    assert (result.path, result.name, result.bouts.label) == (
        session_with_keypoints,
        "intervals/behavior_labels",
        ["Idle", "Walk", "Rear"],
    )
    bouts = read_bouts(session_with_keypoints)
    np.testing.assert_allclose(bouts["start_time"], [0.0, 2.0, 7.0])
    np.testing.assert_allclose(bouts["stop_time"], [2.0, 7.0, 10.0])
    assert bouts["label"] == ["Idle", "Walk", "Rear"] and bouts["cluster_id"] == [0, 4, 9]


def test_per_frame_npz_with_timestamps_through_cli(session, tmp_path):
    timestamps = 1.0 + np.cumsum(np.full(6, 0.02))
    np.savez(
        tmp_path / "frames.npz",
        labels=np.array(["Walk", "Walk", "Rear", "Rear", "Rear", "Walk"]),
        timestamps=timestamps,
    )
    assert main(["import-labels", str(session), str(tmp_path / "frames.npz"), "--name", "motion_mapper"]) == 0
    bouts = read_bouts(session, "motion_mapper")
    np.testing.assert_allclose(bouts["start_time"], timestamps[[0, 2, 5]])
    np.testing.assert_allclose(bouts["stop_time"], [timestamps[2], timestamps[5], timestamps[5] + 0.02])


def test_replace_labels(session, tmp_path):
    (tmp_path / "bouts.csv").write_text(BOUTS_CSV)
    import_labels(session, tmp_path / "bouts.csv")
    (tmp_path / "new.csv").write_text("start,stop,label\n0,1,Idle\n")
    assert main(["import-labels", str(session), str(tmp_path / "new.csv"), "--replace"]) == 0
    assert read_bouts(session) == dict(start_time=[0.0], stop_time=[1.0], label=["Idle"])
    with append(session, replace=["intervals/behavior_labels"]) as s:
        assert s.replaced == ("behavior_labels",) and "behavior_labels" not in s.nwbfile.intervals
    with NWBHDF5IO(str(session), "r") as io:
        assert "behavior_labels" not in io.read().intervals


# ----------------------------------------------------------------------------------------------
# Bad input: one line naming the input, exit code 2, the session untouched


def _csv(text, name="bouts.csv"):
    def make(folder):
        (folder / name).write_text(text)
        return [str(folder / name)], name

    return make


def _npz(**arrays):
    def make(folder):
        np.savez(folder / "frames.npz", **arrays)
        return [str(folder / "frames.npz")], "frames.npz"

    return make


def _with(make, *extra):
    def wrapped(folder):
        arguments, named = make(folder)
        return [*arguments, *extra], named

    return wrapped


# name -> (function(folder) returning (CLI arguments after the session, text the error must name), session kind)
CASES = {
    "overlapping bouts": (_csv("start,stop,label\n0,2,Walk\n1.5,3,Rear\n"), "plain"),
    "unsorted bouts": (_csv("start,stop,label\n2,3,Walk\n0,1,Rear\n"), "plain"),
    "stop before start": (_csv("start,stop,label\n0,1,Walk\n3,2,Rear\n"), "plain"),
    "zero-length bout": (_csv("start,stop,label\n1,1,Walk\n"), "plain"),
    "bout after the session end": (
        _with(_csv("start,stop,label\n0,1,Walk\n50,70,Rear\n"), "--session-end", "60"),
        "plain",
    ),
    "bout after the keypoints": (_csv("start,stop,label\n0,1,Walk\n9,12,Rear\n"), "keypoints"),
    "negative bout time": (_csv("start,stop,label\n-1,1,Walk\n"), "plain"),
    "empty file": (_csv(""), "plain"),
    "only a header": (_csv("start,stop,label\n"), "plain"),
    "missing label column": (_csv("start,stop,behaviour\n0,1,Walk\n"), "plain"),
    "missing stop column": (_csv("start_time,label\n0,Walk\n"), "plain"),
    "start not a number": (_csv("start,stop,label\nzero,1,Walk\n"), "plain"),
    "NaN stop": (_csv("start,stop,label\n0,nan,Walk\n"), "plain"),
    "empty label": (_csv("start,stop,label\n0,1,\n"), "plain"),
    "cluster id not an integer": (_csv("start,stop,label,cluster_id\n0,1,Walk,3.5\n"), "plain"),
    "label array longer than its timestamps": (
        _npz(labels=np.array(["Walk"] * 5), timestamps=np.arange(4) / 50),
        "plain",
    ),
    "per-frame labels without a clock": (_npz(labels=np.array(["Walk"] * 5)), "plain"),
    "per-frame labels off the keypoints' frame count": (_npz(labels=np.array(["Walk"] * 499)), "keypoints"),
    "cluster ids of another length": (_npz(labels=np.array(["Walk"] * 5), cluster_ids=np.arange(3)), "plain"),
    "npz without labels": (_npz(behaviour=np.array(["Walk"] * 5)), "plain"),
    "timestamps not increasing": (
        lambda folder: (
            [_npz(labels=np.array(["Walk"] * 3))(folder)[0][0], "--timestamps", str(folder / "ts.txt")],
            "ts.txt",
        ),
        "plain",
    ),
    "rate for a table of bouts": (_with(_csv("start,stop,label\n0,1,Walk\n"), "--rate", "50"), "plain"),
    "missing file": (lambda folder: ([str(folder / "nowhere.csv")], "nowhere.csv"), "plain"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_cli(case, templates, tmp_path, capsys):
    make, kind = CASES[case]
    session = tmp_path / "session.nwb"
    shutil.copy(templates[kind], session)
    (tmp_path / "ts.txt").write_text("0.0\n0.02\n0.01\n")
    arguments, named = make(tmp_path)
    before = digest(session)
    assert main(["import-labels", str(session), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mimic-nwb: error: ") and err.count("\n") == 1, err
    assert named in err, err
    assert digest(session) == before
    assert not list(tmp_path.glob(".session.nwb.*"))  # no working copy or lock left behind


def test_bad_input_session_already_has_labels(session, tmp_path):
    (tmp_path / "bouts.csv").write_text(BOUTS_CSV)
    import_labels(session, tmp_path / "bouts.csv")
    before = digest(session)
    with pytest.raises(InputError, match=r"intervals/behavior_labels already exists; pass replace") as error:
        import_labels(session, tmp_path / "bouts.csv")
    assert "\n" not in str(error.value) and str(session) in str(error.value)
    assert digest(session) == before


def test_bad_input_per_frame_array_and_timestamps_of_other_length(session):
    before = digest(session)
    with pytest.raises(InputError, match=r"^labels: 4 frame labels but 3 timestamps$"):
        import_labels(session, ["Walk", "Walk", "Rear", "Rear"], LabelImportConfig(timestamps=[0.0, 0.02, 0.04]))
    assert digest(session) == before


def test_config_refuses_bad_numbers_naming_the_field():
    for settings, message in (
        (dict(rate=0), "rate: 0 must be positive"),
        (dict(rate="fast"), "rate: 'fast' is not a number"),
        (dict(starting_time=float("inf")), "starting_time: inf is not a finite number"),
        (dict(session_end=-1.0), "session_end: -1 must be positive"),
        (dict(rate=50.0, timestamps=[0.0, 0.02]), "rate and timestamps: give a frame rate or timestamps, not both"),
    ):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            LabelImportConfig(**settings)

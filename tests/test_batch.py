"""mimic-nwb batch: many sessions on a Dask LocalCluster; failures isolated; reruns skip what is done."""

from pathlib import Path

import pytest
import scipy.io
import yaml

from mimic_nwb.batch import BatchSession, find_sessions, parse_options, run_batch, run_session, stage_call
from mimic_nwb.cli import main
from mimic_nwb.data import data_path
from mimic_nwb.errors import InputError
from mimic_nwb.session import read_session, session_lock

from helpers import digest, new_session

FRAMES = 100  # stac needs at least as many frames as qpos columns (74)
# A short STAC: the batch is under test, not the registration.
FAST_STAC = {"n_calibration_frames": 20, "n_calibration_rounds": 1}


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The first FRAMES frames of the real rat clip, as a DANNCE file."""
    path = tmp_path_factory.mktemp("clip") / "clip.mat"
    scipy.io.savemat(path, {"pred": scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"][:FRAMES]})
    return path


def _manifest(folder, clip):
    """Three sessions in a YAML manifest: two with the clip, one whose keypoints file is not a .mat."""
    for name in ("rat1.nwb", "rat2.nwb", "rat3.nwb"):
        new_session(folder, name, session_id=name[:-4])
    (folder / "broken.mat").write_text("not a MATLAB file\n")
    manifest = folder / "manifest.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "options": {
                    "import_keypoints.skeleton": "rat23",
                    "import_keypoints.rate": 50.0,
                    **{f"stac.{k}": v for k, v in FAST_STAC.items()},
                },
                "sessions": [
                    {"path": "rat1.nwb", "keypoints": str(clip)},
                    {"path": "rat2.nwb", "keypoints": "broken.mat"},
                    {"path": "rat3.nwb", "keypoints": str(clip), "options": {"stac.name": "StacRegistration_rat3"}},
                ],
            }
        )
    )
    return manifest


def test_batch_on_a_two_worker_cluster_isolates_the_bad_session_and_reruns_skip(clip, tmp_path, capsys):
    manifest = _manifest(tmp_path, clip)
    bad_before = digest(tmp_path / "rat2.nwb")
    code = main(["batch", str(manifest), "--stages", "import-keypoints,stac", "--workers", "2", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 2, out
    # the summary table: a row per session, a column per stage, the error line
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("rat")}
    assert "done" in rows["rat1.nwb"] and "failed" not in rows["rat1.nwb"]
    assert "failed" in rows["rat2.nwb"] and "not run" in rows["rat2.nwb"]
    assert "rat2.nwb [import_keypoints]: " in out and "broken.mat" in out
    assert "3 session(s), 2 without failure" in out
    for name, registration in (("rat1.nwb", "StacRegistration"), ("rat3.nwb", "StacRegistration_rat3")):
        with read_session(tmp_path / name) as nwbfile:
            stac = nwbfile.processing["mimic"][registration]
            assert stac.qpos.data.shape == (FRAMES, 74)
            assert stac.mean_error < 0.005
            assert '"n_calibration_frames": 20' in stac.parameters and '"n_workers": 1' in stac.parameters
    assert digest(tmp_path / "rat2.nwb") == bad_before

    # Rerun from Python on an existing cluster: the done stages are skipped, the bad one fails again.
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = run_batch(
            manifest, ["import_keypoints", "stac"], scheduler=cluster.scheduler_address, progress=False, log=None
        )
    table = result.table()
    assert list(table.columns) == ["session", "stage", "status", "seconds", "error"]
    assert table.set_index(["session", "stage"])["status"].to_dict() == {
        ("rat1.nwb", "import_keypoints"): "skipped",
        ("rat1.nwb", "stac"): "skipped",
        ("rat2.nwb", "import_keypoints"): "failed",
        ("rat2.nwb", "stac"): "not run",
        ("rat3.nwb", "import_keypoints"): "skipped",
        ("rat3.nwb", "stac"): "skipped",
    }
    assert not result.ok and result.failed_sessions == ["rat2.nwb"]
    error = table.loc[2, "error"]
    assert "broken.mat" in error and "\n" not in error, error
    assert result.n_workers == 2


def test_locked_session_is_reported_in_use(clip, tmp_path):
    path = new_session(tmp_path)
    assert main(["import-keypoints", str(path), str(clip), "--skeleton", "rat23", "--rate", "50"]) == 0
    before = digest(path)
    session = BatchSession(path=path, name="session.nwb")
    with session_lock(path):
        outcomes = run_session(session, ("import_keypoints", "stac"), {"stac": dict(FAST_STAC)})
    assert [o.status for o in outcomes] == ["skipped", "failed"]
    assert "in use" in outcomes[1].error and str(path) in outcomes[1].error
    assert digest(path) == before


def test_not_an_nwb_file_fails_with_one_line(tmp_path):
    path = tmp_path / "notes.nwb"
    path.write_text("hello\n")
    outcomes = run_session(BatchSession(path=path, name="notes.nwb"), ("stac", "inverse_dynamics"), {})
    assert [o.status for o in outcomes] == ["failed", "not run"]
    assert outcomes[0].error == f"{path}: not an NWB file (not HDF5)"


def test_a_stage_without_its_input_fails(tmp_path):
    path = new_session(tmp_path)
    outcomes = run_session(BatchSession(path=path, name="s"), ("import_units",), {})
    assert outcomes[0].status == "failed" and "no 'units' input" in outcomes[0].error


def test_sessions_from_csv_folder_and_dandiset(tmp_path):
    (tmp_path / "a.nwb").write_bytes(b"")
    (tmp_path / "sub-rat1").mkdir()
    (tmp_path / "sub-rat1" / "sub-rat1_ses-1.nwb").write_bytes(b"")
    (tmp_path / "sub-rat1" / "notes.txt").write_text("")
    sessions, options = find_sessions(tmp_path)
    assert [s.name for s in sessions] == ["a.nwb", "sub-rat1/sub-rat1_ses-1.nwb"] and options == {}

    csv_path = tmp_path / "manifest.csv"
    csv_path.write_text("path,keypoints,import_keypoints.rate\na.nwb,kp/a.mat,50\nsub-rat1/sub-rat1_ses-1.nwb,,\n")
    sessions, _ = find_sessions(csv_path)
    assert sessions[0].inputs == {"keypoints": (tmp_path / "kp" / "a.mat").resolve()}
    assert sessions[0].options == {"import_keypoints": {"rate": 50}}
    assert sessions[1].inputs == {} and sessions[1].options == {}


@pytest.mark.parametrize(
    "source, message",
    [
        ("missing.yaml", "no such manifest or folder"),
        ("empty_folder", "no .nwb files"),
        ("bad.yaml", "unknown field(s) keypoint"),
        ("twice.yaml", "is listed twice"),
        ("nopath.csv", "needs a header with a 'path' column"),
    ],
)
def test_bad_manifests(tmp_path, source, message):
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "bad.yaml").write_text("- path: a.nwb\n  keypoint: a.mat\n")
    (tmp_path / "twice.yaml").write_text("- a.nwb\n- ./a.nwb\n")
    (tmp_path / "nopath.csv").write_text("session\na.nwb\n")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        find_sessions(tmp_path / source)


def test_options_go_to_the_config_or_the_function():
    options = parse_options(["stac.smoothness_weight=0.5", "stac.up_direction=[0, 0, 1]", "stac.name=R1"])
    kwargs = stage_call("stac", options["stac"])
    assert kwargs["config"].smoothness_weight == 0.5 and kwargs["config"].up_direction == (0, 0, 1)
    assert kwargs["config"].n_workers == 1 and kwargs["name"] == "R1" and kwargs["progress"] is False
    kwargs = stage_call("train_controller", {"steps": 10, "encoder_sizes": [64, 64]})
    assert kwargs["training"].steps == 10 and kwargs["config"].encoder_sizes == (64, 64)
    with pytest.raises(InputError, match="option train_controller.checkpoint_path: not an option"):
        stage_call("train_controller", {"checkpoint_path": "a.npz"})  # the manifest's 'checkpoint' input


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--stages", "stac,registration"], "unknown stage(s) registration"),
        (["--stages", "stac", "--option", "stac.smoothnes=1"], "option stac.smoothnes: not an option of stage stac"),
        (["--stages", "stac", "--option", "stac.chunk_frames=0"], "options of stage stac: StacConfig.chunk_frames"),
        (["--stages", "stac", "--option", "encode.bin_size=0.02"], "stage encode is not among --stages stac"),
        (["--stages", "stac", "--option", "stac"], "expected STAGE.KEY=VALUE"),
    ],
)
def test_bad_arguments_exit_2_before_running(tmp_path, capsys, argv, message):
    path = new_session(tmp_path)
    before = digest(path)
    assert main(["batch", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
    assert digest(path) == before


def test_summary_lists_every_session_and_stage():
    from mimic_nwb.batch import BatchResult, StageOutcome

    result = BatchResult(
        sessions=[BatchSession(path=Path("a.nwb"), name="a"), BatchSession(path=Path("b.nwb"), name="b")],
        stages=("stac", "encode"),
        outcomes=[
            StageOutcome("a", "stac", "done", 1.25),
            StageOutcome("a", "encode", "skipped"),
            StageOutcome("b", "stac", "failed", 0.5, "b: no keypoints"),
            StageOutcome("b", "encode", "not run"),
        ],
        wall_seconds=2.0,
        scheduler="test",
        n_workers=2,
    )
    lines = result.summary().splitlines()
    assert lines[0].split() == ["session", "stac", "encode"]
    assert lines[2].split() == ["a", "done", "1.2", "s", "skipped"]
    assert lines[3].split() == ["b", "failed", "0.5", "s", "not", "run"]
    assert "  b [stac]: b: no keypoints" in lines
    assert lines[-1].startswith("2 session(s), 1 without failure; stages: 1 done, 1 skipped, 1 failed, 1 not run")

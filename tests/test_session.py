"""The append mechanism: atomic under kill -9, exclusive, replace without growth or dangling links."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import mujoco
import numpy as np
import pynwb
import pytest
from pynwb import NWBHDF5IO, validate

from mimic_nwb.errors import InputError, SessionInUseError
from mimic_nwb.session import append, clone_or_copy, read_session, session_lock
from ndx_mimic.testing import mock

from helpers import digest, new_session


def _add_mock_results(session_append, suffix=""):
    body_model = mock.mock_BodyModel(name=f"BodyModel{suffix}", software_name=None, software_version=None)
    session_append.add(body_model, parameters={"scale": 1.0})
    return body_model


def test_append_records_provenance(tmp_path):
    path = new_session(tmp_path)
    with append(path) as s:
        _add_mock_results(s)
    with read_session(path) as nwbfile:
        model = nwbfile.processing["mimic"]["BodyModel"]
        assert model.software_name == "mimic_nwb"
        parameters = json.loads(model.parameters)
        assert parameters["scale"] == 1.0
        # the versions of the libraries that decide the numbers, as installed (issue 13)
        versions = parameters["library_versions"]
        assert versions["mujoco"] == mujoco.__version__ and versions["numpy"] == np.__version__
        assert versions["pynwb"] == pynwb.__version__ and "jax" in versions
        assert model.created.endswith("+00:00")
    assert validate(path=str(path)) == []


def test_existing_result_is_an_error_unless_replaced(tmp_path):
    path = new_session(tmp_path)
    with append(path) as s:
        _add_mock_results(s)
    before = digest(path)
    with pytest.raises(InputError, match="processing/mimic/BodyModel already exists; pass replace"):
        with append(path) as s:
            _add_mock_results(s)
    assert digest(path) == before
    with append(path, replace=["BodyModel"]) as s:
        assert s.replaced == ("BodyModel",)
        s.add(mock.mock_BodyModel(model_name="second"))
    with read_session(path) as nwbfile:
        assert nwbfile.processing["mimic"]["BodyModel"].model_name == "second"


def test_replacing_does_not_grow_the_file(tmp_path):
    path = new_session(tmp_path)
    with append(path) as s:
        s.add(mock.mock_BinnedSpikeCounts(num_bins=20000, num_units=20))
    first = path.stat().st_size
    sizes = []
    for seed in range(3):
        with append(path, replace=["BinnedSpikeCounts"]) as s:
            counts = np.random.default_rng(seed).poisson(0.5, size=(20000, 20)).astype("uint16")
            s.add(mock.mock_BinnedSpikeCounts(data=counts, num_units=20))
        sizes.append(path.stat().st_size)
    assert max(sizes) <= first + 4096, (first, sizes)
    with read_session(path) as nwbfile:
        np.testing.assert_array_equal(nwbfile.processing["mimic"]["BinnedSpikeCounts"].data[:], counts)


def test_replace_refuses_dangling_links_or_takes_dependents(tmp_path):
    path = tmp_path / "full.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(mock.mock_session())
    before = digest(path)
    with pytest.raises(InputError, match="mimic/SimulationRollout_closed_loop links StacRegistration"):
        with append(path, replace=["StacRegistration"]) as s:
            pass
    assert digest(path) == before
    with append(path, replace=["StacRegistration"], replace_dependents=True) as s:
        # the rollout links the registration, the activations link the rollout: all go
        assert set(s.replaced) == {
            "StacRegistration",
            "SimulationRollout_closed_loop",
            "NetworkActivations_closed_loop",
        }
    with read_session(path) as nwbfile:
        names = set(nwbfile.processing["mimic"].data_interfaces)
        assert "StacRegistration" not in names and "BodyModel" in names and "ControllerNetwork" in names
    assert validate(path=str(path)) == []


def test_second_writer_gets_session_in_use(tmp_path):
    path = new_session(tmp_path)
    with session_lock(path):
        with pytest.raises(SessionInUseError, match="session is in use"):
            with append(path):
                pass
    with append(path) as s:  # free again
        _add_mock_results(s)


def test_read_only_and_not_nwb_files_are_refused(tmp_path):
    path = new_session(tmp_path)
    os.chmod(path, 0o444)
    try:
        with pytest.raises(InputError, match="read-only"):
            with append(path):
                pass
    finally:
        os.chmod(path, 0o644)
    text = tmp_path / "notes.nwb"
    text.write_text("not hdf5")
    with pytest.raises(InputError, match="not an NWB file"):
        with append(text):
            pass


WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from mimic_nwb.session import append
    from ndx_mimic.testing import mock
    with append(sys.argv[1]) as s:
        for i in range(3):
            s.add(mock.mock_SimulationRollout(name=f"rollout_{i}", body_model=s.nwbfile.processing["mimic"]["BodyModel"]))
    print("done", flush=True)
    """
)


def test_kill_9_at_random_moments_leaves_old_or_new_file(tmp_path):
    path = new_session(tmp_path)
    with append(path) as s:
        _add_mock_results(s)
    original = digest(path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # A writer takes about 2 s here (start-up included): kill at moments spread over it.
    rng = random.Random(0)
    outcomes = {"old": 0, "new": 0}
    for attempt in range(12):
        copy = tmp_path / f"kill_{attempt}.nwb"
        copy.write_bytes(path.read_bytes())
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(copy)], stdout=subprocess.PIPE, env=env)
        time.sleep(rng.uniform(0.2, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with read_session(copy) as nwbfile:
            names = set(nwbfile.processing["mimic"].data_interfaces)
        if digest(copy) == original:
            outcomes["old"] += 1
        else:
            assert names == {"BodyModel", "rollout_0", "rollout_1", "rollout_2"}
            assert validate(path=str(copy)) == []
            outcomes["new"] += 1
        # a later writer cleans up and succeeds
        with append(copy, replace=["rollout_0"]) as s:
            pass
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no working copy, no lock
    assert outcomes["old"] > 0, outcomes


def _session_with_linked_clock(tmp_path):
    """Keypoints on an irregular clock and a registration whose qpos links the keypoints' timestamps.

    This is what ``stac`` writes for keypoints without a rate (e.g. imported from another tool's NWB).
    """
    from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeletons

    path = new_session(tmp_path)
    times = np.cumsum(np.random.default_rng(0).uniform(0.015, 0.025, mock.NUM_FRAMES))
    with append(path) as s:
        skeleton = mock.mock_Skeleton()
        behavior = s.module("behavior", "keypoints")
        behavior.add(Skeletons(skeletons=[skeleton]))
        first = None
        series = []
        for k, keypoint in enumerate(mock.TOY_KEYPOINTS):
            series.append(
                PoseEstimationSeries(
                    name=keypoint,
                    description="toy",
                    data=np.full((mock.NUM_FRAMES, 3), 0.01 * k),
                    unit="meters",
                    reference_frame="arena",
                    timestamps=times if first is None else first,
                )
            )
            first = first or series[0]
        pose = PoseEstimation(
            name="PoseEstimation", pose_estimation_series=series, description="toy", skeleton=skeleton
        )
        behavior.add(pose)
        body_model = s.add(mock.mock_BodyModel())
        qpos = mock.mock_JointStateSeries(body_model, "qpos", rate=None, starting_time=None, timestamps=first)
        s.add(mock.mock_StacRegistration(body_model=body_model, pose_estimation=pose, qpos=qpos))
    return path


def test_replace_follows_links_from_dependents_only(tmp_path):
    """Issue 12: the registration links the keypoints' clock; replacing it must not be refused."""
    path = _session_with_linked_clock(tmp_path)
    with h5py.File(path, "r") as f:  # the clock is a link, as stac writes it
        assert isinstance(f["processing/mimic/StacRegistration/qpos"].get("timestamps", getlink=True), h5py.SoftLink)
    before = digest(path)
    # The keypoints are depended on by the registration: refused, naming it.
    with pytest.raises(InputError, match="mimic/StacRegistration links PoseEstimation"):
        with append(path, replace=["processing/behavior/PoseEstimation"]):
            pass
    assert digest(path) == before
    # The registration depends on the keypoints, not the other way: it can be replaced.
    with append(path, replace=["StacRegistration", "BodyModel"]) as s:
        assert set(s.replaced) == {"StacRegistration", "BodyModel"}
        body_model = s.add(mock.mock_BodyModel(model_name="second"))
        pose = s.input("processing/behavior/PoseEstimation")
        first = next(iter(pose.pose_estimation_series.values()))
        qpos = mock.mock_JointStateSeries(body_model, "qpos", rate=None, starting_time=None, timestamps=first)
        s.add(mock.mock_StacRegistration(body_model=body_model, pose_estimation=pose, qpos=qpos))
    with read_session(path) as nwbfile:
        stac = nwbfile.processing["mimic"]["StacRegistration"]
        assert stac.body_model.model_name == "second"
        np.testing.assert_array_equal(
            stac.qpos.timestamps[:],
            nwbfile.processing["behavior"]["PoseEstimation"].pose_estimation_series["head"].timestamps[:],
        )
    assert validate(path=str(path)) == []


def test_replace_takes_or_refuses_results_computed_from_it(tmp_path):
    """A result whose parameters name the replaced one is derived from it, even without a link."""
    path = new_session(tmp_path)
    with append(path) as s:
        body_model = s.add(mock.mock_BodyModel())
        s.add(mock.mock_SimulationRollout(body_model=body_model, mode="inverse_dynamics"))
        s.add(
            mock.mock_ControllerNetwork(with_weights=False),
            parameters={"inverse_dynamics": "SimulationRollout_inverse_dynamics", "steps": 10},
        )
        s.add(mock.mock_BinnedSpikeCounts(), parameters={"bin_size": 0.02, "note": "SimulationRollout_inverse"})
    before = digest(path)
    with pytest.raises(
        InputError,
        match=r"mimic/ControllerNetwork was computed from SimulationRollout_inverse_dynamics"
        r" \(its parameters name it\).*--replace-dependents",
    ):
        with append(path, replace=["SimulationRollout_inverse_dynamics"]):
            pass
    assert digest(path) == before
    with append(path, replace=["SimulationRollout_inverse_dynamics"], replace_dependents=True) as s:
        assert set(s.replaced) == {"SimulationRollout_inverse_dynamics", "ControllerNetwork"}
    with read_session(path) as nwbfile:
        assert set(nwbfile.processing["mimic"].data_interfaces) == {"BodyModel", "BinnedSpikeCounts"}


def test_command_line_replace_dependents(tmp_path, capsys):
    """``--replace`` refuses to orphan derived results; ``--replace-dependents`` takes them along."""
    from mimic_nwb import cli

    path = new_session(tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("start,stop,label\n0.0,1.0,Walk\n1.0,2.0,Rear\n")
    argv = ["import-labels", str(path), str(labels), "--session-end", "10"]
    assert cli.main(argv) == 0
    with append(path) as s:  # an RSA computed over those labels names them in its parameters
        s.add(mock.mock_RepresentationalSimilarity(), parameters={"labels": "intervals/behavior_labels"})
    before = digest(path)
    capsys.readouterr()
    assert cli.main([*argv, "--replace"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mimic/RepresentationalSimilarity was computed from behavior_labels" in err[0], err
    assert digest(path) == before
    assert cli.main([*argv, "--replace", "--replace-dependents"]) == 0
    with read_session(path) as nwbfile:
        assert "RepresentationalSimilarity" not in nwbfile.processing["mimic"].data_interfaces
        assert list(nwbfile.intervals["behavior_labels"]["label"][:]) == ["Walk", "Rear"]


def test_work_copy_is_a_clone_or_a_copy(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(np.random.default_rng(0).bytes(3 << 20))
    method = clone_or_copy(source, tmp_path / "copy.bin")
    assert method in ("reflink", "copy_file_range", "copy")
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()


@pytest.mark.skipif(
    not os.environ.get("MIMIC_NWB_REFLINK_DIR"), reason="set MIMIC_NWB_REFLINK_DIR to a folder on btrfs/XFS (reflink)"
)
def test_append_clones_on_a_reflink_file_system():
    """On a file system with reflinks an append neither copies the data nor takes space for them."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(dir=os.environ["MIMIC_NWB_REFLINK_DIR"]))
    try:
        path = new_session(folder)
        counts = np.random.default_rng(0).integers(0, 65535, size=(10_000_000, 10), dtype=np.uint16)  # 200 MB
        with append(path) as s:
            s.add(mock.mock_BinnedSpikeCounts(data=counts, num_units=10))
        os.sync()
        free = shutil.disk_usage(folder).free
        with append(path) as s:
            s.add(mock.mock_BodyModel())
        assert s.copy_method == "reflink"
        os.sync()
        assert free - shutil.disk_usage(folder).free < 20e6  # not another 200 MB
        with read_session(path) as nwbfile:
            np.testing.assert_array_equal(nwbfile.processing["mimic"]["BinnedSpikeCounts"].data[-5:], counts[-5:])
    finally:
        shutil.rmtree(folder)

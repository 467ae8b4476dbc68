"""The session API: mimic_nwb.open, typed lookups, appends that refuse stale inputs, the lock across processes."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from pynwb import NWBHDF5IO

import mimic_nwb
from mimic_nwb.errors import InputError, SessionInUseError, StaleInputError
from mimic_nwb.session import append, find_result, read_session, session_lock
from ndx_mimic import BodyModel, SimulationRollout, StacRegistration
from ndx_mimic.testing import mock

from helpers import digest


@pytest.fixture
def full_session(tmp_path):
    """Every type of result (mock_session), plus a second rollout so that a bare lookup is ambiguous."""
    path = tmp_path / "full.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(mock.mock_session())
    with append(path) as s:
        s.add(mock.mock_SimulationRollout(name="rollout_b", body_model=s.nwbfile.processing["mimic"]["BodyModel"]))
    return path


def test_typed_lookups(full_session):
    with mimic_nwb.open(full_session) as session:
        assert isinstance(session, mimic_nwb.Session)
        stac = session.result(StacRegistration)
        assert stac.name == "StacRegistration"
        assert session.result("StacRegistration") is stac  # a type name works as well as the class
        assert list(session.results(SimulationRollout)) == ["SimulationRollout_closed_loop", "rollout_b"]
        assert session.results(BodyModel) == {"BodyModel": session.nwbfile.processing["mimic"]["BodyModel"]}
        assert session.result(SimulationRollout, name="rollout_b").name == "rollout_b"
        assert session.keypoints().name == "PoseEstimation"
        assert stac.pose_estimation is session.keypoints()
        assert len(session.units()) == 3
        assert session.object_ids(stac, session.keypoints()) == {
            "processing/mimic/StacRegistration": stac.object_id,
            "processing/behavior/PoseEstimation": session.keypoints().object_id,
        }
        assert session.object_ids(session.units()) == {"units": session.units().object_id}
        # Never a silent first: ambiguity, absence and a wrong type name the candidates.
        with pytest.raises(
            InputError,
            match=r"full.nwb: 2 SimulationRollout results in processing/mimic "
            r"\(SimulationRollout_closed_loop, rollout_b\): choose one by name",
        ):
            session.result(SimulationRollout)
        with pytest.raises(
            InputError,
            match=r"no SimulationRollout named 'nope' in processing/mimic "
            r"\(found: SimulationRollout_closed_loop, rollout_b\)",
        ):
            session.result(SimulationRollout, name="nope")
        with pytest.raises(InputError, match="processing/mimic/BodyModel is a BodyModel, not a SimulationRollout"):
            session.result(SimulationRollout, name="BodyModel")
        with pytest.raises(InputError, match="no PoseEstimation named 'other' in processing/behavior"):
            session.keypoints("other")
        assert "(r)" in repr(session)
    assert "closed" in repr(session) and session.nwbfile is None


def test_find_result_on_any_nwbfile(full_session, tmp_path):
    with read_session(full_session) as nwbfile:
        assert find_result(nwbfile, "ControllerNetwork").name == "ControllerNetwork"
        with pytest.raises(InputError, match=f"{full_session}: 2 SimulationRollout results"):
            find_result(nwbfile, SimulationRollout)
    empty = tmp_path / "empty.nwb"
    from helpers import new_session

    new_session(tmp_path, "empty.nwb")
    with read_session(empty) as nwbfile:
        with pytest.raises(InputError, match="no StacRegistration in processing/mimic"):
            find_result(nwbfile, StacRegistration)
        assert mimic_nwb.find_results(nwbfile, StacRegistration) == {}


def test_append_through_a_session(full_session):
    with mimic_nwb.open(full_session) as session:
        with pytest.raises(InputError, match="opened read-only"):
            with session.append():
                pass
    with mimic_nwb.open(full_session, mode="a") as session:
        pose = session.keypoints()
        with session.append(inputs=session.object_ids(pose)) as s:
            assert s.copy_method in ("reflink", "copy_file_range", "copy")
            s.add(
                mock.mock_BodyModel(name="BodyModel_2"), parameters={"keypoints": "processing/behavior/PoseEstimation"}
            )
        # the session shows the new file (objects read before the append are looked up again)
        stored = json.loads(session.result(BodyModel, name="BodyModel_2").parameters)
        assert stored["keypoints"] == "processing/behavior/PoseEstimation"
    with pytest.raises(ValueError, match="mode must be"):
        mimic_nwb.open(full_session, mode="w")


REPLACE_KEYPOINTS = textwrap.dedent(
    """
    import sys
    from mimic_nwb.session import append
    from ndx_mimic.testing import mock
    # Another writer replaces the keypoints (and what was derived from them) between our read and append.
    with append(sys.argv[1], replace=["behavior/PoseEstimation"], replace_dependents=True) as s:
        s.nwbfile.processing["behavior"].add(mock.mock_PoseEstimation(skeleton=s.nwbfile.processing["behavior"]["Skeletons"]["toy3"]))
    print("replaced", flush=True)
    """
)

REPLACE_OTHER = textwrap.dedent(
    """
    import sys
    from mimic_nwb.session import append
    from ndx_mimic.testing import mock
    with append(sys.argv[1], replace=["RepresentationalSimilarity"]) as s:
        s.add(mock.mock_RepresentationalSimilarity())
    """
)


def _registration_from(s, pose):
    """A new result linking ``pose`` as it is in the working copy, after checking it is the one read."""
    source = s.input(pose)
    return s.add(
        mock.mock_StacRegistration(
            name="StacRegistration_2", pose_estimation=source, body_model=s.input("BodyModel"), skeleton=source.skeleton
        )
    )


def test_a_concurrent_replace_cannot_produce_a_stale_link(full_session):
    with mimic_nwb.open(full_session, mode="a") as session:
        pose = session.keypoints()
        read_id = pose.object_id
        inputs = session.object_ids(pose, session.result(BodyModel))
        # ... a long computation from the keypoints; meanwhile another process replaces them:
        subprocess.run([sys.executable, "-c", REPLACE_KEYPOINTS, str(full_session)], check=True, capture_output=True)
        after_replace = digest(full_session)
        with pytest.raises(
            StaleInputError, match="input processing/behavior/PoseEstimation changed since it was read: rerun"
        ):
            with session.append(inputs=inputs) as s:
                s.add(mock.mock_BodyModel(name="never_written"))
        with pytest.raises(InputError, match="changed since it was read"):
            with session.append() as s:
                _registration_from(s, pose)
        assert digest(full_session) == after_replace
        assert session.keypoints().object_id == read_id  # what it read, until it reads again
        session.reload()
        assert session.keypoints().object_id != read_id


def test_inputs_unchanged_by_other_appends_are_accepted(full_session):
    """Another writer's replace of an unrelated result keeps every other object's object_id."""
    with mimic_nwb.open(full_session, mode="a") as session:
        pose = session.keypoints()
        read_id = pose.object_id
        subprocess.run([sys.executable, "-c", REPLACE_OTHER, str(full_session)], check=True, capture_output=True)
        with session.append(inputs=session.object_ids(pose)) as s:
            _registration_from(s, pose)
        assert session.result(StacRegistration, "StacRegistration_2").pose_estimation.object_id == read_id
    # a result that is gone is named too
    before = digest(full_session)
    with pytest.raises(InputError, match="input processing/mimic/NoSuchResult is gone since it was read"):
        with append(full_session, inputs={"processing/mimic/NoSuchResult": "x"}):
            pass
    assert digest(full_session) == before


HOLD_LOCK = textwrap.dedent(
    """
    import sys, time
    from mimic_nwb.session import session_lock
    with session_lock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
    print("released", flush=True)
    """
)


def _hold_lock(path):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_between_processes(full_session):
    before = digest(full_session)
    holder = _hold_lock(full_session)
    try:
        with pytest.raises(SessionInUseError, match="session is in use by another writer"):
            with append(full_session) as s:
                s.add(mock.mock_BodyModel(name="BodyModel_2"))
        assert digest(full_session) == before
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    with append(full_session) as s:  # released: the next writer gets it
        s.add(mock.mock_BodyModel(name="BodyModel_2"))
    assert not [p.name for p in full_session.parent.iterdir() if p.name.startswith(".")]  # lock file removed
    # A holder killed with -9 leaves no stale lock: the kernel drops it with the process.
    holder = _hold_lock(full_session)
    with pytest.raises(SessionInUseError):
        with session_lock(full_session):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with append(full_session, replace=["BodyModel_2"]) as s:
        assert s.replaced == ("BodyModel_2",)


def test_opened_takes_a_session_or_a_path(full_session):
    from mimic_nwb.session import opened

    with mimic_nwb.open(full_session) as session:
        with opened(session) as same:
            assert same is session
        assert session.nwbfile is not None  # left open
    with opened(full_session) as from_path:
        assert from_path.mode == "a" and from_path.result(StacRegistration).name == "StacRegistration"
    assert from_path.nwbfile is None  # closed with the block

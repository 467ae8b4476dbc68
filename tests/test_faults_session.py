"""Faults around the session file itself (issue 15): links, a full disk, long names, odd HDF5 roots,
files pynwb cannot build. Contract: one line naming the file and the problem (InputError; exit 2
from the command line), the session byte-identical, no working copy left behind, no traceback."""

import errno
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import h5py
import numpy as np
import pytest
from pynwb import NWBHDF5IO

from mimic_nwb import cli
from mimic_nwb import session as session_module
from mimic_nwb.errors import InputError, SessionInUseError
from mimic_nwb.session import append, read_session, session_lock
from ndx_mimic.testing import mock

from helpers import digest, new_session


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _add_body_model(path, name="BodyModel"):
    with append(path) as s:
        s.add(mock.mock_BodyModel(name=name))


def _run_cli(capsys, *argv):
    """``mimic-nwb ARGV`` in this process: (exit code, stderr lines)."""
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip().splitlines()


# --- links --------------------------------------------------------------------------------------


def test_symlinked_session_is_updated_through_its_target(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    real = new_session(store)
    link = tmp_path / "link.nwb"
    link.symlink_to(real)
    _add_body_model(link)
    assert link.is_symlink() and link.resolve() == real  # the link survives
    with read_session(real) as nwbfile:
        assert "BodyModel" in nwbfile.processing["mimic"].data_interfaces
    assert _hidden(store) == [] and _hidden(tmp_path) == []
    # one lock for the file, whichever name a writer uses
    with session_lock(link):
        with pytest.raises(SessionInUseError):
            _add_body_model(real, "BodyModel_2")
    # a relative link, through a linked folder, works the same
    relative = store / "relative.nwb"
    relative.symlink_to(real.name)
    _add_body_model(relative, "BodyModel_2")
    with read_session(link) as nwbfile:
        assert {"BodyModel", "BodyModel_2"} <= set(nwbfile.processing["mimic"].data_interfaces)


def test_hard_linked_session_is_refused(tmp_path, capsys):
    path = new_session(tmp_path)
    other = tmp_path / "other_name.nwb"
    os.link(path, other)
    before = digest(path)
    with pytest.raises(
        InputError,
        match=r"session.nwb: the session file has 2 hard links \(e.g. publish --files-mode hardlink\); an append "
        r"replaces the file and would leave the other names on the old one \(copy it to a file of its own first\)",
    ):
        _add_body_model(path)
    labels = tmp_path / "labels.csv"
    labels.write_text("start,stop,label\n0.0,1.0,Walk\n")
    code, err = _run_cli(capsys, "import-labels", other, labels, "--session-end", 10)
    assert code == 2 and len(err) == 1 and "hard links" in err[0]
    assert digest(path) == before and os.stat(path).st_nlink == 2 and _hidden(tmp_path) == []


# --- a full disk --------------------------------------------------------------------------------


def test_disk_full_while_copying(tmp_path, monkeypatch):
    path = new_session(tmp_path)
    before = digest(path)
    monkeypatch.setattr(session_module, "_reflink", lambda source, destination: False)

    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "copy_file_range", no_space, raising=False)
    monkeypatch.setattr(shutil, "copyfile", no_space)
    with pytest.raises(InputError, match=r"session.nwb: no space left on the device of .*; session unchanged"):
        _add_body_model(path)
    assert digest(path) == before and _hidden(tmp_path) == []


def test_too_little_space_for_the_copy_is_found_before_copying(tmp_path, monkeypatch):
    path = new_session(tmp_path)
    before = digest(path)
    monkeypatch.setattr(session_module, "_reflink", lambda source, destination: False)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(InputError, match="no space left on the device"):
        _add_body_model(path)
    assert digest(path) == before and _hidden(tmp_path) == []


def test_disk_full_while_hdf5_writes(tmp_path, monkeypatch):
    path = new_session(tmp_path)
    _add_body_model(path)
    before = digest(path)

    def write(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "Can't write data (file write failed: errno = 28, No space left on device)")

    monkeypatch.setattr(NWBHDF5IO, "write", write)
    with pytest.raises(InputError, match="no space left on the device"):
        _add_body_model(path, "BodyModel_2")
    assert digest(path) == before and _hidden(tmp_path) == []


FILL_A_SMALL_DISK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from helpers import new_session, digest
    from mimic_nwb.errors import InputError, SessionInUseError
    from mimic_nwb.session import append
    from mimic_nwb.storage import compressed
    from ndx_mimic.testing import mock
    folder, case = Path(sys.argv[1]), sys.argv[3]
    path = new_session(folder)
    rng = np.random.default_rng(0)
    if case == "replace":  # 1.6 MB of results, then a replace that exports the file (a second copy)
        with append(path) as s:
            s.add(mock.mock_BinnedSpikeCounts(data=rng.integers(0, 60000, size=(80_000, 10)).astype("uint16"), num_units=10))
    before = digest(path)
    # ~8 MB that gzip cannot shrink much, on a 4 MB file system: the write fails part way
    counts = rng.integers(0, 60000, size=(400_000, 10)).astype("uint16")
    try:
        with append(path, replace=["BinnedSpikeCounts"] if case == "replace" else ()) as s:
            s.add(mock.mock_BinnedSpikeCounts(data=compressed(counts), num_units=10))
        print("appended")
    except InputError as error:
        print(f"InputError: {error}")
    print("unchanged" if digest(path) == before else "changed")
    print(sorted(p.name for p in folder.iterdir()))
    """
)


def _can_mount_tmpfs(folder):
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {folder}"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.parametrize("case", ["append", "replace"])
def test_disk_full_on_a_real_small_file_system(tmp_path, case):
    """A 4 MB tmpfs in a private mount namespace: HDF5 itself hits ENOSPC while writing a chunk.

    Before: 282 lines of HDF5 errors, then a segmentation fault at exit.
    """
    mount = tmp_path / "small_disk"
    mount.mkdir()
    if not _can_mount_tmpfs(mount):
        pytest.skip("cannot mount a tmpfs here (no user namespaces)")
    tests = os.path.dirname(__file__)
    command = f'mount -t tmpfs -o size=4m tmpfs {mount} && exec {sys.executable} -c "$0" {mount} {tests} {case}'
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", command, FILL_A_SMALL_DISK],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]  # no crash
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("InputError: ") and "no space left on the device" in lines[0], lines
    assert lines[1:] == ["unchanged", "['session.nwb']"]
    assert "Traceback" not in result.stderr and "HDF5-DIAG" not in result.stderr, result.stderr[-2000:]


# --- names --------------------------------------------------------------------------------------


def test_file_name_near_the_file_system_limit(tmp_path):
    short = new_session(tmp_path)
    path = tmp_path / ("s" * 246 + ".nwb")  # 250 bytes: ".<name>.XXXXXXXX.tmp.nwb" would not fit in 255
    short.rename(path)
    _add_body_model(path)
    with append(path, replace=["BodyModel"]) as s:  # the export path too
        s.add(mock.mock_BodyModel(model_name="second"))
    with read_session(path) as nwbfile:
        assert nwbfile.processing["mimic"]["BodyModel"].model_name == "second"
    assert _hidden(tmp_path) == []


# --- files that are not (readable) NWB sessions ----------------------------------------------


def test_hdf5_with_only_an_nwb_version_attribute(tmp_path, capsys):
    path = tmp_path / "version_only.nwb"
    with h5py.File(path, "w") as f:
        f.attrs["nwb_version"] = "2.5.0"
    before = digest(path)
    with pytest.raises(
        InputError,
        match=r"version_only.nwb: not an NWB file \(HDF5 with an nwb_version attribute "
        r"but no NWBFile at its root\)",
    ):
        with read_session(path):
            pass
    labels = tmp_path / "labels.csv"
    labels.write_text("start,stop,label\n0.0,1.0,Walk\n")
    for argv in (["inspect", path], ["import-labels", path, labels, "--session-end", 10]):
        code, err = _run_cli(capsys, *argv)
        assert code == 2 and len(err) == 1 and "not an NWB file" in err[0], (argv, err)
    assert digest(path) == before


def _ndx_pose_01_session(folder):
    """A real NWB session holding keypoints as ndx-pose 0.1.x wrote them (nodes and edges inside
    PoseEstimation) with a series whose data ndx-pose 0.2 cannot build (2-D pixels from 0.1's
    1-D confidence-only layout): pynwb raises a ConstructError with the whole builder tree."""
    path = new_session(folder, "old_pose.nwb")
    nodes = ["nose", "neck", "tail"]
    with h5py.File(path, "a") as f:
        behavior = f.create_group("processing/behavior")
        behavior.attrs.update(
            neurodata_type="ProcessingModule", namespace="core", object_id=str(uuid.uuid4()), description="behaviour"
        )
        pose = behavior.create_group("PoseEstimation")
        pose.attrs.update(
            neurodata_type="PoseEstimation", namespace="ndx-pose", object_id=str(uuid.uuid4()), description="keypoints"
        )
        pose.create_dataset("nodes", data=np.array(nodes, dtype=object), dtype=h5py.string_dtype())
        pose.create_dataset("edges", data=np.array([[0, 1], [1, 2]], dtype="uint8"))
        for node in nodes:
            series = pose.create_group(node)
            series.attrs.update(
                neurodata_type="PoseEstimationSeries",
                namespace="ndx-pose",
                object_id=str(uuid.uuid4()),
                description=node,
            )
            data = series.create_dataset("data", data=np.zeros(10))  # 1-D: refused by ndx-pose 0.2
            data.attrs.update(unit="pixels", conversion=1.0, resolution=-1.0)
            series.create_dataset("reference_frame", data="top left")
            series.create_dataset("timestamps", data=np.arange(10) / 30.0)
    return path


def test_nwb_that_pynwb_cannot_build(tmp_path, capsys):
    path = _ndx_pose_01_session(tmp_path)
    before = digest(path)
    with pytest.raises(InputError) as raised:
        with read_session(path):
            pass
    message = str(raised.value)
    assert message.startswith(f"{path}: cannot be read as NWB: processing/behavior/PoseEstimation/")
    assert "\n" not in message and len(message) < 400, message
    with pytest.raises(InputError, match="cannot be read as NWB"):
        _add_body_model(path)
    labels = tmp_path / "labels.csv"
    labels.write_text("start,stop,label\n0.0,1.0,Walk\n")
    code, err = _run_cli(capsys, "import-labels", path, labels, "--session-end", 10)
    assert code == 2 and len(err) == 1 and "cannot be read as NWB" in err[0] and len(err[0]) < 450, err
    assert digest(path) == before and _hidden(tmp_path) == []

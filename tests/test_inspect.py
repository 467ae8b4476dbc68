"""mimic-nwb inspect: a readable summary, validation and the ndx-mimic checks; non-zero on errors."""

import importlib.util
import shutil

import h5py
import numpy as np
from pynwb import NWBHDF5IO

import mimic_nwb
from mimic_nwb.cli import main
from mimic_nwb.inspection import InspectionResult, inspect_session
from ndx_mimic.testing.mock import mock_session


def test_inspect_summarises_and_exits_by_findings(tmp_path, capsys):
    path = tmp_path / "session.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(mock_session())
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "subject rat01: Rattus norvegicus" in out
    assert "processing/mimic/StacRegistration [StacRegistration]" in out
    assert "100 frames x 3 keypoints, 0.000-1.980 s @ 50 Hz" in out
    assert "pynwb validation: no errors" in out

    bad = tmp_path / "bad.nwb"
    shutil.copy(path, bad)
    with h5py.File(bad, "r+") as f:
        f["processing/mimic/BodyModel"].attrs["mjcf_sha256"] = "0" * 64
    assert main(["inspect", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "CRITICAL check_body_model_digest" in out
    assert "warning while reading: BodyModel 'BodyModel': mjcf_sha256" in out

    text = tmp_path / "notes.nwb"
    text.write_text("not an NWB file")
    assert main(["inspect", str(text)]) == 2
    assert "not an NWB file" in capsys.readouterr().err
    np.testing.assert_equal(text.read_text(), "not an NWB file")


def test_inspect_session_returns_a_typed_result_from_a_path_or_a_session(tmp_path):
    path = tmp_path / "session.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(mock_session())
    by_path = inspect_session(path, run_inspector=False)
    assert isinstance(by_path, InspectionResult) and by_path.ok and by_path.path == path
    assert "pynwb validation: no errors" in by_path.report and by_path.text == "\n".join(by_path.report)
    assert by_path.summary() == f"{path}: ok (pynwb validation: no errors)"
    with mimic_nwb.open(path) as session:
        assert inspect_session(session, run_inspector=False).report == by_path.report


def test_the_module_does_not_shadow_the_standard_library():
    # mimic_nwb.inspect was renamed: a module named inspect beside others hid the standard one
    assert importlib.util.find_spec("mimic_nwb.inspect") is None
    import inspect

    assert hasattr(inspect, "signature")

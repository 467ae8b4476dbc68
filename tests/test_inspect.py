"""mimic-nwb inspect: a readable summary, validation and the ndx-mimic checks; non-zero on errors."""

import shutil

import h5py
import numpy as np
from pynwb import NWBHDF5IO

from mimic_nwb.cli import main
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

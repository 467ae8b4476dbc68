"""The ndx-mimic nwbinspector checks fire on files whose data contradict their names or clocks."""

import shutil
import warnings

import h5py
import numpy as np
import pytest
from pynwb import NWBHDF5IO

nwbinspector = pytest.importorskip("nwbinspector")

import ndx_mimic.inspector_checks  # noqa: E402,F401
from ndx_mimic.testing.mock import mock_session  # noqa: E402

MIMIC = "processing/mimic"


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inspector") / "good.nwb"
    with NWBHDF5IO(path, "w") as io:
        io.write(mock_session())
    return path


def _replace_dataset(group, name, values):
    del group[name]
    group.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype())


def _shorter_error_names(f):
    _replace_dataset(f[f"{MIMIC}/StacRegistration/keypoint_errors"], "column_names", ["head", "knee"])


def _renamed_qpos_column(f):
    names = [n.decode() for n in f[f"{MIMIC}/StacRegistration/qpos/column_names"][:]]
    _replace_dataset(f[f"{MIMIC}/StacRegistration/qpos"], "column_names", ["hips"] + names[1:])


def _tampered_mjcf_digest(f):
    f[f"{MIMIC}/BodyModel"].attrs["mjcf_sha256"] = "0" * 64


def _shifted_layer(f):
    f[f"{MIMIC}/NetworkActivations_closed_loop/encoder_0/starting_time"][()] = 1.0


def _shifted_stac_qpos(f):
    f[f"{MIMIC}/StacRegistration/qpos/starting_time"][()] = 0.5


def _asymmetric_rdm(f):
    f[f"{MIMIC}/RepresentationalSimilarity/rdms"][0, 0, 1] += 1.0


@pytest.mark.parametrize(
    "tamper, check",
    [
        (_shorter_error_names, "check_named_columns_match_data"),
        (_renamed_qpos_column, "check_joint_state_columns_match_body_model"),
        (_tampered_mjcf_digest, "check_body_model_digest"),
        (_shifted_layer, "check_activations_aligned_with_rollout"),
        (_shifted_stac_qpos, "check_stac_registration_aligned_with_keypoints"),
        (_asymmetric_rdm, "check_rdms_symmetric"),
    ],
)
def test_check_fires_on_tampered_file(good_file, tmp_path, tamper, check):
    path = tmp_path / "bad.nwb"
    shutil.copy(good_file, path)
    with h5py.File(path, "r+") as f:
        tamper(f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the constructors warn (not raise) when reading such a file
        fired = {m.check_function_name for m in nwbinspector.inspect_nwbfile(nwbfile_path=str(path))}
    assert check in fired


def test_checks_are_silent_on_the_good_file(good_file):
    fired = {m.check_function_name for m in nwbinspector.inspect_nwbfile(nwbfile_path=str(good_file))}
    assert not {name for name in fired if name.startswith("check_") and name in dir(ndx_mimic.inspector_checks)}


def test_reading_a_tampered_file_warns_instead_of_failing(good_file, tmp_path):
    path = tmp_path / "bad.nwb"
    shutil.copy(good_file, path)
    with h5py.File(path, "r+") as f:
        _shorter_error_names(f)
    with pytest.warns(UserWarning, match="column_names has 2 names but data has 3 columns"):
        with NWBHDF5IO(path, "r") as io:
            io.read()

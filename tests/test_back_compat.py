"""Files written by earlier ndx-mimic versions still read, with their data intact."""

from pathlib import Path

import numpy as np
import pytest
from pynwb import NWBHDF5IO

import ndx_mimic  # noqa: F401
from ndx_mimic.testing.mock import LAYERS, TOY_KEYPOINTS, TOY_QPOS_NAMES, toy_qpos

FILES = sorted((Path(__file__).parent / "back_compat").glob("ndx-mimic_*.nwb"))


def test_there_is_a_file_of_this_version():
    assert any(path.name == f"ndx-mimic_{ndx_mimic.__version__}.nwb" for path in FILES)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_old_file_reads(path):
    with NWBHDF5IO(path, "r") as io:
        nwb = io.read()
        mimic = nwb.processing["mimic"]
        stac = mimic["StacRegistration"]
        np.testing.assert_array_equal(stac.qpos.data[:], toy_qpos())
        assert list(stac.qpos.column_names[:]) == TOY_QPOS_NAMES
        assert stac.keypoint_names == TOY_KEYPOINTS
        assert stac.model_keypoints_array().shape == (100, len(TOY_KEYPOINTS), 3)
        activations = mimic["NetworkActivations_closed_loop"]
        assert {
            name: (layer.layer_kind, layer.data.shape[1]) for name, layer in activations.layer_activations.items()
        } == LAYERS
        assert activations.rollout is mimic["SimulationRollout_closed_loop"]
        assert activations.latent_resampling.num_samples == 50
        assert mimic["ControllerNetwork"].weights["encoder.dense_0.kernel"].data.shape == (12, 16)
        assert mimic["EncodingResults"].to_dataframe()["cv_llr"].between(0, 0.2).all()
        assert list(mimic["RepresentationalSimilarity"].condition_labels[:]) == ["Walk", "Rear", "FaceGroom", "Idle"]

"""The controller's NWB adapter: a checkpoint stored in (and rebuilt from) a ControllerNetwork.

The ControllerNetwork holds every entry of the checkpoint file (architecture, training log,
normalisation, weights) and its sha256, so the checkpoint is rebuilt byte for byte from the
session alone.
"""

import io
import json

import numpy as np

import ndx_mimic

from ..errors import InputError
from .checkpoint import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, checkpoint_entries, checkpoint_from_bytes

__all__ = ["checkpoint_from_nwb", "checkpoint_to_nwb"]


def checkpoint_to_nwb(checkpoint, name="ControllerNetwork"):
    """A ControllerNetwork holding every entry of the checkpoint (it can be rebuilt from the file)."""
    entries = checkpoint_entries(checkpoint)
    scalars = [key for key, value in entries.items() if value.dtype.kind in "fiu" and value.ndim == 0]
    if scalars:  # NetworkParameter datasets have 1 to 4 dimensions
        raise ValueError(f"checkpoint: scalar entries {scalars} cannot be stored as network parameters")
    weights = ndx_mimic.NetworkWeights(
        network_parameters=[
            ndx_mimic.NetworkParameter(name=key.replace("/", "."), data=value)
            for key, value in entries.items()
            if value.dtype.kind in "fiu"
        ]
    )
    stats = checkpoint.config.observation.normalisation()
    config = checkpoint.config
    return ndx_mimic.ControllerNetwork(
        name=name,
        architecture=str(entries["config"][()]),
        decoder_kind=config.decoder,
        latent_size=config.latent_size,
        reference_window=config.observation.reference_window,
        observation_spec=json.dumps(config.to_json_dict().get("observation", {}), sort_keys=True),
        training=str(entries["training"][()]),
        checkpoint_sha256=checkpoint.sha256,
        observation_mean=np.concatenate([stats["reference_mean"], stats["proprioception_mean"]]).astype(np.float64),
        observation_std=np.concatenate([stats["reference_std"], stats["proprioception_std"]]).astype(np.float64),
        weights=weights,
    )


def checkpoint_from_nwb(controller, path="session"):
    """Rebuild the checkpoint stored in a ControllerNetwork; its sha256 must match."""
    if controller.weights is None:
        raise InputError(f"{path}: ControllerNetwork '{controller.name}' holds no weights; pass --checkpoint")
    entries = {
        "format": np.array(json.dumps({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}, sort_keys=True)),
        "config": np.array(controller.architecture),
        "training": np.array(controller.training),
        "sha256": np.array(controller.checkpoint_sha256),
    }
    for key, parameter in controller.weights.network_parameters.items():
        entries[key.replace(".", "/")] = np.asarray(parameter.data[:])
    buffer = io.BytesIO()
    np.savez(buffer, **entries)
    try:
        return checkpoint_from_bytes(buffer.getvalue(), f"{path}: ControllerNetwork '{controller.name}'")
    except ValueError as error:
        raise InputError(str(error)) from None

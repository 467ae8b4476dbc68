"""The MIMIC controller: a Flax NNX network (reference encoder -> variational latent -> LSTM or
MLP decoder -> actions), its observations, supervised training and checkpoints (pure cores).

- ``config``: ControllerConfig (every size) and ObservationSpec (inputs and normalisation);
- ``observations``: reference features and proprioception from MuJoCo data;
- ``network``: the NNX module and the pure forward function;
- ``training``: supervised training on inverse-dynamics controls (optax);
- ``checkpoint``: the single-file format (config, statistics, params, metadata, sha256);
- ``policy``: a checkpoint ready to act step by step (jitted).
"""

from .checkpoint import (
    ControllerCheckpoint,
    check_checkpoint_compatible,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
    load_checkpoint,
    save_checkpoint,
)
from .config import LAYER_KINDS, ControllerConfig, LayerSpec, ObservationSpec
from .network import (
    MimicNetwork,
    apply_network,
    initial_carry,
    kl_to_prior,
    network_from_params,
    network_params,
    split_network,
)
from .observations import DEFAULT_APPENDAGES, ObservationLayout, ReferenceTrajectory
from .policy import ControllerPolicy
from .training import (
    SupervisedTrainer,
    TrainingConfig,
    TrainingResult,
    TrainingSet,
    build_training_set,
    train_controller,
)

__all__ = [
    "DEFAULT_APPENDAGES",
    "LAYER_KINDS",
    "ControllerCheckpoint",
    "ControllerConfig",
    "ControllerPolicy",
    "LayerSpec",
    "MimicNetwork",
    "ObservationLayout",
    "ObservationSpec",
    "ReferenceTrajectory",
    "SupervisedTrainer",
    "TrainingConfig",
    "TrainingResult",
    "TrainingSet",
    "apply_network",
    "build_training_set",
    "check_checkpoint_compatible",
    "checkpoint_from_bytes",
    "checkpoint_to_bytes",
    "initial_carry",
    "kl_to_prior",
    "load_checkpoint",
    "network_from_params",
    "network_params",
    "save_checkpoint",
    "split_network",
    "train_controller",
]

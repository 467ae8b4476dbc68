"""Simulation of the body model against a reference (pure cores; no files).

- ``inverse_dynamics``: the forces, actuator activations and controls that replay registered
  poses, and the residual the actuators cannot supply (mode ``inverse_dynamics``);
- ``rollout``: closed-loop and open-loop imitation by the controller, every layer recorded;
- ``physics``: the private simulation model, its clock and actuator parameters.
"""

from .inverse_dynamics import (
    InverseDynamicsConfig,
    InverseDynamicsReport,
    InverseDynamicsResult,
    PhysicsSteps,
    replay_inverse_dynamics,
    run_inverse_dynamics,
)
from .rollout import (
    REWARD_TERMS,
    ROLLOUT_MODES,
    Episodes,
    LatentResampling,
    RewardConfig,
    RolloutConfig,
    RolloutResult,
    run_rollout,
)

__all__ = [
    "REWARD_TERMS",
    "ROLLOUT_MODES",
    "Episodes",
    "InverseDynamicsConfig",
    "InverseDynamicsReport",
    "InverseDynamicsResult",
    "LatentResampling",
    "PhysicsSteps",
    "RewardConfig",
    "RolloutConfig",
    "RolloutResult",
    "replay_inverse_dynamics",
    "run_inverse_dynamics",
    "run_rollout",
]

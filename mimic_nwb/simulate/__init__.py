"""Simulation of the body model against a reference (pure cores; no files).

- ``inverse_dynamics``: the forces, actuator activations and controls that replay registered
  poses, and the residual the actuators cannot supply (mode ``inverse_dynamics``);
- ``rollout``: closed-loop and open-loop imitation by the controller, every layer recorded, and
  closed-loop tracking by the expert;
- ``expert``: the tracking expert (inverse dynamics + PD through the actuators, optional
  predictive sampling), the teacher the controller is distilled from;
- ``tracking``: tracking measured as the paper does (total and pose keypoint error), termination,
  the survival curve, dm_control's and track-mjx's metrics;
- ``physics``: the private simulation model, its clock and actuator parameters.
"""

from .expert import ExpertConfig, TrackingExpert
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
from .tracking import (
    TRACKING_COLUMNS,
    TerminationConfig,
    TrackingMeter,
    episode_length_quantiles,
    procrustes_error,
    survival_curve,
    tracking_errors,
)

__all__ = [
    "REWARD_TERMS",
    "ROLLOUT_MODES",
    "TRACKING_COLUMNS",
    "Episodes",
    "ExpertConfig",
    "InverseDynamicsConfig",
    "InverseDynamicsReport",
    "InverseDynamicsResult",
    "LatentResampling",
    "PhysicsSteps",
    "RewardConfig",
    "RolloutConfig",
    "RolloutResult",
    "TerminationConfig",
    "TrackingExpert",
    "TrackingMeter",
    "episode_length_quantiles",
    "procrustes_error",
    "replay_inverse_dynamics",
    "run_inverse_dynamics",
    "run_rollout",
    "survival_curve",
    "tracking_errors",
]

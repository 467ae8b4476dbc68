"""Simulation of the body model against a reference (pure cores; no files).

- ``inverse_dynamics``: the forces, actuator activations and controls that replay registered
  poses, and the residual the actuators cannot supply (mode ``inverse_dynamics``);
- ``rollout``: closed-loop and open-loop imitation by the controller, every layer recorded, and
  closed-loop tracking by the expert;
- ``expert``: the tracking expert (inverse dynamics + PD through the actuators, optional
  predictive sampling), the teacher the controller is distilled from;
- ``tracking``: tracking measured as the paper does (total and pose keypoint error), termination,
  the survival curve, dm_control's and track-mjx's metrics;
- ``physics``: the private simulation model, its clock and actuator parameters;
- ``nwb``: the stages on a session: ``nwb.inverse_dynamics(session, InverseDynamicsConfig(...))``
  -> ``InverseDynamicsStageResult`` and ``simulate(session, RolloutConfig(...))`` ->
  ``SimulationStageResult``. ``simulate`` and the result types are re-exported here; the
  inverse-dynamics stage is not (it would hide the core module ``simulate.inverse_dynamics``:
  ``import mimic_nwb.simulate.inverse_dynamics`` would give the function).
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
from .nwb import InverseDynamicsStageResult, SimulationStageResult, simulate
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
    "InverseDynamicsStageResult",
    "LatentResampling",
    "PhysicsSteps",
    "RewardConfig",
    "RolloutConfig",
    "RolloutResult",
    "SimulationStageResult",
    "TerminationConfig",
    "TrackingExpert",
    "TrackingMeter",
    "episode_length_quantiles",
    "procrustes_error",
    "replay_inverse_dynamics",
    "run_inverse_dynamics",
    "run_rollout",
    "simulate",
    "survival_curve",
    "tracking_errors",
]

"""STAC: registration of a MuJoCo body model to 3D keypoints.

``run_stac(keypoints, body_model, config)`` (the pure core: arrays in, arrays out) returns a
``StacResult``; ``stac(session, config)`` (``nwb``) runs it on a session's keypoints and appends
the BodyModel and StacRegistration. See ``core`` for the algorithm, ``fitter`` for the
per-frame solver (keypoint, floor and self-contact terms), ``arena`` for the floor / up
direction, ``geometry`` for the geoms against the floor and each other, and ``unobserved`` for
the joints that no keypoint observes.
"""

from .arena import Floor
from .core import (
    MissingKeypointWarning,
    StacConfig,
    StacResult,
    default_n_workers,
    model_keypoint_positions,
    run_stac,
    widest_series,
)
from .nwb import StacStageResult, stac

__all__ = [
    "Floor",
    "MissingKeypointWarning",
    "StacConfig",
    "StacResult",
    "StacStageResult",
    "default_n_workers",
    "model_keypoint_positions",
    "run_stac",
    "stac",
    "widest_series",
]

"""STAC: registration of a MuJoCo body model to 3D keypoints (pure core; no files).

``run_stac(keypoints, body_model, config)`` returns a ``StacResult``; see ``core`` for the
algorithm, ``fitter`` for the per-frame solver (keypoint, floor and self-contact terms),
``arena`` for the floor / up direction, ``geometry`` for the geoms against the floor and each
other, and ``unobserved`` for the joints that no keypoint observes.
"""

from .arena import Floor
from .core import (
    MissingKeypointWarning,
    StacConfig,
    StacResult,
    default_n_workers,
    model_keypoint_positions,
    run_stac,
)

__all__ = [
    "Floor",
    "MissingKeypointWarning",
    "StacConfig",
    "StacResult",
    "default_n_workers",
    "model_keypoint_positions",
    "run_stac",
]

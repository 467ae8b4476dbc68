"""A registration made by another tool (stac-mjx, the MIMIC per-session files), ready to write.

:class:`ImportedRegistration` has the StacResult fields that :func:`mimic_nwb.writers.registration_to_nwb`
reads; :func:`registration_body_model` builds the body model the registration's qpos belongs to;
:func:`add_keypoints` adds the keypoints an imported registration links when the session has none.
"""

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..body_model import build_body_model
from ..errors import InputError
from .keypoints import BEHAVIOR_MODULE, behavior_skeleton, keypoints_to_nwb

KEYPOINTS_NAME = "PoseEstimation"  # where an imported registration's keypoints are (processing/behavior)


@dataclass(frozen=True, eq=False)
class ImportedRegistration:
    """A registration computed by another tool, with the StacResult fields the writer needs.

    qpos (T, nq) (NaN rows: frames not fitted); model_keypoints and keypoints (T, K, 3) metres in
    the keypoints' frame; offsets and initial_offsets (K, 3) metres in the body frames of the
    scaled model; names and bodies of the K keypoints; world_from_input (4, 4) the transform from
    the keypoints' frame to the model world (identity: the tools fit in the keypoints' frame).
    """

    qpos: np.ndarray
    model_keypoints: np.ndarray
    keypoints: np.ndarray
    offsets: np.ndarray
    initial_offsets: np.ndarray
    keypoint_names: tuple
    keypoint_bodies: tuple
    world_from_input: np.ndarray = field(default_factory=lambda: np.eye(4))

    @cached_property
    def valid(self):
        """(T,) frames with a fitted pose."""
        return np.isfinite(self.qpos).all(axis=1)

    @cached_property
    def errors(self):
        """(T, K) distance between model and observed keypoint, metres; NaN where missing or not fitted."""
        errors = np.linalg.norm(self.model_keypoints - self.keypoints, axis=2)
        errors[~self.valid] = np.nan
        return errors

    @property
    def mean_error(self):
        """Mean of :attr:`errors` over the observed keypoints of fitted frames, metres (NaN when none)."""
        errors = self.errors[np.isfinite(self.errors)]
        return float(errors.mean()) if errors.size else float("nan")


def registration_body_model(site_map, keypoint_names, qpos, source, mjcf=None, scale=None):
    """The body model of a registration (keypoint sites from ``site_map``), checked to have qpos's nq columns."""
    try:
        model = build_body_model(site_map, keypoint_names, mjcf=mjcf, scale=scale)
    except (ValueError, FileNotFoundError) as error:
        raise InputError(f"{source}: body model: {error}") from None
    if qpos.shape[1] != model.nq:
        raise InputError(
            f"{source}: qpos has {qpos.shape[1]} columns but the body model ({model.model_name}, "
            f"{Path(model.source).name}) has nq {model.nq}"
        )
    return model


def add_keypoints(s, keypoints, name=KEYPOINTS_NAME):
    """Add Skeleton (if new) + PoseEstimation of ``keypoints`` to ``processing/behavior`` of an append."""
    s.check_new(name, BEHAVIOR_MODULE)
    module, skeleton = behavior_skeleton(s, keypoints.skeleton, s.path)
    pose = keypoints_to_nwb(keypoints, skeleton, name=name)
    module.add(pose)
    return pose


def body_model_name(name, default="StacRegistration"):
    """The BodyModel of a registration named ``name``: ``BodyModel`` for the default name, else ``BodyModel_<name>``."""
    return "BodyModel" if name == default else f"BodyModel_{name}"

"""nwbinspector checks for the ndx-mimic types.

Importing this module registers them with nwbinspector (which must be installed). Load them with
``nwbinspector --modules ndx_mimic.inspector_checks FILE``, or in Python by importing this module
before calling ``nwbinspector.inspect_nwbfile``; ``dandi validate`` does not load extension checks,
so run nwbinspector with ``--modules`` too (``mimic-nwb inspect`` does both).
"""

import hashlib

import numpy as np
from nwbinspector import Importance, InspectorMessage, register_check

from .mimic import (
    LAYER_KINDS,
    ROLLOUT_MODES,
    BodyModel,
    JointStateSeries,
    LayerActivations,
    NamedColumnSeries,
    NetworkActivations,
    RepresentationalSimilarity,
    SimulationRollout,
    StacRegistration,
    _names,
    column_problem,
)


def _same_clock(a, b):
    """Whether two series have the same number of samples at the same times (within 1 µs)."""
    times_a, times_b = a.get_timestamps(), b.get_timestamps()
    return len(times_a) == len(times_b) and np.allclose(times_a, times_b, rtol=0, atol=1e-6)


@register_check(importance=Importance.CRITICAL, neurodata_type=NamedColumnSeries)
def check_named_columns_match_data(series: NamedColumnSeries):
    """Every column of data has a name, and a unit when the series' unit is 'mixed'."""
    problem = column_problem(series)
    if problem is not None:
        return InspectorMessage(message=f"{problem}.")


@register_check(importance=Importance.CRITICAL, neurodata_type=JointStateSeries)
def check_joint_state_columns_match_body_model(series: JointStateSeries):
    """Column names equal the linked body model's qpos, qvel or actuator names."""
    model = series.body_model
    columns = _names(series.column_names)
    if columns not in (model.names("qpos"), model.names("qvel"), model.names("actuator")):
        return InspectorMessage(
            message=(
                f"its {len(columns)} column names are not the qpos, qvel or actuator names of body model "
                f"'{model.name}'."
            )
        )
    return None


@register_check(importance=Importance.CRITICAL, neurodata_type=BodyModel)
def check_body_model_digest(model: BodyModel):
    """The stored sha256 matches the stored MJCF."""
    digest = hashlib.sha256(model.mjcf.encode("utf-8")).hexdigest()
    if digest != model.mjcf_sha256:
        return InspectorMessage(message=f"mjcf_sha256 does not match the MJCF text (its sha256 is {digest}).")
    return None


@register_check(importance=Importance.CRITICAL, neurodata_type=StacRegistration)
def check_stac_registration_aligned_with_keypoints(registration: StacRegistration):
    """The registration has one frame per source keypoint frame, at the same times."""
    source = next(iter(registration.pose_estimation.pose_estimation_series.values()), None)
    if source is None:
        return InspectorMessage(message="its source PoseEstimation has no series.")
    messages = [
        InspectorMessage(message=f"{field} is not on the clock of the source keypoints '{source.name}'.")
        for field in ("qpos", "keypoint_errors")
        if not _same_clock(getattr(registration, field), source)
    ]
    messages += [
        InspectorMessage(message=f"model keypoint '{name}' is not on the clock of the source keypoints.")
        for name, series in registration.model_keypoints.pose_estimation_series.items()
        if not _same_clock(series, source)
    ]
    return messages or None


@register_check(importance=Importance.CRITICAL, neurodata_type=SimulationRollout)
def check_rollout_series_aligned(rollout: SimulationRollout):
    """A rollout has a known mode and all its series share one clock."""
    if rollout.mode not in ROLLOUT_MODES:
        return InspectorMessage(message=f"mode {rollout.mode!r} is not one of {ROLLOUT_MODES}.")
    series = [s for name in ("qpos", "qvel", "actuator_controls", "reward") if (s := getattr(rollout, name))]
    misaligned = [s.name for s in series[1:] if not _same_clock(series[0], s)]
    if misaligned:
        return InspectorMessage(message=f"series {misaligned} are not on the clock of '{series[0].name}'.")
    return None


@register_check(importance=Importance.CRITICAL, neurodata_type=NetworkActivations)
def check_activations_aligned_with_rollout(activations: NetworkActivations):
    """Every layer has one row per rollout step, at the rollout's times."""
    rollout = activations.rollout
    clock = next((s for name in ("qpos", "actuator_controls", "reward") if (s := getattr(rollout, name))), None)
    if clock is None:
        return None
    misaligned = [name for name, layer in activations.layer_activations.items() if not _same_clock(layer, clock)]
    if misaligned:
        return InspectorMessage(message=f"layers {misaligned} are not aligned in time with rollout '{rollout.name}'.")
    return None


@register_check(importance=Importance.BEST_PRACTICE_VIOLATION, neurodata_type=LayerActivations)
def check_layer_kind(layer: LayerActivations):
    """The layer kind is one of the documented kinds."""
    if layer.layer_kind not in LAYER_KINDS:
        return InspectorMessage(message=f"layer_kind {layer.layer_kind!r} is not one of {LAYER_KINDS}.")
    return None


@register_check(importance=Importance.BEST_PRACTICE_VIOLATION, neurodata_type=RepresentationalSimilarity)
def check_rdms_symmetric(similarity: RepresentationalSimilarity):
    """RDMs are symmetric with a zero diagonal."""
    rdms = np.asarray(similarity.rdms[:])
    names = _names(similarity.rdm_names)
    bad = [
        names[i]
        for i, rdm in enumerate(rdms)
        if not (np.allclose(rdm, rdm.T, equal_nan=True) and np.allclose(np.diag(rdm), 0, equal_nan=True))
    ]
    if bad:
        return InspectorMessage(message=f"RDMs {bad} are not symmetric with a zero diagonal.")
    return None

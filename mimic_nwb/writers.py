"""NWB writers shared by the stages that write body models and registrations.

:func:`body_model_to_nwb` is the ndx-mimic BodyModel of a built MuJoCo body model;
:func:`registration_to_nwb` the StacRegistration of a registration, whether STAC computed it
(:mod:`mimic_nwb.stac.nwb`) or another tool did (the stac-mjx and MIMIC importers). Both are pure
writers (objects in, NWB containers out, no file access): they sit below the stage adapters so
that the adapters share them without importing each other.
"""

import numpy as np
from ndx_pose import PoseEstimation, PoseEstimationSeries
from pynwb import TimeSeries

import ndx_mimic

from .body_model import BodyModel as MujocoBodyModel
from .storage import compressed


def body_model_to_nwb(model: MujocoBodyModel, name="BodyModel", description=None):
    """The ndx-mimic BodyModel of a built MuJoCo body model (its exact MJCF, names and digest)."""
    return ndx_mimic.BodyModel(
        name=name,
        mjcf=model.xml,
        mjcf_sha256=model.xml_sha256,
        model_name=model.model_name,
        scale=model.scale,
        actuator_kind=model.actuator_kind,
        timestep=model.timestep,
        mujoco_version=model.mujoco_version,
        qpos_names=list(model.qpos_names),
        qvel_names=list(model.qvel_names),
        actuator_names=list(model.actuator_names),
        body_names=list(model.body_names),
        source=description or str(model.source),
        # The files the MJCF reads (meshes, textures...), so that it compiles from the file alone.
        model_assets=[
            ndx_mimic.ModelAsset(name=n, data=compressed(np.frombuffer(b, np.uint8))) for n, b in model.assets.items()
        ],
    )


def registration_to_nwb(
    result, model, body_model, source_pose, timing, name="StacRegistration", source_software="mimic_nwb.stac"
):
    """The StacRegistration of a StacResult of ``model``; series on the source keypoints' clock.

    ``body_model`` is the ndx-mimic BodyModel of ``model`` already in the file; ``timing`` is
    ``dict(rate=..., starting_time=...)`` or None for the source's irregular timestamps.
    ``result`` may also be a registration made by another tool (the stac-mjx and MIMIC importers): any object
    with the StacResult fields qpos, errors, model_keypoints, world_from_input, keypoint_names,
    keypoint_bodies, offsets, initial_offsets, valid and mean_error; ``min_keypoints`` is written
    only when it has a StacResult's ``config``, the penetration series only when it has
    ``penetration`` and ``penetration_bodies``. ``source_software`` names who computed the model
    keypoints.
    """
    source_series = list(source_pose.pose_estimation_series.values())
    # Irregular clock: link to the source keypoints' timestamps instead of copying them.
    clock = timing or dict(timestamps=source_series[0])
    qpos = ndx_mimic.JointStateSeries(
        name="qpos",
        data=compressed(result.qpos),
        unit="mixed",
        column_names=list(body_model.qpos_names[:]),
        column_units=list(model.qpos_units),
        body_model=body_model,
        description="STAC-fitted generalised positions in the model frame; NaN rows for frames not fitted.",
        **clock,
    )
    errors = ndx_mimic.NamedColumnSeries(
        name="keypoint_errors",
        data=compressed(result.errors),
        unit="meters",
        column_names=list(result.keypoint_names),
        description="Distance between each observed keypoint and its model site; NaN where missing or not fitted.",
        **clock,
    )
    # Model keypoints back in the source keypoints' frame, so they overlay the data.
    input_from_world = np.linalg.inv(result.world_from_input)
    model_in_input = result.model_keypoints @ input_from_world[:3, :3].T + input_from_world[:3, 3]
    reference_frame = source_series[0].reference_frame
    model_keypoints = PoseEstimation(
        name="model_keypoints",
        pose_estimation_series=[
            PoseEstimationSeries(
                name=keypoint,
                description=f"position of the model's {keypoint} site (STAC)",
                data=compressed(model_in_input[:, k]),
                unit="meters",
                reference_frame=reference_frame,
                **clock,
            )
            for k, keypoint in enumerate(result.keypoint_names)
        ],
        description="Model keypoint sites of the STAC registration, in the frame of the source keypoints.",
        source_software=source_software,
        skeleton=source_pose.skeleton,
    )
    sites = ndx_mimic.KeypointSites(name="keypoint_sites", description="Keypoint sites of the registered model.")
    regularized = set(model.site_map.regularized_keypoints)
    excluded = getattr(result, "keypoint_excluded", None)
    for k, keypoint in enumerate(result.keypoint_names):
        flags = {} if excluded is None else {"excluded": bool(excluded[k])}
        sites.add_row(
            keypoint=keypoint,
            body=result.keypoint_bodies[k],
            offset=result.offsets[k],
            initial_offset=result.initial_offsets[k],
            regularized=keypoint in regularized,
            **flags,
        )
    extra = {}
    if getattr(result, "penetration", None) is not None:
        extra["penetration"] = ndx_mimic.NamedColumnSeries(
            name="penetration",
            data=compressed(result.penetration),
            unit="meters",
            column_names=list(result.penetration_bodies),
            description=(
                "Depth below the floor of each body's deepest geom (0 when clear); NaN for frames not fitted."
            ),
            **clock,
        )
        extra["max_penetration"] = float(np.nanmax(result.penetration, initial=0.0))
    if getattr(result, "self_penetration", None) is not None:
        extra["self_contact_depth"] = TimeSeries(
            name="self_contact_depth",
            data=compressed(result.self_penetration),
            unit="meters",
            description="Depth of the deepest contact between two of the model's own geoms; NaN for frames not fitted.",
            **clock,
        )
    return ndx_mimic.StacRegistration(
        name=name,
        qpos=qpos,
        keypoint_errors=errors,
        model_keypoints=model_keypoints,
        keypoint_sites=sites,
        frame_valid=result.valid,
        world_to_model=result.world_from_input,
        pose_estimation=source_pose,
        body_model=body_model,
        mean_error=result.mean_error,
        min_keypoints=config.min_keypoints if (config := getattr(result, "config", None)) is not None else None,
        **extra,
    )

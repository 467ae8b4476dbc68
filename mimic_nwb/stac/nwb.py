"""STAC on a session: read the ndx-pose keypoints, register the body model, append the result.

``stac_session(path)`` appends a BodyModel (the scaled MJCF with its keypoint sites at the fitted
offsets) and a StacRegistration on the keypoints' clock; ``body_model_to_nwb`` and
``read_keypoints`` are shared with the stages after STAC.
"""

from pathlib import Path

import numpy as np

from ..body_model import build_body_model
from ..data import BUILTIN_SITE_MAPS, data_path
from ..errors import InputError
from ..session import KEYPOINTS_MODULE as BEHAVIOR_MODULE
from ..session import append, read_session
from ..writers import body_model_to_nwb, registration_to_nwb
from .core import PENETRATION_TOLERANCE, StacConfig, run_stac


def read_keypoints(nwbfile, path, name="PoseEstimation"):
    """The session's keypoints: (PoseEstimation, positions (T, K, 3) m, keypoint names, first series)."""
    from ndx_mimic.mimic import pose_as_array

    module = nwbfile.processing.get(BEHAVIOR_MODULE)
    if module is None or name not in module.data_interfaces:
        raise InputError(
            f"{path}: no keypoints at processing/{BEHAVIOR_MODULE}/{name}; import them with mimic-nwb import-keypoints"
        )
    pose = module[name]
    series = list(pose.pose_estimation_series.values())
    if not series:
        raise InputError(f"{path}: processing/{BEHAVIOR_MODULE}/{name} has no keypoint series")
    names = [str(n) for n in pose.skeleton.nodes[:]] if pose.skeleton is not None else list(pose.pose_estimation_series)
    positions = pose_as_array(pose, names)
    if positions.shape[2] != 3:
        raise InputError(f"{path}: keypoints are {positions.shape[2]}-D; STAC needs 3D keypoints")
    units = {s.unit for s in series}
    if units != {"meters"}:
        raise InputError(f"{path}: keypoints are in {sorted(units)}; STAC needs meters (re-import them)")
    positions = positions * series[0].conversion
    return pose, positions, names, series[0]


def _site_map_for(skeleton_name, site_map, keypoint_names=None):
    """The site map given, else the built-in one of the skeleton's name, else the built-in one whose
    keypoints are exactly ``keypoint_names`` (any order): a skeleton without a known name."""
    if site_map is not None:
        return site_map
    if skeleton_name in BUILTIN_SITE_MAPS:
        return data_path(BUILTIN_SITE_MAPS[skeleton_name])
    if keypoint_names is not None:
        from ..body_model import load_site_map

        for file_name in BUILTIN_SITE_MAPS.values():
            if sorted(load_site_map(data_path(file_name)).keypoint_names) == sorted(keypoint_names):
                return data_path(file_name)
    raise InputError(
        f"skeleton {skeleton_name!r}: no built-in site map; pass one (--site-map SITES.yaml) "
        f"(built in: {', '.join(BUILTIN_SITE_MAPS)})"
    )


def _offsets_from(path, keypoint_names):
    """Fitted offsets of another session's StacRegistration, in ``keypoint_names`` order."""
    path = Path(path)
    with read_session(path) as other:
        mimic = other.processing.get("mimic")
        registrations = [
            o for o in (mimic.data_interfaces.values() if mimic else []) if type(o).__name__ == "StacRegistration"
        ]
        if not registrations:
            raise InputError(f"{path}: no StacRegistration to take offsets from")
        sites = registrations[0].keypoint_sites
        names = [str(n) for n in sites["keypoint"].data[:]]
        offsets = np.asarray(sites["offset"].data[:])
    missing = [k for k in keypoint_names if k not in names]
    if missing:
        raise InputError(f"{path}: its registration has no offsets for keypoints {missing}")
    return offsets[[names.index(k) for k in keypoint_names]]


def _progress_bar(enabled):
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bars = {}

    def progress(stage, done, total):
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=f"STAC {stage}", unit="frame", leave=False)
        bar.update(done - bar.n)

    def close():
        for bar in bars.values():
            bar.close()

    return progress, close


def stac_session(
    session,
    site_map=None,
    mjcf=None,
    scale=None,
    config: StacConfig | None = None,
    offsets_from=None,
    keypoints_name="PoseEstimation",
    name="StacRegistration",
    body_model_name="BodyModel",
    replace=False,
    progress=True,
):
    """Register the body model to the session's keypoints and append BodyModel + StacRegistration.

    Returns (summary line, StacResult).
    """
    config = config or StacConfig()
    session = Path(session)
    with read_session(session) as nwbfile:
        mimic = nwbfile.processing.get("mimic")
        existing = set(mimic.data_interfaces) if mimic else set()
        if not replace and name in existing:
            raise InputError(
                f"{session}: processing/mimic/{name} already exists; pass replace (--replace) to replace it"
            )
        pose, positions, keypoint_names, first_series = read_keypoints(nwbfile, session, keypoints_name)
        skeleton_name = pose.skeleton.name if pose.skeleton is not None else keypoints_name
        timing = (
            dict(rate=first_series.rate, starting_time=first_series.starting_time)
            if first_series.rate is not None
            else None
        )
    site_map = _site_map_for(skeleton_name, site_map)
    try:
        model = build_body_model(site_map, keypoint_names, mjcf=mjcf, scale=scale)
    except (ValueError, FileNotFoundError) as error:
        raise InputError(f"body model: {error}") from None
    offsets = _offsets_from(offsets_from, keypoint_names) if offsets_from is not None else None
    report, close = _progress_bar(progress)
    try:
        result = run_stac(positions, model, config, keypoint_names=keypoint_names, offsets=offsets, progress=report)
    except ValueError as error:
        raise InputError(f"{session}: {error}") from None
    finally:
        close()
    fitted = model.with_site_offsets(result.offsets)
    parameters = {
        **config.to_dict(),
        "site_map": str(site_map),
        "mjcf": str(model.source),
        "scale": model.scale,
        "offsets_from": str(offsets_from) if offsets_from else None,
        "keypoints": f"processing/{BEHAVIOR_MODULE}/{keypoints_name}",
    }
    replace_names = [name, body_model_name] if replace else ()
    with append(session, replace=replace_names, replace_dependents=False) as s:
        s.check_new(body_model_name)
        source_pose = s.nwbfile.processing[BEHAVIOR_MODULE][keypoints_name]
        body_model = s.add(
            body_model_to_nwb(fitted, body_model_name, f"{model.source} (keypoint sites at the STAC-fitted offsets)"),
            parameters={"scale": model.scale, "actuators": model.actuator_kind, "mjcf": str(model.source)},
        )
        registration = registration_to_nwb(result, fitted, body_model, source_pose, timing, name)
        s.add(registration, parameters=parameters)
    depth, body = result.max_penetration
    summary = (
        f"{session}: processing/mimic/{name}: {int(result.valid.sum())} of {len(result.valid)} frames fitted, "
        f"mean keypoint error {1000 * result.mean_error:.2f} mm, "
        f"deepest below the floor {1000 * depth:.2f} mm ({body or 'no body'}), "
        f"{int(result.frames_penetrating.sum())} frames with a geom > {1000 * PENETRATION_TOLERANCE:g} mm deep, "
        f"deepest self-contact {1000 * np.nanmax(result.self_penetration, initial=0.0):.2f} mm, "
        f"{result.timings['total']:.1f} s ({len(result.valid) / result.timings['pose_fitting']:.0f} frames/s pose fitting)"
    )
    return summary, result

"""STAC on a session: read the ndx-pose keypoints, register the body model, append the result.

``stac(session)`` appends a BodyModel (the scaled MJCF with its keypoint sites at the fitted
offsets) and a StacRegistration on the keypoints' clock, and returns a :class:`StacStageResult`.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ndx_mimic import StacRegistration

from ..body_model import build_body_model, load_site_map
from ..data import BUILTIN_SITE_MAPS, data_path
from ..errors import InputError
from ..importers.keypoint_data import check_clip_length, stored_keypoints
from ..importers.registration import body_model_name
from ..session import KEYPOINTS_MODULE, RESULTS_MODULE, find_results, opened
from ..writers import body_model_to_nwb, registration_to_nwb
from .core import PENETRATION_TOLERANCE, StacConfig, StacResult, run_stac, widest_series


@dataclass(frozen=True, eq=False)
class StacStageResult:
    """What :func:`stac` appended and computed.

    ``path`` is the session file; ``name`` the registration's path
    (``processing/mimic/<name>``), ``body_model`` the path of its BodyModel, ``keypoints`` the
    path of the PoseEstimation it registered; ``site_map`` the site map YAML used; ``result``
    the core's :class:`~mimic_nwb.stac.core.StacResult` (poses (T, nq), offsets (K, 3) m,
    keypoint errors (T, K) m, penetration (T, bodies) m, ... : see there).
    """

    path: Path
    name: str
    body_model: str
    keypoints: str
    site_map: Path
    result: StacResult

    @property
    def frames_fitted(self) -> int:
        """Frames with enough observed keypoints to be fitted."""
        return int(self.result.valid.sum())

    @property
    def mean_error(self) -> float:
        """Mean keypoint error over the fitted frames, metres (see ``StacResult.mean_error``)."""
        return self.result.mean_error

    def summary(self) -> str:
        """One line: frames fitted, mean keypoint error, floor and self-contact depths, speed."""
        result = self.result
        depth, body = result.max_penetration
        fitting = max(result.timings.get("pose_fitting", 0.0), 1e-9)
        return (
            f"{self.path}: {self.name}: {self.frames_fitted} of {len(result.valid)} frames fitted, "
            f"mean keypoint error {1000 * result.mean_error:.2f} mm, "
            f"deepest below the floor {1000 * depth:.2f} mm ({body or 'no body'}), "
            f"{int(result.frames_penetrating.sum())} frames with a geom > {1000 * PENETRATION_TOLERANCE:g} mm deep, "
            f"deepest self-contact {1000 * np.nanmax(result.self_penetration, initial=0.0):.2f} mm, "
            f"{result.timings['total']:.1f} s ({len(result.valid) / fitting:.0f} frames/s pose fitting)"
        )


def _site_map_for(skeleton_name, site_map, keypoint_names=None):
    """The site map given, else the built-in one of the skeleton's name, else the built-in one whose
    keypoints are exactly ``keypoint_names`` (any order): a skeleton without a known name."""
    if site_map is not None:
        return site_map
    if skeleton_name in BUILTIN_SITE_MAPS:
        return data_path(BUILTIN_SITE_MAPS[skeleton_name])
    if keypoint_names is not None:
        for file_name in BUILTIN_SITE_MAPS.values():
            if sorted(load_site_map(data_path(file_name)).keypoint_names) == sorted(keypoint_names):
                return data_path(file_name)
    raise InputError(
        f"skeleton {skeleton_name!r}: no built-in site map; pass one (--site-map SITES.yaml) "
        f"(built in: {', '.join(BUILTIN_SITE_MAPS)})"
    )


def _offsets_from(source, keypoint_names):
    """Fitted offsets (K, 3) m of the StacRegistration of another session (a Session or a path),
    in ``keypoint_names`` order, and the registration's path there (for the parameters)."""
    with opened(source, "r") as other:
        registration = other.result(StacRegistration)
        sites = registration.keypoint_sites
        names = [str(n) for n in sites["keypoint"].data[:]]
        offsets = np.asarray(sites["offset"].data[:], dtype=float)
        where = f"{other.path}: processing/{RESULTS_MODULE}/{registration.name}"
    missing = [k for k in keypoint_names if k not in names]
    if missing:
        raise InputError(f"{where}: no offsets for keypoints {missing}")
    return offsets[[names.index(k) for k in keypoint_names]], where


def _keypoints(session, name):
    """The session's PoseEstimation (the only one, or the one named), with an import hint when none."""
    if not find_results(session.nwbfile, "PoseEstimation", KEYPOINTS_MODULE):
        raise InputError(
            f"{session.path}: no keypoints (PoseEstimation) in processing/{KEYPOINTS_MODULE}; "
            "import them with mimic-nwb import-keypoints"
        )
    return session.keypoints(name)


def _check_free(session, names):
    """Refuse before the fit (minutes) what the append would refuse after it: a name taken."""
    module = session.nwbfile.processing.get(RESULTS_MODULE)
    for name in names:
        if module is not None and name in module.data_interfaces:
            raise InputError(
                f"{session.path}: processing/{RESULTS_MODULE}/{name} already exists; pass replace (--replace) to replace it"
            )


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


def stac(
    session,
    config: StacConfig | None = None,
    *,
    keypoints=None,
    site_map=None,
    mjcf=None,
    scale=None,
    offsets_from=None,
    name="StacRegistration",
    replace=False,
    progress=False,
) -> StacStageResult:
    """Register the body model to the session's 3D keypoints; append BodyModel + StacRegistration.

    ``session`` is a :class:`~mimic_nwb.session.Session` opened with mode ``"a"`` or a session
    path; ``config`` the STAC parameters (:class:`~mimic_nwb.stac.core.StacConfig`, default
    ``StacConfig()``). ``keypoints`` names the PoseEstimation in ``processing/behavior`` (default:
    the only one; several is an error naming them). The body model: ``site_map`` (YAML; default
    the built-in one of the skeleton, by its name or else by its keypoint names), ``mjcf``
    (default: the dm_control rodent) and ``scale`` (default: the site map's).
    ``offsets_from`` is another session (a Session or a path) whose StacRegistration's fitted
    offsets are reused: calibration is skipped. The registration goes to
    ``processing/mimic/<name>``, its model to ``processing/mimic/BodyModel`` (``BodyModel_<name>``
    for another name); ``replace`` replaces both. ``progress`` shows progress bars.

    A clip needs at least as many frames as the widest series stored (qpos: 74 columns for the
    rat); a shorter one is refused before any work. Returns a :class:`StacStageResult`.
    """
    config = config or StacConfig()
    model_name = body_model_name(name)
    with opened(session) as session:
        path = session.path
        if not replace:
            _check_free(session, (name, model_name))
        pose = _keypoints(session, keypoints)
        data = stored_keypoints(pose, path)
        inputs = session.object_ids(pose)
        keypoint_names = list(data.skeleton.nodes)
        site_map = _site_map_for(data.skeleton.name, site_map, keypoint_names)
        try:
            model = build_body_model(site_map, keypoint_names, mjcf=mjcf, scale=scale)
        except (ValueError, FileNotFoundError) as error:
            raise InputError(f"body model: {error}") from None
        check_clip_length(len(data.positions), widest_series(model), "stac", path)
        offsets, offsets_source = (
            _offsets_from(offsets_from, keypoint_names) if offsets_from is not None else (None, None)
        )
        report, close = _progress_bar(progress)
        try:
            result = run_stac(
                data.positions, model, config, keypoint_names=keypoint_names, offsets=offsets, progress=report
            )
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None
        finally:
            close()
        fitted = model.with_site_offsets(result.offsets)
        keypoints_path = f"processing/{KEYPOINTS_MODULE}/{pose.name}"
        parameters = {
            **config.to_dict(),
            "site_map": str(site_map),
            "mjcf": str(model.source),
            "scale": model.scale,
            "offsets_from": offsets_source,
            "keypoints": keypoints_path,
        }
        # Regular clock: rate and start; else the series link the keypoints' timestamps.
        timing = dict(rate=data.rate, starting_time=data.starting_time) if data.rate is not None else None
        with session.append(replace=[name, model_name] if replace else (), inputs=inputs) as s:
            s.check_new(model_name)
            s.check_new(name)
            source_pose = s.input(keypoints_path, inputs[keypoints_path])
            body_model = s.add(
                body_model_to_nwb(fitted, model_name, f"{model.source} (keypoint sites at the STAC-fitted offsets)"),
                parameters={"scale": model.scale, "actuators": model.actuator_kind, "mjcf": str(model.source)},
            )
            s.add(registration_to_nwb(result, fitted, body_model, source_pose, timing, name), parameters=parameters)
    return StacStageResult(
        path=path,
        name=f"processing/{RESULTS_MODULE}/{name}",
        body_model=f"processing/{RESULTS_MODULE}/{model_name}",
        keypoints=keypoints_path,
        site_map=Path(site_map),
        result=result,
    )

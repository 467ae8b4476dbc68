"""STAC: register a MuJoCo body model to 3D keypoints (the pure core: arrays in, arrays out).

The algorithm (Wu et al. 2013, "STAC"; as used by Aldarondo et al. 2024 and talmolab/stac-mjx):

1. **Arena.** Keypoints come in the rig's frame. The floor plane and up direction are estimated
   from the keypoints (or given) and the keypoints are moved rigidly into the model's world
   (gravity along -z, floor at z = 0). The transform is returned.
2. **Calibration** of the keypoint offsets (where each keypoint sits on its body) on a subset of
   frames, alternating (a) pose fitting with the offsets fixed and (b) a closed-form offset fit
   with the poses fixed: regularised linear least squares that pulls the site map's
   ``regularized_keypoints`` toward their initial offsets. Skipped when offsets are given
   (offsets calibrated on another session of the same animal).
   **Floor height from the model.** A keypoint floor sits where the keypoints are, not where the
   model's geoms are (a paw keypoint marks the top of the paw; the model's foot may be thicker).
   So when the floor was estimated, the first round's poses (fitted without the floor term) set
   its height: the ``floor_percentile`` percentile over frames of the lowest geom's height
   becomes z = 0. The floor term is on from then on.
3. **Pose fitting** of every frame: bounded Levenberg–Marquardt on MuJoCo's analytic Jacobians,
   warm-started from the previous frame; a fresh rigid root fit (Kabsch on the trunk keypoints,
   heading-free) starts each run of frames and rescues frames where tracking was lost. Frames are
   split in contiguous chunks fitted in parallel processes; each chunk starts ``chunk_overlap``
   frames early and drops them, so its first kept frame is already warm. One-sided terms keep
   every geom the fitted joints move above the floor and the body's geoms out of each other
   (``fitter``).
4. **Unobserved joints** (no keypoint on their body or below it: the rodent's tail, toes,
   fingers, jaw) get a pose that clears the floor and is smooth in time (``unobserved``);
   frames where one cannot clear it on its own (a finger under a palm on the floor) are fitted
   again with the floor term on every geom, so that the fitted joints lift its parent.
5. **Penetration** of every body below the floor, and the deepest contact between the body's
   own geoms (a self-contact term in the pose fit keeps those shallow), are measured in every
   frame and returned.

Units: metres, radians, seconds. Frames with fewer than ``min_keypoints`` observed (non-NaN)
keypoints are *invalid*: their qpos, model keypoints and errors are NaN (never interpolated).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, fields

import mujoco
import numpy as np

from ..body_model import BodyModel
from .arena import Floor, apply_transform, estimate_floor, model_floor_clearance
from .fitter import PoseFitter, SolverSettings
from .geometry import body_penetration, floor_contact_geoms, self_contact_depth
from .unobserved import UnobservedPrior

__all__ = [
    "MissingKeypointWarning",
    "StacConfig",
    "StacResult",
    "run_stac",
    "model_keypoint_positions",
    "default_n_workers",
]

# Body size of the data relative to the model's beyond which the units must be wrong.
_MAX_SIZE_RATIO = 4.0
# Calibration frames fitted in one warm-started run (first round).
_CALIBRATION_RUN = 32
# Depth below the floor that counts as penetration in the summary statistics, metres.
PENETRATION_TOLERANCE = 0.001
# Frames with a geom deeper than this after the unobserved-joint prior are refit with the
# floor term on every geom, metres.
_REFIT_DEPTH = 0.0001


class MissingKeypointWarning(UserWarning):
    """A keypoint is missing in too many frames to calibrate its offset or count its error."""


def default_n_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class StacConfig:
    """Parameters of a STAC run. Defaults are those used for the DANNCE rat at 50 Hz.

    Calibration:
        n_calibration_frames: frames used to calibrate the offsets, evenly spaced over the valid
            frames (all of them when fewer).
        n_calibration_rounds: alternations of pose fitting and offset fitting.
        offset_regularization: weight pulling the regularised keypoints toward their initial
            offsets (stac-mjx ``M_REG_COEF``, per frame, relative to squared metres of error).
            0.1, not stac-mjx's 1: solved exactly here (stac-mjx stops its gradient descent
            early), 1 holds the rat23 spine keypoints at the vertebrae while DANNCE marks the
            back's surface, pinning the neck at its extension limit in every frame of the real
            clip; 0.1 gives 1.3 instead of 1.8 mm in-sample and 3.2 instead of 3.8 mm
            leave-one-keypoint-out error (first 300 frames).

    Pose fitting:
        max_iterations: Levenberg–Marquardt iterations for a warm-started frame (each frame is fitted on its own).
        init_iterations: iterations for a frame started from a fresh rigid root fit.
        tolerance: stop when an iteration lowers the objective (or, by the linearised model,
            would lower it) by less than this fraction of it.
        prior_weight: pull of the fitted joints toward ``qpos0``, m^2 per rad^2; resolves the
            redundant chains (6 lumbar, 7 cervical joints) the keypoints cannot tell apart.
        smoothness_weight: pull toward the previous frame's pose, m^2 per rad^2 (0 = off).
        reinit_error: mean keypoint error (m) above which a frame is refitted from a fresh
            rigid root fit (lost track), keeping the better of the two.
        min_keypoints: frames with fewer observed keypoints are invalid (NaN, not fitted).
        max_missing_share: a keypoint missing (NaN) in more than this share of the frames, or in
            every frame, is *excluded*: a warning names it, its offset is not calibrated (stays
            initial) and its errors do not count in ``mean_error``. It still helps fit the pose
            of the frames where it is seen. 0.5: an offset calibrated on a minority of frames
            (often the frames where the detector guessed) is not trusted.
        floor_weight: weight of the one-sided floor term, m^2 of keypoint error per m^2 of depth
            of a geom below the floor (0 = off). 100: a geom 1 mm deep costs as much as one
            keypoint 10 mm off, so a geom stays within a few hundredths of a millimetre of the
            floor unless many keypoints pull it down together.
        contact_weight: the same for contacts between the body's own geoms that MuJoCo would
            collide (0 = off). 30, less than the floor's: the collision shapes are coarse (the
            rodent's jaw sits at rest, unobserved, where the DANNCE forelimbs often are); on
            the demo clip it takes the deepest self-contact from 13.7 to 0.9 mm (median 0.47
            to 0.07 mm) for 0.03 mm of mean keypoint error.

    Floor and unobserved joints:
        floor_percentile: when the floor is estimated, the lowest fitted geom (floor term off)
            sits at or above the floor in this percentage of the calibration frames. 5: the
            term then lifts the DANNCE rat's feet in few frames, by under a millimetre (50 lifts
            half of the frames by up to 3 mm and costs keypoint error). None keeps the keypoint
            floor.
        unobserved_prior: pose the unobserved joints (False: they stay at ``qpos0``).
        unobserved_smoothing: Gaussian sigma of the time smoothing of unobserved joints, frames
            (0 = none); 3 frames = 60 ms at 50 Hz.

    Arena:
        up_direction: (3,) up in the keypoints' frame; None = estimate.
        floor_height: floor height along up, metres; None = estimate.
        align_floor: when False and nothing is given, keypoints are used as they are (identity).

    Parallelism:
        n_workers: processes (None = all cores; 1 = in this process).
        chunk_frames: largest chunk of consecutive frames per task. Chunks depend on the number
            of frames only, so results do not depend on ``n_workers``.
        chunk_overlap: frames fitted before each chunk and dropped (warm-up across seams).
    """

    n_calibration_frames: int = 250
    n_calibration_rounds: int = 6
    offset_regularization: float = 0.1
    # the per-frame solver's settings take their defaults from SolverSettings (one source)
    max_iterations: int = SolverSettings.max_iterations
    init_iterations: int = SolverSettings.init_iterations
    tolerance: float = SolverSettings.tolerance
    prior_weight: float = SolverSettings.prior_weight
    smoothness_weight: float = SolverSettings.smoothness_weight
    reinit_error: float = SolverSettings.reinit_error
    min_keypoints: int = 6
    max_missing_share: float = 0.5
    floor_weight: float = 100.0
    contact_weight: float = 30.0
    floor_percentile: float | None = 5.0
    unobserved_prior: bool = True
    unobserved_smoothing: float = 3.0
    up_direction: tuple[float, float, float] | None = None
    floor_height: float | None = None
    align_floor: bool = True
    n_workers: int | None = None
    chunk_frames: int = 125
    chunk_overlap: int = 10

    def __post_init__(self):
        positive_ints = ("n_calibration_frames", "max_iterations", "init_iterations", "min_keypoints", "chunk_frames")
        for name in positive_ints:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"StacConfig.{name}: must be >= 1, got {getattr(self, name)!r}")
        for name in ("n_calibration_rounds", "chunk_overlap"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"StacConfig.{name}: must be >= 0, got {getattr(self, name)!r}")
        for name in (
            "offset_regularization",
            "tolerance",
            "prior_weight",
            "smoothness_weight",
            "reinit_error",
            "floor_weight",
            "contact_weight",
            "unobserved_smoothing",
        ):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"StacConfig.{name}: must be finite and >= 0, got {v!r}")
        if not (0 <= self.max_missing_share <= 1):
            raise ValueError(f"StacConfig.max_missing_share: must be in [0, 1], got {self.max_missing_share!r}")
        if self.floor_percentile is not None and not (0 <= self.floor_percentile <= 100):
            raise ValueError(f"StacConfig.floor_percentile: must be in [0, 100] or None, got {self.floor_percentile!r}")
        if self.min_keypoints < 3:
            raise ValueError(f"StacConfig.min_keypoints: must be >= 3, got {self.min_keypoints}")
        if self.up_direction is not None:
            up = np.asarray(self.up_direction, dtype=float)
            if up.shape != (3,) or not np.all(np.isfinite(up)) or np.linalg.norm(up) == 0:
                raise ValueError(f"StacConfig.up_direction: expected a non-zero 3-vector, got {self.up_direction!r}")
        if self.n_workers is not None and self.n_workers < 1:
            raise ValueError(f"StacConfig.n_workers: must be >= 1, got {self.n_workers}")

    def solver_settings(self) -> SolverSettings:
        """The SolverSettings of this run: every solver field this config sets (the floor and
        contact terms are on here by default, off in a bare SolverSettings)."""
        return SolverSettings(
            **{f.name: getattr(self, f.name) for f in fields(SolverSettings) if hasattr(self, f.name)}
        )

    def to_dict(self) -> dict:
        """Plain parameters (for provenance attributes)."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class StacResult:
    """Result of ``run_stac``. T frames, K keypoints, nq qpos columns; metres and radians.

    Attributes:
        qpos: (T, nq) fitted poses in the model's world (floor at z = 0, gravity -z); NaN rows
            for invalid frames. Columns: ``qpos_names``.
        offsets: (K, 3) fitted keypoint offsets, body frame (of ``keypoint_bodies``), metres.
        initial_offsets: (K, 3) offsets the run started from (the body model's sites, or the
            offsets passed in).
        model_keypoints: (T, K, 3) model keypoint positions, model world; NaN for invalid frames.
        keypoints: (T, K, 3) the input keypoints moved into the model world (NaN = missing).
        errors: (T, K) distance between model and input keypoint, metres; NaN where the keypoint
            is missing or the frame invalid.
        keypoint_excluded: (K,) bool, keypoints missing in more than ``max_missing_share`` of
            the frames: not calibrated, not in ``mean_error`` (their errors are still given).
        valid: (T,) bool, frames with at least ``min_keypoints`` observed keypoints (fitted).
        at_limit: (T, nq) bool, fitted scalar joints within 1e-4 of a range limit.
        iterations: (T,) Levenberg–Marquardt iterations spent per frame.
        world_from_input: (4, 4) rigid transform applied to the keypoints.
        up_direction: (3,) up in the input frame; floor_height: metres along it.
        floor_estimated: whether up/floor came from the keypoints.
        calibration_frames: frame indices used for calibration (empty when offsets were given).
        calibrated: False when calibration was skipped (offsets given, or no rounds).
        timings: seconds: ``startup`` (processes), ``floor``, ``calibration``, ``pose_fitting``,
            ``total``.
        keypoint_names, keypoint_bodies, qpos_names: column names.
        fitted_dofs: (nv,) bool, degrees of freedom moved by some keypoint; the others are
            posed by the unobserved-joint prior.
        penetration: (T, B) depth below the floor (z = 0) of each body's deepest geom, metres,
            >= 0 (0 when clear); NaN rows for invalid frames. Columns: ``penetration_bodies``
            (the bodies that own a geom that can touch the floor).
        self_penetration: (T,) depth of the deepest contact between two of the body's own geoms,
            metres (0 when none; NaN for invalid frames).
        floor_shift: metres the floor was lowered from the keypoint estimate to the model's
            feet (``floor_percentile``); 0 when not re-estimated.
        unobserved_groups: root body of each group of unobserved joints; unobserved_directions:
            the bend direction chosen for each; unobserved_bends: (T, G) their bends (radians
            along the direction; NaN for invalid frames).
        config: the StacConfig used; n_workers: processes used (at most one per chunk).
    """

    qpos: np.ndarray
    offsets: np.ndarray
    initial_offsets: np.ndarray
    model_keypoints: np.ndarray
    keypoints: np.ndarray
    errors: np.ndarray
    keypoint_excluded: np.ndarray
    valid: np.ndarray
    at_limit: np.ndarray
    iterations: np.ndarray
    world_from_input: np.ndarray
    up_direction: np.ndarray
    floor_height: float
    floor_estimated: bool
    calibration_frames: np.ndarray
    calibrated: bool
    timings: dict
    keypoint_names: tuple[str, ...]
    keypoint_bodies: tuple[str, ...]
    qpos_names: tuple[str, ...]
    fitted_dofs: np.ndarray
    config: StacConfig
    n_workers: int
    penetration: np.ndarray
    penetration_bodies: tuple[str, ...]
    self_penetration: np.ndarray
    floor_shift: float
    unobserved_groups: tuple[str, ...]
    unobserved_directions: tuple[str, ...]
    unobserved_bends: np.ndarray

    @property
    def mean_error(self) -> float:
        """Mean keypoint error over observed keypoints of valid frames, metres (excluded
        keypoints left out)."""
        kept = self.errors[:, ~self.keypoint_excluded]
        return float(np.nanmean(kept)) if np.isfinite(kept).any() else float("nan")

    @property
    def max_penetration(self) -> tuple[float, str]:
        """(depth in metres, body) of the deepest geom below the floor over all valid frames."""
        depth = np.where(np.isfinite(self.penetration), self.penetration, 0.0)
        if depth.size == 0:
            return 0.0, ""
        t, b = np.unravel_index(np.argmax(depth), depth.shape)
        return float(depth[t, b]), self.penetration_bodies[b]

    @property
    def frames_penetrating(self) -> np.ndarray:
        """(T,) bool, valid frames with a geom more than ``PENETRATION_TOLERANCE`` (1 mm) below
        the floor."""
        with np.errstate(invalid="ignore"):
            return (self.penetration > PENETRATION_TOLERANCE).any(axis=1) & self.valid

    @property
    def frames_at_limit(self) -> np.ndarray:
        """(T,) bool, valid frames with at least one fitted joint at a range limit."""
        return self.at_limit.any(axis=1) & self.valid


ProgressCallback = Callable[[str, int, int], None]


def run_stac(
    keypoints: np.ndarray,
    body_model: BodyModel,
    config: StacConfig | None = None,
    *,
    keypoint_names: Sequence[str] | None = None,
    offsets: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
) -> StacResult:
    """Register the body model to keypoints.

    Args:
        keypoints: (T, K, 3) keypoint positions in metres, rig frame; NaN marks a missing value.
        body_model: a model built with one keypoint site per keypoint (``build_body_model``).
        config: parameters (default ``StacConfig()``).
        keypoint_names: names of the K keypoint columns, when their order may differ from
            ``body_model.keypoint_names``: columns are reordered to the body model's order
            (results follow that order); a name the body model lacks is an error.
        offsets: (K, 3) offsets calibrated elsewhere (e.g. another session of the same animal,
            body model order, scaled model, metres): calibration is skipped.
        progress: called as ``progress(stage, frames_done, frames_total)`` with stage
            ``"calibration"`` or ``"pose"``, as chunks of frames finish.

    With ``n_workers > 1`` the work runs in processes started with ``spawn``: a script that
    calls ``run_stac`` needs the usual ``if __name__ == "__main__":`` guard. Results do not
    depend on ``n_workers``.

    Returns:
        a StacResult.

    Raises:
        ValueError: bad shapes or names, all-NaN keypoints, no frame with ``min_keypoints``
            observed keypoints, or a body size implausible for metres (e.g. millimetres).
    """
    t_start = time.perf_counter()
    config = config or StacConfig()
    y_in, observed = _check_keypoints(keypoints, body_model, keypoint_names)
    n_frames, n_kp = observed.shape
    valid = observed.sum(1) >= config.min_keypoints
    if not valid.any():
        raise ValueError(
            f"keypoints: no frame has at least min_keypoints={config.min_keypoints} observed "
            f"keypoints (most in one frame: {observed.sum(1).max()})"
        )
    excluded = _excluded_keypoints(observed, body_model.keypoint_names, config.max_missing_share)
    # Calibration sees only the keypoints kept; pose fitting sees every observed one.
    calibrated_obs = observed & ~excluded
    site_map = body_model.site_map
    trunk_names = set(site_map.trunk_keypoints) | ({site_map.root_keypoint} - {None})
    trunk = np.array([n in trunk_names for n in body_model.keypoint_names])
    regularized = np.array([n in site_map.regularized_keypoints for n in body_model.keypoint_names])
    if offsets is not None:
        offsets = np.asarray(offsets, dtype=float)
        if offsets.shape != (n_kp, 3) or not np.all(np.isfinite(offsets)):
            raise ValueError(f"offsets: expected finite values of shape ({n_kp}, 3), got {offsets.shape}")
        initial = offsets.copy()
    else:
        initial = np.array(body_model.initial_offsets, dtype=float)

    settings = config.solver_settings()
    local = PoseFitter(body_model.model, body_model.keypoint_body_ids, initial, trunk, settings)
    _check_units(y_in, observed, valid, local)

    # 1. Arena.
    t0 = time.perf_counter()
    floor = _floor(config, y_in, observed, local)
    transform = floor.world_from_input()
    y = apply_transform(transform, y_in)
    timings = {"floor": time.perf_counter() - t0}

    tasks = _chunk_tasks(n_frames, config.chunk_frames, config.chunk_overlap)
    # No more processes than chunks: a short clip runs in this process, without start-up cost.
    n_workers = min(config.n_workers or default_n_workers(), len(tasks))
    t0 = time.perf_counter()
    with _Workers(n_workers, body_model, trunk, settings) as workers:
        timings["startup"] = time.perf_counter() - t0

        # 2. Calibration (and the floor's height from the model's geoms).
        t0 = time.perf_counter()
        # An estimated floor is moved to the model's feet after a first fit without the floor
        # term; a given floor is used as it is, with the floor term from the start.
        refloor = (
            floor.estimated
            and config.floor_percentile is not None
            and config.floor_weight > 0
            and len(local.floor_support.geoms) > 0
        )
        floor_on = not refloor
        floor_shift = 0.0
        if offsets is None:
            cal_frames = _calibration_frames(calibrated_obs, valid, config.n_calibration_frames)
            fitted = initial.copy()
            q_cal = None
            total = len(cal_frames) * config.n_calibration_rounds
            done = 0
            for _ in range(config.n_calibration_rounds):
                q_cal = _fit_calibration_round(
                    workers,
                    y[cal_frames],
                    calibrated_obs[cal_frames],
                    fitted,
                    q_cal,
                    lambda n: _report(progress, "calibration", n, total),
                    done,
                    floor_on,
                )
                done += len(cal_frames)
                if refloor:
                    floor_shift = _floor_shift(local, q_cal, config.floor_percentile)
                    q_cal[:, 2] -= floor_shift
                    refloor, floor_on = False, True
                    floor = Floor(up=floor.up, height=floor.height + floor_shift, estimated=True)
                    transform = floor.world_from_input()
                    y = apply_transform(transform, y_in)
                fitted = local.fit_offsets(
                    y[cal_frames],
                    calibrated_obs[cal_frames],
                    q_cal,
                    initial,
                    regularized,
                    config.offset_regularization,
                )
            offsets_out = fitted
        else:
            cal_frames = np.zeros(0, dtype=int)
            offsets_out = initial
        if refloor:  # no calibration round ran: one pass over the calibration frames for it
            sample = _calibration_frames(calibrated_obs, valid, config.n_calibration_frames)
            q_sample = _fit_calibration_round(
                workers, y[sample], observed[sample], offsets_out, None, lambda n: None, 0, False
            )
            floor_shift = _floor_shift(local, q_sample, config.floor_percentile)
            floor = Floor(up=floor.up, height=floor.height + floor_shift, estimated=True)
            transform = floor.world_from_input()
            y = apply_transform(transform, y_in)
        timings["calibration"] = time.perf_counter() - t0

        # 3. Pose fitting of every frame.
        t0 = time.perf_counter()
        qpos = np.full((n_frames, body_model.nq), np.nan)
        model_kp = np.full((n_frames, n_kp, 3), np.nan)
        iterations = np.zeros(n_frames, dtype=int)
        done = 0
        jobs = [
            ("sequence", y[a:b], observed[a:b], valid[a:b], offsets_out, None, keep - a, True) for a, keep, b in tasks
        ]
        for (_, keep, b), (q, p, it) in zip(tasks, workers.map(jobs)):
            qpos[keep:b], model_kp[keep:b], iterations[keep:b] = q, p, it
            done += b - keep
            _report(progress, "pose", done, n_frames)
        timings["pose_fitting"] = time.perf_counter() - t0

    # 4. Unobserved joints, then 5. penetration of every body (the whole model).
    t0 = time.perf_counter()
    prior = UnobservedPrior(local.model, local.fitted_dof_mask, config.unobserved_smoothing)
    if config.unobserved_prior:
        unobserved = prior.fit(qpos)
        qpos = unobserved.qpos
    else:
        unobserved = prior.at_rest(qpos)
    timings["unobserved"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    penetration_bodies, penetration = body_penetration(local.model, qpos)
    if config.floor_weight > 0:
        # Frames where an unobserved group could not clear the floor (a finger under a palm
        # that lies on the floor): refit them with the floor term on every geom, so that the
        # fitted joints lift the group's parent.
        with np.errstate(invalid="ignore"):
            stuck = np.flatnonzero((penetration > _REFIT_DEPTH).any(1))
        local.offsets = offsets_out
        local.use_floor, local.floor_all = True, True
        for t in stuck:
            q, p, _, it = local.fit_frame(y[t], observed[t], qpos[t], None, settings.init_iterations)
            qpos[t], model_kp[t] = q, p
            iterations[t] += it
        local.floor_all = False
        if len(stuck):
            penetration[stuck] = body_penetration(local.model, qpos[stuck])[1]
    self_penetration = self_contact_depth(local.model, qpos)
    timings["penetration"] = time.perf_counter() - t0

    errors = np.linalg.norm(model_kp - y, axis=2)
    errors[~observed] = np.nan
    errors[~valid] = np.nan
    at_limit = np.zeros((n_frames, body_model.nq), dtype=bool)
    ql = qpos[:, local.limited_qadr]
    with np.errstate(invalid="ignore"):
        at_limit[:, local.limited_qadr] = (ql <= local.lower + 1e-4) | (ql >= local.upper - 1e-4)
    timings["total"] = time.perf_counter() - t_start
    return StacResult(
        qpos=qpos,
        offsets=offsets_out,
        initial_offsets=initial,
        model_keypoints=model_kp,
        keypoints=y,
        errors=errors,
        keypoint_excluded=excluded,
        valid=valid,
        at_limit=at_limit,
        iterations=iterations,
        world_from_input=transform,
        up_direction=np.asarray(floor.up, dtype=float),
        floor_height=float(floor.height),
        floor_estimated=floor.estimated,
        calibration_frames=cal_frames,
        calibrated=offsets is None and len(cal_frames) > 0 and config.n_calibration_rounds > 0,
        timings=timings,
        keypoint_names=tuple(body_model.keypoint_names),
        keypoint_bodies=tuple(body_model.keypoint_bodies),
        qpos_names=tuple(body_model.qpos_names),
        fitted_dofs=local.fitted_dof_mask.copy(),
        config=config,
        n_workers=n_workers,
        penetration=penetration,
        penetration_bodies=tuple(local.model.body(int(b)).name for b in penetration_bodies),
        self_penetration=self_penetration,
        floor_shift=float(floor_shift),
        unobserved_groups=unobserved.group_names,
        unobserved_directions=unobserved.directions,
        unobserved_bends=unobserved.bends,
    )


def model_keypoint_positions(body_model: BodyModel, qpos: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Forward kinematics of the keypoint sites.

    Args:
        qpos: (T, nq) or (nq,) poses (NaN rows give NaN).
        offsets: (K, 3) body-frame offsets, metres (default: the body model's sites).

    Returns:
        (T, K, 3) (or (K, 3)) keypoint positions in the model world, metres.
    """
    qpos = np.asarray(qpos, dtype=float)
    single = qpos.ndim == 1
    qpos = np.atleast_2d(qpos)
    if qpos.shape[1] != body_model.nq:
        raise ValueError(f"qpos: expected {body_model.nq} columns, got {qpos.shape[1]}")
    offsets = body_model.initial_offsets if offsets is None else offsets
    k = len(body_model.keypoint_names)
    fitter = PoseFitter(body_model.model, body_model.keypoint_body_ids, offsets, np.ones(k, bool), SolverSettings())
    out = np.full((len(qpos), k, 3), np.nan)
    for t, q in enumerate(qpos):
        if np.all(np.isfinite(q)):
            out[t] = fitter.positions(q)
    return out[0] if single else out


def widest_series(body_model: BodyModel) -> int:
    """The most columns of any (frames, columns) series a registration of ``body_model`` has:
    qpos (nq), keypoint errors (K keypoints) or penetration (one column per body owning a geom
    that can touch the floor, as ``StacResult.penetration``). A clip needs at least as many
    frames for each stored series to have more rows than columns (nwbinspector's data
    orientation check)."""
    model = body_model.model
    floor_bodies = np.unique(model.geom_bodyid[floor_contact_geoms(model)])
    return max(model.nq, len(body_model.keypoint_names), len(floor_bodies))


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _check_keypoints(keypoints, body_model: BodyModel, names):
    if not body_model.keypoint_names:
        raise ValueError("body_model: has no keypoint sites (build it with a site map)")
    y = np.asarray(keypoints, dtype=float)
    if y.ndim != 3 or y.shape[2] != 3:
        raise ValueError(f"keypoints: expected shape (frames, keypoints, 3), got {y.shape}")
    if y.shape[0] == 0:
        raise ValueError("keypoints: no frames")
    if names is not None:
        names = list(names)
        if len(names) != y.shape[1]:
            raise ValueError(f"keypoint_names: {len(names)} names for {y.shape[1]} keypoint columns")
        for n in names:
            if n not in body_model.keypoint_names:
                raise ValueError(f"keypoint {n!r} has no site in the body model (not in the site map?)")
        missing = [n for n in body_model.keypoint_names if n not in names]
        if missing:
            raise ValueError(f"keypoints: no column for body model keypoint(s) {missing}")
        y = y[:, [names.index(n) for n in body_model.keypoint_names]]
    if y.shape[1] != len(body_model.keypoint_names):
        raise ValueError(
            f"keypoints: {y.shape[1]} keypoints, the body model has {len(body_model.keypoint_names)} keypoint sites"
        )
    if np.isinf(y).any():
        raise ValueError("keypoints: contain infinite values (use NaN for missing keypoints)")
    observed = ~np.isnan(y).any(axis=2)
    if not observed.any():
        raise ValueError("keypoints: all values are NaN")
    return y, observed


def _check_units(y, observed, valid, fitter: PoseFitter):
    """Compare the animal's size with the model's: millimetres passed as metres show up as a
    body 1000x too large."""
    model = fitter.positions(fitter.qpos0)
    frames = np.flatnonzero(valid)
    frames = frames[np.linspace(0, len(frames) - 1, min(200, len(frames))).astype(int)]
    ratios = []
    for t in frames:
        o = observed[t]
        d = y[t, o] - y[t, o].mean(0)
        m = model[o] - model[o].mean(0)
        ratios.append(np.sqrt((d**2).sum() / max((m**2).sum(), 1e-12)))
    ratio = float(np.median(ratios))
    if not (1 / _MAX_SIZE_RATIO <= ratio <= _MAX_SIZE_RATIO):
        hint = " (millimetres given as metres?)" if ratio > 100 else ""
        raise ValueError(
            f"keypoints: the animal is {ratio:.3g}x the size of the body model; keypoints must be in metres{hint}"
        )


def _excluded_keypoints(observed, names, max_share) -> np.ndarray:
    """(K,) keypoints missing in every frame or in more than ``max_share`` of them, each named
    in a warning."""
    missing = 1.0 - observed.mean(axis=0)
    excluded = (missing > max_share) | ~observed.any(axis=0)
    for k in np.flatnonzero(excluded):
        where = "every frame" if not observed[:, k].any() else f"{missing[k]:.0%} of the frames"
        warnings.warn(
            f"keypoint {names[k]!r} is missing in {where} (more than max_missing_share="
            f"{max_share:g}): left out of the offset calibration and the error statistics",
            MissingKeypointWarning,
            stacklevel=3,
        )
    return excluded


def _floor(config: StacConfig, y, observed, fitter: PoseFitter) -> Floor:
    if config.up_direction is not None:
        up = np.asarray(config.up_direction, dtype=float)
        up = up / np.linalg.norm(up)
    elif not config.align_floor:
        up = np.array([0.0, 0.0, 1.0])
    else:
        up = None
    if up is not None and (config.floor_height is not None or not config.align_floor):
        return Floor(up=up, height=float(config.floor_height or 0.0), estimated=False)
    q = fitter.qpos0.copy()
    q[:3] = 0.0
    q[3:7] = (1.0, 0.0, 0.0, 0.0)
    local = fitter.positions(q)
    clearance = model_floor_clearance(fitter.model, fitter.positions(fitter.qpos0)[:, 2])
    floor = estimate_floor(y, observed, local, clearance)
    if up is not None:  # up given, height estimated along it
        heights = [np.min(y[t, observed[t]] @ up) for t in np.flatnonzero(observed.sum(1) > 0)]
        return Floor(up=up, height=float(np.median(heights) - clearance), estimated=True)
    if config.floor_height is not None:
        return Floor(up=floor.up, height=float(config.floor_height), estimated=True)
    return floor


# --------------------------------------------------------------------------------------------
# Scheduling
# --------------------------------------------------------------------------------------------


def _calibration_frames(observed, valid, n):
    """Evenly spaced frames among the valid ones, preferring frames with every keypoint."""
    complete = np.flatnonzero(valid & observed.all(1))
    pool = complete if len(complete) >= min(n, valid.sum()) else np.flatnonzero(valid)
    if len(pool) <= n:
        return pool
    return pool[np.linspace(0, len(pool) - 1, n).round().astype(int)]


def _floor_shift(fitter: PoseFitter, qpos, percentile) -> float:
    """Height (m, model world) of the floor under the model: the ``percentile`` percentile over
    frames of the lowest geom that the fitted joints move (the floor term's geoms)."""
    lowest = []
    for q in qpos:
        if np.all(np.isfinite(q)):
            fitter.positions(q)
            lowest.append(fitter.floor_support.heights(fitter.data).min())
    return float(np.percentile(lowest, percentile)) if lowest else 0.0


def _fit_calibration_round(workers, y, observed, offsets, q_prev, report, done, floor_on):
    """Fit the calibration frames once: in runs warm-started across the sampled frames in the
    first round, from each frame's previous-round pose afterwards."""
    n = len(y)
    valid = np.ones(n, dtype=bool)
    edges = _edges(n, _CALIBRATION_RUN)
    jobs = []
    for a, b in zip(edges[:-1], edges[1:]):
        if q_prev is None:
            jobs.append(("sequence", y[a:b], observed[a:b], valid[a:b], offsets, None, 0, floor_on))
        else:
            jobs.append(("independent", y[a:b], observed[a:b], valid[a:b], offsets, q_prev[a:b], 0, floor_on))
    q = np.empty((n, workers.nq))
    for a, b, (qa, _, _) in zip(edges[:-1], edges[1:], workers.map(jobs)):
        q[a:b] = qa
        done += b - a
        report(done)
    return q


def _edges(n, size):
    """Boundaries of ceil(n / size) nearly equal runs of 0..n. They depend on n and size only,
    never on the number of workers: results are the same on any machine."""
    return np.linspace(0, n, -(-n // size) + 1).round().astype(int)


def _chunk_tasks(n_frames, max_chunk, overlap):
    """(first fitted frame, first kept frame, end) of each chunk of the final pass."""
    edges = _edges(n_frames, max_chunk)
    return [(max(0, a - overlap), a, b) for a, b in zip(edges[:-1], edges[1:])]


def _report(progress, stage, done, total):
    if progress is not None:
        progress(stage, int(done), int(total))


# --------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------

_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
_worker_fitter: PoseFitter | None = None


@contextlib.contextmanager
def _single_threaded_children():
    # Workers inherit the environment at start: BLAS reads these once, at import. One thread
    # each: the linear algebra here is tiny, and the processes already use every core.
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _init_worker(xml, assets, body_ids, trunk, settings):
    global _worker_fitter
    try:  # belt and braces, should BLAS have started before the environment was read
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    model = mujoco.MjModel.from_xml_string(xml, assets)
    _worker_fitter = PoseFitter(model, body_ids, np.zeros((len(body_ids), 3)), trunk, settings)


def _run_job(job, fitter=None):
    fitter = fitter or _worker_fitter
    kind, y, observed, valid, offsets, q_init, skip, floor_on = job
    fitter.offsets = np.asarray(offsets, dtype=float)
    fitter.use_floor = floor_on and fitter.settings.floor_weight > 0
    fitter.use_contacts = floor_on and fitter.settings.contact_weight > 0
    if kind == "sequence":
        q, p, it = fitter.fit_frames(y, observed, valid)
    else:
        q, p, it = fitter.fit_frames(y, observed, valid, q_init=q_init)
    return q[skip:], p[skip:], it[skip:]


def _ready(_):
    time.sleep(0.05)  # so that every worker takes one: start-up is paid here, not in a stage
    return os.getpid()


class _Workers:
    """Runs jobs in a pool of processes, or in this process when n_workers == 1."""

    def __init__(self, n_workers, body_model: BodyModel, trunk, settings):
        self.n_workers = n_workers
        self.nq = body_model.nq
        # The model's files (meshes, textures) travel with its XML: workers compile it from both.
        assets = dict(getattr(body_model, "assets", None) or {})
        self._args = (body_model.xml, assets, np.asarray(body_model.keypoint_body_ids), trunk, settings)
        self._pool = None
        self._local = None

    def __enter__(self):
        if self.n_workers == 1:
            # Same path as a worker (the model compiled from the XML text).
            xml, assets, body_ids, trunk, settings = self._args
            self._local = PoseFitter(
                mujoco.MjModel.from_xml_string(xml, assets), body_ids, np.zeros((len(body_ids), 3)), trunk, settings
            )
            return self
        # spawn: safe whatever threads the caller runs (fork is not) and the same on every OS;
        # a script that calls run_stac needs the usual ``if __name__ == "__main__":`` guard.
        # ProcessPoolExecutor (not multiprocessing.Pool): a worker that dies raises
        # BrokenProcessPool instead of hanging.
        self._pool = ProcessPoolExecutor(
            self.n_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=self._args,
        )
        try:
            with _single_threaded_children():  # workers start here and inherit the environment
                list(self._pool.map(_ready, range(self.n_workers)))
        except BrokenProcessPool as err:
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise RuntimeError(
                "STAC worker processes failed to start (a script calling run_stac with "
                'n_workers > 1 needs an `if __name__ == "__main__":` guard)'
            ) from err
        return self

    def map(self, jobs):
        """Results in the order of ``jobs``, yielded as each (and all before it) is done."""
        if self._pool is None:
            for job in jobs:
                yield _run_job(job, self._local)
        else:
            yield from self._pool.map(_run_job, jobs)

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(wait=exc[0] is None, cancel_futures=True)
        return False

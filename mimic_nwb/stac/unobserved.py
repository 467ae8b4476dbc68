"""A prior for the joints that no keypoint observes (for the rodent: tail, toes, fingers, jaw).

A degree of freedom is *unobserved* when no keypoint site lies on its body or on a descendant:
the keypoints say nothing about it, and the pose fit leaves it at ``qpos0``. Left there, a
rodent's tail hangs through the floor in every frame. Unobserved dofs form subtrees of the
body tree; each subtree is a *group*, posed as its rest pose bent by one scalar per frame:

    q_j(s) = clip(qpos0_j + s * d_j, lower_j, upper_j),    s >= 0 (radians along d)

over the group's hinge and slide joints (ball and free joints stay at rest). The direction
``d`` (with its sign) is one of the group's *candidates*: the coupling coefficients of each
fixed tendon whose joints all lie in the group (the tendons that drive it in simulation, e.g.
the rodent's ``caudal_extend``), or, when no tendon couples the group, one equal angle on each
of its joints. Clipping at the joint limits lets the bend go on past the first joint to
saturate, down the chain, until every joint is at its limit.

1. **Per frame**, the bend is the smallest ``s`` that lifts every geom of the group that can
   touch the floor above it (0 when the rest pose is already clear): a geometric scan of ``s``
   up to full saturation, then bisection.
2. **Per clip**, each group's direction is the candidate that clears the most sampled frames
   with the least bend (Euclidean norm of the joint change): one direction for every frame, so
   the tail does not flip between bending up and sideways.
3. **In time**, the bend is smoothed by an upper envelope: a running maximum over
   ``+-ceil(3 sigma)`` frames, then a Gaussian of ``sigma`` frames truncated at the same radius.
   A weighted mean of values that are each at least ``s_t`` is at least ``s_t``, so smoothing
   never undoes the clearance a frame needs; each frame is then re-checked (clearance need not
   grow with ``s`` everywhere) and set back to its own bend where the smooth one fails.

Nothing here is specific to an animal: groups, candidates and geoms come from the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.ndimage import gaussian_filter1d, maximum_filter1d

from .geometry import GeomSupport, floor_contact_geoms

__all__ = ["UnobservedGroup", "UnobservedPrior", "unobserved_groups"]

# Geometric scan of the bend: points from an eighth of the first joint's saturation to the
# saturation of the last one, then bisection between the last failing and first clearing
# point down to _BEND_TOLERANCE (radians along the direction).
_SCAN_POINTS = 24
_BEND_TOLERANCE = 1e-3
_MAX_BISECTIONS = 40
# Frames sampled to choose each group's direction.
_DIRECTION_SAMPLES = 64
# Largest change of an unlimited joint along a bend, radians (or metres for a slide).
_UNLIMITED_SPAN = np.pi


@dataclass(frozen=True, eq=False)
class UnobservedGroup:
    """One subtree of unobserved joints.

    Attributes:
        body: id of the subtree's root body; name: its name.
        qadr: (J,) qpos addresses of the group's hinge/slide joints.
        rest, lower, upper: (J,) their ``qpos0`` and range (-inf/inf when unlimited).
        geoms: ids of the subtree's geoms that can touch the floor.
        candidates: ((label, direction (J,)), ...): signed bend directions; the label names
            the tendon (``"+caudal_extend"``) or ``"+equal"`` / ``"-equal"``.
    """

    body: int
    name: str
    qadr: np.ndarray
    rest: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    geoms: np.ndarray
    candidates: tuple

    def bend(self, direction: np.ndarray, s: float) -> np.ndarray:
        """(J,) joint values at bend ``s`` along ``direction``."""
        # maximum/minimum: np.clip's wrappers cost more than the arithmetic at this size.
        return np.minimum(np.maximum(self.rest + s * direction, self.lower), self.upper)

    def saturation(self, direction: np.ndarray) -> tuple[float, float]:
        """Bends at which the first and the last joint moved by ``direction`` reach a limit."""
        moving = np.abs(direction) > 1e-12
        if not moving.any():
            return 0.0, 0.0
        d = direction[moving]
        room = np.where(d > 0, self.upper[moving] - self.rest[moving], self.lower[moving] - self.rest[moving])
        room = np.where(np.isfinite(room), room, np.sign(d) * _UNLIMITED_SPAN)
        s = room / d  # >= 0: the rest pose lies inside the range
        s = s[s > 1e-12]
        if len(s) == 0:
            return 0.0, 0.0
        return float(s.min()), float(s.max())


def unobserved_groups(model: mujoco.MjModel, fitted_dof_mask: np.ndarray) -> list[UnobservedGroup]:
    """The subtrees of dofs that no keypoint moves (``fitted_dof_mask`` (nv,) False), each with
    at least one hinge or slide joint, in body order."""
    fitted_body = np.zeros(model.nbody, dtype=bool)
    fitted_body[model.dof_bodyid[np.flatnonzero(fitted_dof_mask)]] = True
    scalar = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    contact = floor_contact_geoms(model)
    # Root of the unobserved subtree each body belongs to (-1: placed by fitted dofs only).
    group_of = np.full(model.nbody, -1)
    for b in range(1, model.nbody):  # parents come before their children
        parent = model.body_parentid[b]
        if group_of[parent] >= 0:
            group_of[b] = group_of[parent]
        elif model.body_dofnum[b] > 0 and not fitted_body[b]:
            group_of[b] = b
    groups = []
    for root in np.unique(group_of[group_of >= 0]):
        bodies = np.flatnonzero(group_of == root)
        joints = [j for j in range(model.njnt) if model.jnt_bodyid[j] in bodies and int(model.jnt_type[j]) in scalar]
        if not joints:
            continue
        qadr = model.jnt_qposadr[joints]
        limited = model.jnt_limited[joints].astype(bool)
        lower = np.where(limited, model.jnt_range[joints, 0], -np.inf)
        upper = np.where(limited, model.jnt_range[joints, 1], np.inf)
        rest = np.clip(model.qpos0[qadr], lower, upper)
        candidates = []
        for t in range(model.ntendon):
            adr, num = model.tendon_adr[t], model.tendon_num[t]
            wraps = range(adr, adr + num)
            if num == 0 or any(int(model.wrap_type[w]) != int(mujoco.mjtWrap.mjWRAP_JOINT) for w in wraps):
                continue
            coef = {int(model.wrap_objid[w]): float(model.wrap_prm[w]) for w in wraps}
            if not set(coef) <= set(joints):
                continue
            d = np.array([coef.get(j, 0.0) for j in joints])
            name = model.tendon(t).name or f"tendon{t}"
            candidates += [(f"+{name}", d), (f"-{name}", -d)]
        if not candidates:
            ones = np.ones(len(joints))
            candidates = [("+equal", ones), ("-equal", -ones)]
        geoms = contact[np.isin(model.geom_bodyid[contact], bodies)]
        groups.append(
            UnobservedGroup(
                body=int(root),
                name=model.body(int(root)).name,
                qadr=qadr,
                rest=rest,
                lower=lower,
                upper=upper,
                geoms=geoms,
                candidates=tuple(candidates),
            )
        )
    return groups


class UnobservedPrior:
    """Poses the unobserved groups of a model frame by frame (see the module docstring).

    Args:
        model: the compiled model (floor at z = 0).
        fitted_dof_mask: (nv,) bool, dofs the pose fit moves.
        smoothing_frames: Gaussian sigma of the time smoothing, frames (0: none).
    """

    def __init__(self, model: mujoco.MjModel, fitted_dof_mask: np.ndarray, smoothing_frames: float = 3.0):
        self.model = model
        self.data = mujoco.MjData(model)
        self.groups = unobserved_groups(model, fitted_dof_mask)
        self.smoothing_frames = float(smoothing_frames)
        self._support = [GeomSupport(model, g.geoms) for g in self.groups]

    # ---------------------------------------------------------------- one frame
    def _clearance(self, i: int, qpos: np.ndarray, direction: np.ndarray, s: float) -> float:
        """Height of group i's lowest geom above the floor at bend s, metres (inf: no geoms)."""
        g = self.groups[i]
        if len(g.geoms) == 0:
            return np.inf
        d = self.data
        d.qpos[:] = qpos
        d.qpos[g.qadr] = g.bend(direction, s)
        mujoco.mj_kinematics(self.model, d)
        return float(self._support[i].heights(d).min())

    def required_bend(self, i: int, qpos: np.ndarray, direction: np.ndarray, guess: float = 0.0) -> tuple[float, float]:
        """Smallest bend of group i along ``direction`` that clears the floor in pose ``qpos``,
        to ``_BEND_TOLERANCE``.

        ``guess`` (e.g. the previous frame's bend) brackets the search when it is close.
        Returns (bend, depth): depth 0 when the bend clears the floor; when no bend does, the
        bend of the scan that comes closest and the depth (m, > 0) left there.
        """

        def clear(s):
            return self._clearance(i, qpos, direction, s)

        h0 = clear(0.0)
        if h0 >= 0.0:
            return 0.0, 0.0
        first, last = self.groups[i].saturation(direction)
        if last <= 0.0:
            return 0.0, -h0
        lo, hi = 0.0, None
        best, best_h = 0.0, h0
        if 0.0 < guess <= last:
            h = clear(guess)
            if h >= 0.0:
                hi = guess
                if clear(0.8 * guess) < 0.0:
                    lo = 0.8 * guess
                else:
                    hi = 0.8 * guess
            else:
                lo, best, best_h = guess, guess, h
        if hi is None:
            for s in np.geomspace(min(first / 8.0, last), last, _SCAN_POINTS):
                if s <= lo:
                    continue
                h = clear(s)
                if h >= 0.0:
                    hi = s
                    break
                if h > best_h:
                    best, best_h = s, h
                lo = s
            else:
                return float(best), -best_h
        for _ in range(_MAX_BISECTIONS):
            if hi - lo <= _BEND_TOLERANCE:
                break
            mid = 0.5 * (lo + hi)
            if clear(mid) >= 0.0:
                hi = mid
            else:
                lo = mid
        return float(hi), 0.0

    # ---------------------------------------------------------------- a clip
    def choose_directions(self, qpos: np.ndarray) -> list[int]:
        """Index of the chosen candidate of each group, from up to 64 frames of ``qpos``
        (finite rows, evenly spaced): fewest frames left in the floor, then the least depth
        left there, then the least bend."""
        frames = np.flatnonzero(np.isfinite(qpos).all(1))
        frames = (
            frames[np.linspace(0, len(frames) - 1, min(_DIRECTION_SAMPLES, len(frames))).astype(int)]
            if len(frames)
            else frames
        )
        chosen = []
        for i, g in enumerate(self.groups):
            scores = []
            for _, direction in g.candidates:
                failed, depth, bend = 0, 0.0, 0.0
                for t in frames:
                    s, left = self.required_bend(i, qpos[t], direction)
                    failed += left > 0
                    depth += left
                    bend += float(np.linalg.norm(g.bend(direction, s) - g.rest))
                scores.append((failed, depth, bend))
            chosen.append(min(range(len(scores)), key=scores.__getitem__))
        return chosen

    def fit(self, qpos: np.ndarray, directions: list[int] | None = None) -> UnobservedFit:
        """Pose every group in every frame.

        Args:
            qpos: (T, nq) fitted poses (NaN rows: frames not fitted, left NaN); the groups'
                joints are overwritten.
            directions: chosen candidate per group (default: ``choose_directions(qpos)``).

        Returns:
            an UnobservedFit with the new qpos.
        """
        qpos = np.array(qpos, dtype=float)
        n = len(qpos)
        directions = self.choose_directions(qpos) if directions is None else list(directions)
        valid = np.isfinite(qpos).all(1)
        frames = np.flatnonzero(valid)
        for g in self.groups:  # start from rest, whatever the input held there
            qpos[np.ix_(frames, g.qadr)] = g.rest
        # Groups already clear at rest, every group in one forward kinematics per frame.
        rest_clear = np.zeros((n, len(self.groups)), dtype=bool)
        for t in frames:
            self.data.qpos[:] = qpos[t]
            mujoco.mj_kinematics(self.model, self.data)
            for i, support in enumerate(self._support):
                rest_clear[t, i] = len(support.geoms) == 0 or support.heights(self.data).min() >= 0.0
        bends = np.full((n, len(self.groups)), np.nan)
        cleared = np.ones((n, len(self.groups)), dtype=bool)
        rechecked = np.zeros(len(self.groups), dtype=int)
        for i, g in enumerate(self.groups):
            direction = g.candidates[directions[i]][1]
            need = np.zeros(n)
            previous = 0.0
            for t in np.flatnonzero(valid & ~rest_clear[:, i]):
                need[t], left = self.required_bend(i, qpos[t], direction, previous)
                cleared[t, i] = left == 0.0
                previous = need[t]
            smooth = self._smooth(need)
            for t in np.flatnonzero(valid):
                if smooth[t] != need[t] and cleared[t, i] and self._clearance(i, qpos[t], direction, smooth[t]) < 0.0:
                    smooth[t] = need[t]
                    rechecked[i] += 1
                qpos[t, g.qadr] = g.bend(direction, smooth[t])
            bends[valid, i] = smooth[valid]
        return UnobservedFit(
            qpos=qpos,
            bends=bends,
            cleared=cleared | ~valid[:, None],
            rechecked=rechecked,
            group_names=tuple(g.name for g in self.groups),
            directions=tuple(g.candidates[k][0] for g, k in zip(self.groups, directions)),
        )

    def at_rest(self, qpos: np.ndarray) -> UnobservedFit:
        """The groups left as they are in ``qpos`` (no prior), in the form of ``fit``'s result."""
        valid = np.isfinite(qpos).all(1)
        bends = np.where(valid[:, None], 0.0, np.nan) * np.ones((1, len(self.groups)))
        return UnobservedFit(
            qpos=np.array(qpos, dtype=float),
            bends=bends,
            cleared=np.ones((len(qpos), len(self.groups)), dtype=bool),
            rechecked=np.zeros(len(self.groups), dtype=int),
            group_names=tuple(g.name for g in self.groups),
            directions=("",) * len(self.groups),
        )

    def _smooth(self, need: np.ndarray) -> np.ndarray:
        sigma = self.smoothing_frames
        if sigma <= 0 or len(need) < 2:
            return need.copy()
        radius = int(np.ceil(3.0 * sigma))
        envelope = maximum_filter1d(need, size=2 * radius + 1, mode="nearest")
        return np.maximum(gaussian_filter1d(envelope, sigma, mode="nearest", truncate=radius / sigma), need)


@dataclass(frozen=True, eq=False)
class UnobservedFit:
    """Result of ``UnobservedPrior.fit``. T frames, G groups.

    Attributes:
        qpos: (T, nq) poses with the groups bent.
        bends: (T, G) bend of each group (radians along its direction); NaN for frames not fitted.
        cleared: (T, G) bool, False where no bend lifts the group above the floor.
        rechecked: (G,) frames set back from the smoothed bend to their own (see module doc).
        group_names: (G,) root body of each group; directions: (G,) chosen candidate labels.
    """

    qpos: np.ndarray
    bends: np.ndarray
    cleared: np.ndarray
    rechecked: np.ndarray
    group_names: tuple[str, ...]
    directions: tuple[str, ...]

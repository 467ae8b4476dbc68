"""Per-frame pose fitting: bounded Levenberg–Marquardt on MuJoCo's analytic Jacobians.

One ``PoseFitter`` owns one ``MjData`` and is used by one process. The keypoint offsets are a
plain array here: model keypoint positions are computed as ``xpos[body] + xmat[body] @ offset``
after ``mj_kinematics``, and their Jacobians with ``mj_jac`` at those points (after
``mj_comPos``), so the compiled model is never edited while fitting (no ``site_sameframe``
pitfall, and the offsets can change between calibration rounds for free).

Objective for one frame (keypoints ``y_k`` in metres, ``m_k`` 1 if observed else 0)::

    E(q) = sum_k m_k |p_k(q) - y_k|^2                      keypoint residuals, m^2
         + prior_weight      * sum_j (q_j - qpos0_j)^2      fitted hinge/slide joints
         + smoothness_weight * |q (-) q_prev|^2             tangent-space distance to the previous frame
         + floor_weight      * sum_g min(0, z_g(q))^2       depth of each geom's lowest point below the floor
         + contact_weight    * sum_c min(0, d_c(q))^2       depth of each contact between two of the body's geoms

Only the degrees of freedom that move at least one keypoint are fitted (for the rodent 44 of
73: the root and 38 hinges; tail, toes, fingers and jaw stay at ``qpos0``: see ``unobserved``).
The floor term covers every geom that can touch the floor and that only fitted joints move (a
one-sided penalty: zero above the floor, so it never pulls a geom down); its Jacobian rows are
the z rows of ``mj_jac`` at each geom's lowest point (``geometry.GeomSupport``). The contact
term does the same for the body's own geoms that MuJoCo would collide with each other (its
contact filter: contype/conaffinity, parent-child, excludes): ``mj_collision`` gives each penetrating pair's distance ``d_c`` (< 0), normal ``n`` and
point ``x``; its Jacobian row is ``n . (J_2(x) - J_1(x))``. Joint limits are
kept by an active set (a joint at its bound whose gradient points outward is frozen for the
step) and by projecting every step onto the limits.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.linalg.lapack import dposv as _posv  # Cholesky solve, low call overhead

from .geometry import GeomSupport, floor_contact_geoms, kabsch  # noqa: F401 (kabsch: public here too)

# Rejected steps (each 10x more damped) before a frame counts as converged.
_MAX_REJECTS = 3


@dataclass(frozen=True)
class SolverSettings:
    """Numerical settings of the per-frame solver (see ``StacConfig`` for their meaning)."""

    max_iterations: int = 10
    init_iterations: int = 60
    tolerance: float = 1e-3
    prior_weight: float = 3e-5
    smoothness_weight: float = 0.0
    reinit_error: float = 0.012
    floor_weight: float = 0.0
    contact_weight: float = 0.0
    initial_damping: float = 1e-3


def _mat_to_quat(r: np.ndarray) -> np.ndarray:
    q = np.empty(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(r).ravel())
    return q


class PoseFitter:
    """Fits qpos to keypoints frame by frame for one model and one set of keypoint offsets.

    Args:
        model: compiled model whose first joint is a free joint (the root).
        body_ids: (K,) body of each keypoint.
        offsets: (K, 3) keypoint offsets in their body frames, metres.
        trunk: (K,) bool, keypoints used for the rigid root initialisation.
        settings: solver settings.
    """

    def __init__(self, model: mujoco.MjModel, body_ids, offsets, trunk, settings: SolverSettings):
        if model.njnt == 0 or model.jnt_type[0] != mujoco.mjtJoint.mjJNT_FREE:
            raise ValueError("the body model's first joint must be a free joint (the root)")
        self.model = model
        self.data = mujoco.MjData(model)
        self.settings = settings
        self.body_ids = np.asarray(body_ids, dtype=int)
        self.n_keypoints = k = len(self.body_ids)
        self.offsets = np.array(offsets, dtype=float).reshape(k, 3)
        self.trunk = np.asarray(trunk, dtype=bool)
        self.qpos0 = model.qpos0.copy()

        # Degrees of freedom that move some keypoint: the dofs of its body and of its ancestors.
        moved = np.zeros(model.nbody, dtype=bool)
        for b in set(self.body_ids.tolist()):
            while b > 0:
                moved[b] = True
                b = model.body_parentid[b]
        self.dofs = np.flatnonzero(moved[model.dof_bodyid])
        self.n_dofs = len(self.dofs)
        self.fitted_dof_mask = np.zeros(model.nv, dtype=bool)
        self.fitted_dof_mask[self.dofs] = True

        # Scalar (hinge/slide) joints among the fitted dofs: prior, limits, 1:1 qpos <-> dof.
        jnt = model.dof_jntid[self.dofs]
        scalar = np.isin(model.jnt_type[jnt], (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE))
        self.scalar_pos = np.flatnonzero(scalar)  # positions within the fitted dofs
        self.scalar_qadr = model.jnt_qposadr[jnt[scalar]]  # their qpos addresses
        limited = scalar & (model.jnt_limited[jnt] == 1)
        self.limited_pos = np.flatnonzero(limited)
        self.limited_qadr = model.jnt_qposadr[jnt[limited]]
        self.lower = model.jnt_range[jnt[limited], 0].copy()
        self.upper = model.jnt_range[jnt[limited], 1].copy()

        self._qpos0_scalar = self.qpos0[self.scalar_qadr]
        self._qpos_lower = np.full(model.nq, -np.inf)
        self._qpos_upper = np.full(model.nq, np.inf)
        self._qpos_lower[self.limited_qadr] = self.lower
        self._qpos_upper[self.limited_qadr] = self.upper
        self._body_list = self.body_ids.tolist()
        self._jac_buffer = np.zeros((3 * k, model.nv))
        self._dq = np.zeros(model.nv)
        self._tangent = np.zeros(model.nv)
        self._diag_flat = np.arange(self.n_dofs) * (self.n_dofs + 1)
        self._prior_flat = self.scalar_pos * (self.n_dofs + 1)

        # Bodies placed by the fitted dofs alone (every dof between them and the world is
        # fitted): their geoms get the floor term. Geoms of unobserved subtrees (tail, toes)
        # are left to the unobserved-joint prior; here they would only drag the fit.
        determined = np.zeros(model.nbody, dtype=bool)
        determined[0] = True
        for b in range(1, model.nbody):  # parents come before their children
            determined[b] = determined[model.body_parentid[b]] and (model.body_dofnum[b] == 0 or moved[b])
        self.body_determined = determined
        geoms = floor_contact_geoms(model)
        self.floor_support = GeomSupport(model, geoms[determined[model.geom_bodyid[geoms]]])
        # Every geom, for refitting a frame whose unobserved joints cannot clear the floor on
        # their own (their parents must rise): set ``floor_all`` for it.
        self.all_floor_support = GeomSupport(model, geoms)
        self.floor_all = False
        self.use_floor = settings.floor_weight > 0
        self._sqrt_floor = float(np.sqrt(settings.floor_weight))
        self._floor_jac = np.zeros((3, model.nv))
        self._floor_jac2 = np.zeros((3, model.nv))
        # Self-contacts: a private copy of the model in which planes (the floor: its own term)
        # do not collide. Geoms of unobserved joints take part at the pose they have here (rest,
        # or the bend the prior gave in a refit): the rodent's jaw, which stays at rest, is
        # what the head and forelimbs most often run into.
        self.use_contacts = settings.contact_weight > 0
        self._sqrt_contact = float(np.sqrt(settings.contact_weight))
        if self.use_contacts:
            self._contact_model = copy.copy(model)  # MjModel copies are deep
            off = model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE
            self._contact_model.geom_contype[off] = 0
            self._contact_model.geom_conaffinity[off] = 0
            self._contact_data = mujoco.MjData(self._contact_model)
            # Pairs that already overlap at qpos0 are part of how the model was built (a
            # shoulder capsule sunk into the torso), not a pose to avoid: left out.
            self._resting = None
            _, at_rest = self.self_contacts(self.qpos0)
            if at_rest is not None:
                geom = self._contact_data.contact.geom[at_rest[4]]
                self._resting = np.zeros((model.ngeom, model.ngeom), dtype=bool)
                self._resting[geom[:, 0], geom[:, 1]] = self._resting[geom[:, 1], geom[:, 0]] = True

    # ---------------------------------------------------------------- kinematics
    def positions(self, qpos: np.ndarray) -> np.ndarray:
        """Model keypoint positions (K, 3), metres, world frame, for one qpos."""
        d = self.data
        d.qpos[:] = qpos
        mujoco.mj_kinematics(self.model, d)
        rot = d.xmat[self.body_ids].reshape(-1, 3, 3)
        return d.xpos[self.body_ids] + (rot @ self.offsets[:, :, None])[:, :, 0]

    def body_poses(self, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K, 3) positions and (K, 3, 3) rotations of the keypoints' bodies for one qpos."""
        d = self.data
        d.qpos[:] = qpos
        mujoco.mj_kinematics(self.model, d)
        return d.xpos[self.body_ids].copy(), d.xmat[self.body_ids].reshape(-1, 3, 3).copy()

    def _jacobian(self, points: np.ndarray, observed_idx, out_rows, active=((), None)) -> np.ndarray:
        """(3 * n_observed + n_below + n_contacts, n_dofs) Jacobian of the observed keypoints,
        then of the floor residuals of the geoms below the floor, then of the penetrating
        self-contacts (``active``, from ``_objective``), over the fitted dofs.

        Valid only right after ``positions`` at the same qpos. ``out_rows`` are (3, nv) views
        into one array, one per observed keypoint.
        """
        m, d = self.model, self.data
        mujoco.mj_comPos(m, d)  # cdof and subtree com, which mj_jac reads
        for k, rows in zip(observed_idx, out_rows):
            mujoco.mj_jac(m, d, rows, None, points[k], self._body_list[k])
        jac = self._jac_buffer[: 3 * len(observed_idx), self.dofs]
        below, contacts = active
        if len(below) == 0 and contacts is None:
            return jac
        blocks = [jac]
        if len(below):
            support = self.all_floor_support if self.floor_all else self.floor_support
            lowest = support.lowest_points(d, below)
            floor_rows = np.empty((len(below), self.n_dofs))
            for i, (point, body) in enumerate(zip(lowest, support.bodies[below])):
                mujoco.mj_jac(m, d, self._floor_jac, None, point, int(body))
                floor_rows[i] = self._floor_jac[2, self.dofs]
            blocks.append(self._sqrt_floor * floor_rows)
        if contacts is not None:
            normals, where, body1, body2, _ = contacts
            rows = np.empty((len(normals), self.n_dofs))
            for i in range(len(normals)):
                mujoco.mj_jac(m, d, self._floor_jac, None, where[i], int(body1[i]))
                mujoco.mj_jac(m, d, self._floor_jac2, None, where[i], int(body2[i]))
                rows[i] = normals[i] @ (self._floor_jac2 - self._floor_jac)[:, self.dofs]
            blocks.append(self._sqrt_contact * rows)
        return np.vstack(blocks)

    # ---------------------------------------------------------------- initialisation
    def root_from_keypoints(self, qpos: np.ndarray, y: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """qpos with the root placed by a rigid fit of the trunk keypoints (joints kept).

        Closed form (Kabsch) on the trunk keypoints (all observed keypoints when fewer than
        three trunk keypoints are observed), so it works whichever way the animal faces.
        """
        q = qpos.copy()
        q[:3] = 0.0
        q[3:7] = (1.0, 0.0, 0.0, 0.0)
        local = self.positions(q)  # keypoints in the root body's frame
        use = observed & self.trunk
        if use.sum() < 3:
            use = observed
        if use.sum() >= 3:
            r, t = kabsch(local[use], y[use])
            q[:3] = t
            q[3:7] = _mat_to_quat(r)
        else:  # too few points for a rotation: keep the orientation, move the root
            q[3:7] = qpos[3:7]
            q[:3] = qpos[:3] + (y[use] - self.positions(q)[use]).mean(0) if use.any() else qpos[:3]
        return q

    # ---------------------------------------------------------------- one frame
    def _objective(self, q, p, y_obs, observed_idx, q_prev):
        """Objective, residuals (keypoints, then floor) and the geoms below the floor, at the
        qpos of the last ``positions`` call (``q``)."""
        r = (p[observed_idx] - y_obs).ravel()
        below, contacts = (), None
        if self.use_floor:
            support = self.all_floor_support if self.floor_all else self.floor_support
            h = support.heights(self.data)
            below = np.flatnonzero(h < 0.0)
            if len(below):
                r = np.concatenate([r, self._sqrt_floor * h[below]])
        if self.use_contacts:
            depth, contacts = self.self_contacts(self.data.qpos)
            if contacts is not None:
                r = np.concatenate([r, self._sqrt_contact * depth])
        e = float(r @ r)
        s = self.settings
        if s.prior_weight > 0:
            dj = q[self.scalar_qadr] - self._qpos0_scalar
            e += s.prior_weight * float(dj @ dj)
        if s.smoothness_weight > 0 and q_prev is not None:
            mujoco.mj_differentiatePos(self.model, self._tangent, 1.0, q_prev, q)
            t = self._tangent[self.dofs]
            e += s.smoothness_weight * float(t @ t)
        return e, r, (below, contacts)

    def self_contacts(self, qpos):
        """Penetrating contacts between the body's own geoms at ``qpos`` (pairs that overlap at
        ``qpos0`` left out): (distances (C,) m, < 0; (normals (C, 3), points (C, 3), body1 (C,),
        body2 (C,), indices into the contact list (C,))), or (empty, None)."""
        cm, cd = self._contact_model, self._contact_data
        cd.qpos[:] = qpos
        mujoco.mj_kinematics(cm, cd)
        mujoco.mj_collision(cm, cd)
        n = cd.ncon
        if n == 0:
            return np.zeros(0), None
        dist = cd.contact.dist[:n]
        pen = np.flatnonzero(dist < 0.0)
        if len(pen) == 0:
            return np.zeros(0), None
        geom = cd.contact.geom[pen]
        if self._resting is not None:
            keep = ~self._resting[geom[:, 0], geom[:, 1]]
            pen, geom = pen[keep], geom[keep]
            if len(pen) == 0:
                return np.zeros(0), None
        return dist[pen].copy(), (
            cd.contact.frame[pen, :3].copy(),
            cd.contact.pos[pen].copy(),
            cm.geom_bodyid[geom[:, 0]],
            cm.geom_bodyid[geom[:, 1]],
            pen,
        )

    def _clip(self, q):
        np.maximum(q, self._qpos_lower, out=q)
        np.minimum(q, self._qpos_upper, out=q)

    def fit_frame(
        self,
        y: np.ndarray,
        observed: np.ndarray,
        q_start: np.ndarray,
        q_prev: np.ndarray | None = None,
        max_iterations: int | None = None,
    ):
        """Fit one frame by bounded Levenberg–Marquardt.

        Args:
            y: (K, 3) keypoints, metres (unobserved rows are ignored).
            observed: (K,) bool.
            q_start: (nq,) starting qpos.
            q_prev: (nq,) previous frame's qpos for the smoothness term (or None).
            max_iterations: iteration cap (default: settings.max_iterations).

        Returns:
            (qpos (nq,), keypoint positions (K, 3), objective value, iterations used)
        """
        s = self.settings
        iters = s.max_iterations if max_iterations is None else max_iterations
        obs = np.flatnonzero(observed)
        y_obs = y[obs]
        rows = [self._jac_buffer[3 * i : 3 * i + 3] for i in range(len(obs))]
        prior = s.prior_weight
        smooth = s.smoothness_weight if q_prev is not None else 0.0
        n = self.n_dofs
        diag = self._diag_flat

        q = q_start.copy()
        self._clip(q)
        p = self.positions(q)
        e, r, below = self._objective(q, p, y_obs, obs, q_prev)
        jac = self._jacobian(p, obs, rows, below)
        lam = s.initial_damping
        it = 0
        while it < iters:
            it += 1
            # Gauss–Newton normal equations.
            hess = jac.T @ jac
            grad = jac.T @ r
            if prior > 0:
                hess.ravel()[self._prior_flat] += prior
                grad[self.scalar_pos] += prior * (q[self.scalar_qadr] - self._qpos0_scalar)
            if smooth > 0:
                mujoco.mj_differentiatePos(self.model, self._tangent, 1.0, q_prev, q)
                hess.ravel()[diag] += smooth
                grad += smooth * self._tangent[self.dofs]
            # Active set: a joint at a bound whose descent direction leaves the range is frozen.
            ql = q[self.limited_qadr]
            gl = grad[self.limited_pos]
            frozen = self.limited_pos[((ql <= self.lower + 1e-9) & (gl > 0)) | ((ql >= self.upper - 1e-9) & (gl < 0))]
            if len(frozen):
                # Freeze them: identity rows/columns and zero gradient give a zero step there.
                hess[frozen, :] = 0.0
                hess[:, frozen] = 0.0
                hess.ravel()[frozen * (n + 1)] = 1.0
                grad[frozen] = 0.0
            hdiag = hess.ravel()[diag] + 1e-6
            accepted = False
            for _ in range(_MAX_REJECTS):
                a = hess.copy()
                a.ravel()[diag] += lam * hdiag
                _, step, info = _posv(a, -grad, overwrite_a=1)
                if info == 0:
                    # Decrease of E the linear model promises for this step; too small: done.
                    predicted = float(step @ (lam * hdiag * step) - step @ grad)
                    if predicted <= s.tolerance * e:
                        break
                    dq = self._dq
                    dq[:] = 0.0
                    dq[self.dofs] = step
                    q_new = q.copy()
                    mujoco.mj_integratePos(self.model, q_new, dq, 1.0)
                    self._clip(q_new)
                    p_new = self.positions(q_new)
                    e_new, r_new, below_new = self._objective(q_new, p_new, y_obs, obs, q_prev)
                    if e_new < e:
                        accepted = True
                        lam = max(lam * 0.3, 1e-9)
                        break
                lam *= 10.0
            if not accepted:  # no descent even with a much shorter step: at the minimum
                break
            decrease = e - e_new
            q, p, e, r, below = q_new, p_new, e_new, r_new, below_new
            if decrease <= s.tolerance * e or np.abs(step).max() < 1e-7:
                break
            jac = self._jacobian(p, obs, rows, below)
        if not np.array_equal(self.data.qpos, q):  # leave data consistent with the result
            p = self.positions(q)
        return q, p, e, it

    def mean_error(self, p, y, observed) -> float:
        return float(np.linalg.norm(p[observed] - y[observed], axis=1).mean())

    # ---------------------------------------------------------------- many frames
    def fit_frames(self, y: np.ndarray, observed: np.ndarray, valid: np.ndarray, q_init: np.ndarray | None = None):
        """Fit a run of frames.

        Args:
            y: (N, K, 3) keypoints, metres; observed: (N, K) bool; valid: (N,) bool.
            q_init: (N, nq) per-frame starting poses (calibration rounds after the first): each
                frame starts from its own row. Without it frames are fitted in sequence, each
                warm-started from the previous one (also the reference of the smoothness term);
                the first frame starts from a rigid root fit, and the first after invalid frames
                tries both.

        Returns:
            qpos (N, nq) (NaN rows for invalid frames), positions (N, K, 3), iterations (N,)
        """
        s = self.settings
        n_frames = len(y)
        out_q = np.full((n_frames, self.model.nq), np.nan)
        out_p = np.full((n_frames, self.n_keypoints, 3), np.nan)
        out_it = np.zeros(n_frames, dtype=int)
        prev = None
        fresh = True
        for i in range(n_frames):
            if not valid[i]:
                fresh = True  # a gap: do not trust the warm start blindly afterwards
                continue
            yi, oi = y[i], observed[i]
            if q_init is not None:
                q, p, e, it = self.fit_frame(yi, oi, q_init[i])
                candidates = [] if self.mean_error(p, yi, oi) <= s.reinit_error else [q_init[i]]
            elif prev is None:
                q, p, e, it = self._fit_fresh(yi, oi, self.qpos0)
                candidates = []
            else:
                q_prev = prev if s.smoothness_weight > 0 else None
                q, p, e, it = self.fit_frame(yi, oi, prev, q_prev)
                bad = self.mean_error(p, yi, oi) > s.reinit_error
                candidates = [prev] if (fresh or bad) else []
            for base in candidates:
                # Lost track, or after a gap: also try a fresh rigid root fit and keep the better.
                q2, p2, e2, it2 = self._fit_fresh(yi, oi, base)
                it += it2
                if e2 < e:
                    q, p, e = q2, p2, e2
                if self.mean_error(p, yi, oi) > s.reinit_error:
                    q2, p2, e2, it2 = self._fit_fresh(yi, oi, self.qpos0)
                    it += it2
                    if e2 < e:
                        q, p, e = q2, p2, e2
            out_q[i], out_p[i], out_it[i] = q, p, it
            prev, fresh = q, False
        return out_q, out_p, out_it

    def _fit_fresh(self, y, observed, q_joints):
        q = self.root_from_keypoints(q_joints, y, observed)
        return self.fit_frame(y, observed, q, None, self.settings.init_iterations)

    # ---------------------------------------------------------------- offsets
    def fit_offsets(self, y, observed, qpos, initial, regularized, weight):
        """Closed-form offsets given poses (STAC's offset phase).

        For keypoint k on a body with pose (x_t, R_t) in frame t the model point is
        x_t + R_t o_k, so minimising::

            sum_t m_tk |x_t + R_t o_k - y_tk|^2 + weight * n_k * |o_k - o0_k|^2   (regularised k)

        over o_k is linear least squares with normal matrix (n_k + weight n_k) I (R_t is a
        rotation): o_k = (sum_t m_tk R_t^T (y_tk - x_t) + weight n_k o0_k) / (n_k (1 + weight)).
        The regulariser scales with the number of frames, as in stac-mjx (``M_REG_COEF``).

        Args:
            y: (N, K, 3); observed: (N, K); qpos: (N, nq) finite rows only;
            initial: (K, 3); regularized: (K,) bool; weight: regularisation coefficient.

        Returns:
            (K, 3) offsets; keypoints never observed keep their initial offset.
        """
        k = self.n_keypoints
        acc = np.zeros((k, 3))
        count = np.zeros(k)
        for t in range(len(qpos)):
            xpos, xmat = self.body_poses(qpos[t])
            o = observed[t]
            local = np.einsum("kji,kj->ki", xmat, y[t] - xpos)  # R^T (y - x)
            acc[o] += local[o]
            count += o
        reg = np.where(regularized, weight, 0.0) * count
        denom = count + reg
        out = initial.copy()
        seen = denom > 0
        out[seen] = (acc[seen] + reg[seen, None] * initial[seen]) / denom[seen, None]
        return out

"""A tracking expert: controls that make the body follow the reference, without a network.

Pure core (MuJoCo and numpy). It is the teacher the MIMIC network is distilled from and a baseline
for it (``simulate --mode expert``).

Each control step takes the body from reference frame t towards frame t + 1; its control is held
over the frame's physics steps, as the network's is. The control is computed in five steps:

1. **Desired acceleration** (every degree of freedom): the reference's acceleration over the frame
   plus joint-space PD feedback, ``a* = a_ref[t] + wn^2 (q_ref[t] (-) q) + 2 zeta wn (v_ref[t] - v)``,
   natural frequency ``wn`` (default 30 rad/s: a settling time of about 0.15 s, well below the
   clip's movements yet slow enough for the 40 ms activation filter to follow), critically damped;
   ``(-)`` is MuJoCo's difference on the configuration manifold (quaternions included).
2. **Generalised force** by inverse dynamics at the *current* state, ``mj_inverse(q, v, a*)``
   (contacts off, as for the reference's inverse dynamics): the feedforward of the reference's
   motion and the feedback, both through the mass matrix at the current pose (computed torque).
3. **Support by the floor.** The root's six degrees of freedom have no actuator (there is no root
   force): the root's share of that force must come from the floor, pushed on by the limbs. Floor
   reaction forces f, one per body touching the floor (contacts within 5 mm: a foot about to
   land; applied at the mean of the body's contact points), are chosen to supply it,
   ``J_root^T f = F_root``, inside a linearised friction cone (four edges, 0.7 x the friction
   coefficient), by non-negative least squares with a small ridge; the joints then need ``F - J^T f``: what the limbs must exert so that the floor pushes
   back with f (whole-body control through contacts). Without this step the legs, held only by
   mass-matrix PD, fold under the body's weight.
4. **Actuator forces**: least squares of the actuators' moment arms on the joints' force, bounded
   by what the actuators can produce (as ``inverse_dynamics``).
5. **Controls**: the activation filter is inverted over the frame's physics steps (the control
   whose filtered activation best follows the required activation, clipped to the control range).

Optional **predictive sampling** (``n_samples`` > 0; Howell et al., MJPC): around that feedback
law, ``n_samples`` sequences of control offsets over the next ``horizon`` seconds (one offset per
frame, Gaussian with ``sampling_std``, in control units) are rolled forward on copies of the
state, each frame's control being the feedback law's plus the offset; the sequence with the least
tracking cost (mean squared keypoint-site distance to the reference, summed over the horizon's
frames) is kept, its first offset applied, and the rest shifted to warm-start the next frame. The
unperturbed law and the previous best are always among the candidates, so the plan applied is
never predicted (on the simulation itself) to track worse over the horizon than the law alone.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import mujoco
import numpy as np
from scipy.optimize import lsq_linear, nnls

from ..controller.observations import ReferenceTrajectory
from .inverse_dynamics import _ActuatorSolver, _force_bounds
from .physics import actuator_dynamics, as_mjmodel, moment_matrix, root_dofs, simulation_model, steps_per_frame
from .tracking import TrackingMeter

__all__ = ["ExpertConfig", "TrackingExpert"]

SUPPORT_MARGIN = 0.005  # m: floor contacts looked for this far (a foot about to land)
CONTACT_RIDGE = 1e-3  # ridge on the forces' cone coordinates (N): of the forces that hold the root, the smallest
FRICTION_SHARE = 0.7  # of the contact's friction coefficient: stay inside the cone, not on its edge


@dataclass(frozen=True)
class ExpertConfig:
    """Parameters of the tracking expert (module docstring).

    Attributes:
        natural_frequency: rad/s of the joint-space PD feedback (stiffness wn^2 and damping
            2 zeta wn per unit mass, through the mass matrix).
        damping_ratio: zeta (1: critically damped).
        n_samples: predictive-sampling candidates per control step (0: off, the feedback law
            alone; 16 is a good value).
        horizon: seconds each candidate is rolled forward (rounded to whole frames, at least 1).
        sampling_std: standard deviation of the control offsets, in control units (controls are
            in [-1, 1]). 0.01: the rodent standing on the floor is stiff to its controls; on the
            demo clip offsets of 0.1 make every candidate's cost 30-180 times the feedback law's
            (sampling then never helps), 0.01 finds better plans most frames (mean keypoint error
            over the first 300 frames 3.1 mm against 5.7 mm for the law alone; 0.003: 3.6 mm).
        seed: seed of the sampling noise.
    """

    natural_frequency: float = 30.0
    damping_ratio: float = 1.0
    n_samples: int = 0
    horizon: float = 0.2
    sampling_std: float = 0.01
    seed: int = 0

    def __post_init__(self):
        if not (np.isfinite(self.natural_frequency) and self.natural_frequency >= 0):
            raise ValueError(f"ExpertConfig.natural_frequency: must be >= 0 rad/s, got {self.natural_frequency!r}")
        if not (np.isfinite(self.damping_ratio) and self.damping_ratio >= 0):
            raise ValueError(f"ExpertConfig.damping_ratio: must be >= 0, got {self.damping_ratio!r}")
        if int(self.n_samples) < 0:
            raise ValueError(f"ExpertConfig.n_samples: must be >= 0, got {self.n_samples!r}")
        if not (np.isfinite(self.horizon) and self.horizon > 0):
            raise ValueError(f"ExpertConfig.horizon: must be > 0 seconds, got {self.horizon!r}")
        if not (np.isfinite(self.sampling_std) and self.sampling_std > 0):
            raise ValueError(f"ExpertConfig.sampling_std: must be > 0, got {self.sampling_std!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class TrackingExpert:
    """Controls that track ``reference`` with ``model``'s actuators (module docstring).

    Args:
        model: the body model's compiled model (its timestep is the simulation's; a private copy
            is used, the model is not modified).
        reference: the reference (qpos, qvel at the frame rate; e.g. the inverse-dynamics replay).
        config: the expert's parameters.

    Raises:
        ValueError: a reference that does not fit the model, a timestep that does not divide the
            frame period, actuators that cannot be inverted, a model without keypoint sites
            (sampling measures tracking on them).
    """

    def __init__(self, model: mujoco.MjModel, reference: ReferenceTrajectory, config: ExpertConfig = ExpertConfig()):
        if not isinstance(reference, ReferenceTrajectory):
            raise ValueError(f"reference: expected a ReferenceTrajectory, got {type(reference).__name__}")
        mj = as_mjmodel(model)
        if reference.qpos.shape[1] != mj.nq or reference.qvel.shape[1] != mj.nv:
            raise ValueError(
                f"reference: qpos/qvel have {reference.qpos.shape[1]}/{reference.qvel.shape[1]} "
                f"columns, the body model {mj.nq}/{mj.nv}"
            )
        self.config = config
        self.reference = reference
        self.model = simulation_model(mj)  # the simulation (contacts on): sampling rolls out on it
        self.id_model = copy.copy(self.model)  # inverse dynamics without contacts, as the reference's
        self.id_model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT)
        self.n_sub = steps_per_frame(reference.frame_rate, self.model.opt.timestep)
        self.dyn = actuator_dynamics(self.model)
        self._solver = _ActuatorSolver(self.id_model, self.dyn)
        self._scratch = mujoco.MjData(self.id_model)
        self._moment = np.zeros((mj.nu, mj.nv))
        wn, zeta = float(config.natural_frequency), float(config.damping_ratio)
        self.kp, self.kd = wn * wn, 2.0 * zeta * wn
        # Reference acceleration over each frame (velocity change to the next frame); zero after
        # the last frame, where there is nothing to follow.
        self.qacc_ref = np.zeros_like(reference.qvel)
        self.qacc_ref[:-1] = np.diff(reference.qvel, axis=0) * reference.frame_rate
        # Filter inversion over one frame's steps: u = w + sum_j c_j (w* - w) / sum_j c_j^2.
        j = np.arange(1, self.n_sub + 1)[:, None]
        c = 1.0 - (1.0 - self.dyn.rate[None, :]) ** j
        self._filter_gain = c.sum(0) / (c * c).sum(0)
        self.horizon_frames = max(1, int(round(config.horizon * reference.frame_rate)))
        # Contacts are looked for within a margin: a foot a few millimetres above the floor is
        # about to carry the body (the registration leaves feet up to ~1 mm off it).
        self._support_model = copy.copy(self.model)
        world = self._support_model.geom_bodyid == 0  # a pair's margin is the larger of its geoms'
        self._support_model.geom_margin[world] = np.maximum(self._support_model.geom_margin[world], SUPPORT_MARGIN)
        self._contacts_data = mujoco.MjData(self._support_model)
        self._root = root_dofs(self.model)
        # root rows: forces (N) as they are, torques (N m) over a 5 cm lever
        self._root_weight = np.where(np.arange(self.model.nv)[self._root] % 6 < 3, 1.0, 20.0)
        self._rng = np.random.default_rng(config.seed)
        self._meter = TrackingMeter(self.model, reference.qpos) if config.n_samples else None
        self._samples = [mujoco.MjData(self.model) for _ in range(int(config.n_samples))]
        self._plan = np.zeros((self.horizon_frames, mj.nu))
        self._last_frame = None

    def _contact_support(self, data, qfrc) -> np.ndarray:
        """(nv,) generalised force J_c^T f of floor reaction forces f that best supply the root's
        share of ``qfrc`` (the root has no actuator: the legs must push on the floor for it).

        One support point per body touching the floor (the mean of its contact points: a foot's
        several contacts act together); each force lies in a linearised friction cone (4 edges);
        non-negative least squares with a small ridge."""
        m, c = self._support_model, self._contacts_data
        c.qpos[:] = data.qpos
        mujoco.mj_fwdPosition(m, c)
        n = c.ncon
        if n == 0:
            return np.zeros(m.nv)
        con = c.contact
        b1, b2 = m.geom_bodyid[con.geom1[:n]], m.geom_bodyid[con.geom2[:n]]
        floor = (b1 == 0) != (b2 == 0)  # floor contacts only (world body 0)
        if not floor.any():
            return np.zeros(m.nv)
        bodies = np.where(b1 == 0, b2, b1)[floor]
        sign = np.where(b1 == 0, 1.0, -1.0)[floor][:, None]  # the frame's normal points from geom1 to geom2
        pos, frame, friction = con.pos[:n][floor], con.frame[:n][floor], con.friction[:n, 0][floor]
        normals, tangents = sign * frame[:, :3], frame[:, 3:6]
        # per body: mean point and normal, a tangent basis, the smallest friction of its contacts
        ids, group = np.unique(bodies, return_inverse=True)
        count = np.bincount(group)[:, None]
        point = np.zeros((len(ids), 3))
        normal = np.zeros((len(ids), 3))
        np.add.at(point, group, pos)
        np.add.at(normal, group, normals)
        point /= count
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        first = np.zeros(len(ids), dtype=int)
        first[group[::-1]] = np.arange(len(group))[::-1]
        t1 = tangents[first] - normal * np.einsum("ij,ij->i", tangents[first], normal)[:, None]
        t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
        t2 = np.cross(normal, t1)
        mu = np.full(len(ids), np.inf)
        np.minimum.at(mu, group, friction)
        mu = FRICTION_SHARE * mu[:, None]
        edges = np.stack([normal + mu * t1, normal - mu * t1, normal + mu * t2, normal - mu * t2], axis=1)
        jacp = np.zeros((3, m.nv))
        basis = np.empty((4 * len(ids), m.nv))  # generalised force of a unit force along each edge
        for k, body in enumerate(ids):
            mujoco.mj_jac(m, c, jacp, None, point[k], int(body))
            basis[4 * k : 4 * k + 4] = edges[k] @ jacp
        root = self._root
        a = basis[:, root].T * self._root_weight[:, None]
        b = qfrc[root] * self._root_weight
        lhs = np.vstack([a, CONTACT_RIDGE * np.eye(len(basis))])
        rhs = np.concatenate([b, np.zeros(len(basis))])
        try:
            beta, _ = nnls(lhs, rhs, maxiter=50 * len(basis))
        except RuntimeError:  # nnls did not converge (rare, degenerate contact sets)
            beta = lsq_linear(lhs, rhs, bounds=(0.0, np.inf), method="bvls").x
        return beta @ basis

    @property
    def n_frames(self) -> int:
        return self.reference.n_frames

    def reset(self) -> None:
        """Forget the warm start of predictive sampling (call at the start of an episode)."""
        self._plan[:] = 0.0
        self._last_frame = None

    def feedback_controls(self, data: mujoco.MjData, frame: int) -> np.ndarray:
        """(nu,) the feedback law's controls (steps 1-5 of the module docstring) at the state in
        ``data`` for the step from reference ``frame`` to ``frame + 1``; ``data`` is not modified."""
        ref = self.reference
        frame = min(max(int(frame), 0), ref.n_frames - 1)
        s, m = self._scratch, self.id_model
        s.qpos[:] = data.qpos
        s.qvel[:] = data.qvel
        err = np.empty(m.nv)
        mujoco.mj_differentiatePos(m, err, 1.0, data.qpos, ref.qpos[frame])  # q_ref (-) q
        s.qacc[:] = self.qacc_ref[frame] + self.kp * err + self.kd * (ref.qvel[frame] - data.qvel)
        mujoco.mj_inverse(m, s)
        qfrc = s.qfrc_inverse.copy()
        qfrc -= self._contact_support(data, qfrc)
        moment = moment_matrix(m, s, self._moment)
        gain, bias = self.dyn.gain_bias(s)
        lo, hi = _force_bounds(self.dyn, gain, bias)
        force, _ = self._solver.solve(moment, qfrc, lo, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            w_star = np.where(gain != 0, (force - bias) / gain, 0.0)
        dyn = self.dyn
        w_star = np.clip(w_star, dyn.act_range[:, 0], dyn.act_range[:, 1])
        w = w_star.copy()
        w[dyn.stateful] = data.act[dyn.act_index[dyn.stateful]]
        u = np.where(dyn.stateful, w + self._filter_gain * (w_star - w), w_star)
        return np.clip(u, dyn.ctrl_range[:, 0], dyn.ctrl_range[:, 1])

    def controls(self, data: mujoco.MjData, frame: int) -> np.ndarray:
        """(nu,) actuator controls in the control range to hold for the control step that should
        take the body from reference frame ``frame`` towards frame ``frame + 1``. Does not modify
        ``data``. With sampling, consecutive frames warm-start from the previous best plan."""
        u0 = self.feedback_controls(data, frame)
        if not self.config.n_samples:
            return u0
        frame = int(frame)
        if self._last_frame is not None and frame == self._last_frame + 1:
            warm = np.concatenate([self._plan[1:], np.zeros((1, self.model.nu))])
        else:
            warm = np.zeros_like(self._plan)
        self._last_frame = frame
        n = int(self.config.n_samples)
        candidates = np.repeat(warm[None], n, axis=0)
        candidates[2:] += self.config.sampling_std * self._rng.standard_normal(candidates[2:].shape)
        if n > 1:
            candidates[1] = 0.0  # the feedback law on its own
        costs = np.array(
            [self._rollout_cost(data, frame, u0, plan, sample) for plan, sample in zip(candidates, self._samples)]
        )
        best = int(np.argmin(costs))
        self._plan = candidates[best]
        lo, hi = self.dyn.ctrl_range[:, 0], self.dyn.ctrl_range[:, 1]
        return np.clip(u0 + self._plan[0], lo, hi)

    def _rollout_cost(self, data, frame, u0, plan, sample) -> float:
        """Tracking cost of the plan of offsets rolled forward from ``data`` on ``sample``."""
        m = self.model
        mujoco.mj_copyData(sample, m, data)
        lo, hi = self.dyn.ctrl_range[:, 0], self.dyn.ctrl_range[:, 1]
        last = self.reference.n_frames - 1
        cost = 0.0
        for h in range(self.horizon_frames):
            f = frame + h
            if f >= last:
                break
            u = u0 if h == 0 else self.feedback_controls(sample, f)
            sample.ctrl[:] = np.clip(u + plan[h], lo, hi)
            for _ in range(self.n_sub):
                mujoco.mj_step(m, sample)
            if not np.isfinite(sample.qpos).all():
                return np.inf
            mujoco.mj_kinematics(m, sample)
            cost += self._meter.site_cost(sample, f + 1)
        return cost

"""Inverse-dynamics replay of registered poses: the forces that make the body model move exactly
as the reference, split into what the actuators can deliver and the residual they cannot.

Pure core: arrays in, a result dataclass out (no files). The algorithm:

1. **Smoothing** (frames). qpos at the frame rate (e.g. STAC at 50 Hz) is smoothed column by
   column with a Savitzky–Golay filter (default window 7 frames, cubic; its -3 dB cut-off is
   about 0.22 x the Nyquist frequency, 5.6 Hz at 50 Hz). Quaternions (root, ball joints) are first
   made sign-continuous (q and -q are the same rotation), smoothed componentwise and
   renormalised; near-constant signals and polynomials up to the order pass unchanged.
2. **Interpolation onto the physics steps.** A C2 cubic spline through the smoothed frames is
   evaluated every physics step h (default the model's, 2 ms: 10 steps per 50 Hz frame);
   quaternions are renormalised. Frame i falls on step k = i * n exactly. (The spline is fitted
   in blocks of frames with 16 frames of margin, so memory stays bounded for long sessions; the
   influence of a spline knot decays by 0.27 per frame, so blocks do not show.)
3. **Velocities and accelerations on the manifold**, by finite differences of the interpolated
   steps with ``mj_differentiatePos`` (quaternions included):
   ``v[k] = (q[k] (-) q[k-1]) / h`` (the velocity the simulator holds at step k) and
   ``a[k] = (v[k+1] - v[k]) / h`` (the central second difference at step k). These are exactly
   the discrete quantities of MuJoCo's one-step integrators (``v[k+1] = v[k] + h a[k]``,
   ``q[k+1] = q[k] (+) h v[k+1]``), so with ``invdiscrete`` enabled ``mj_inverse`` returns the
   forces under which ``mj_step`` reproduces the interpolated trajectory, step for step.
4. **Generalised forces** ``qfrc_inverse`` (nv) at every step: what actuators and external
   forces together must supply; gravity, passive joint forces (springs, damping) and
   constraint forces (joint limits, and with ``contacts=True`` floor and self-contacts,
   computed analytically from the soft-constraint model by ``mj_inverse``) are the model's own
   and are not part of it. Contacts are off by default (see ``InverseDynamicsConfig.contacts``):
   the floor's support is then part of the root's residual; the reference's penetration of the
   floor and of itself is reported either way.
5. **Actuator forces**: bounded least squares ``min |moment.T f - qfrc|`` over forces the
   actuators can produce (activation within the control range: ``|f| <= gain`` for the rodent's
   torque actuators), with the moment matrix of the current configuration. When the actuators'
   moment rows are orthogonal (as for the rodent: each joint actuator moves one hinge, each tendon
   actuator its own set) this is a per-actuator clip of the unconstrained solution; otherwise
   ``scipy.optimize.lsq_linear``.
6. **Inverting the activation filter** (``dyntype`` filter: ``dw/dt = (u - w) / tau``, tau 40 ms
   for the rodent; MuJoCo advances it with ``w' = w + (u - w) * h / tau`` under ``filter`` and
   ``w' = w + (u - w)(1 - exp(-h/tau))`` under ``filterexact``; ``actearly`` is off, so the
   force of step k uses w[k]). Required activations w*[k] = (f*[k] - bias) / gain. With
   ``control_hold="frame"`` (default) one control per frame is held over its n physics steps, as
   the controller does: the control u minimising ``sum_j (w[s+j] - w*[s+j])^2`` over the steps
   j = 1..n it affects, in closed form ``u = w + sum_j c_j (w*_j - w) / sum_j c_j^2`` with
   ``c_j = 1 - (1 - rate)^j``, clipped to the control range. With ``control_hold="step"`` one
   control per physics step (``u = w + (w*[k+1] - w) / rate``, clipped): the smallest residual
   while the control range does not bind; on jittery data it often does (``|u| <= 1`` caps how
   fast the activation can move), and this greedy step-by-step choice then lags more than the
   frame-wise least squares.
   The activation is then simulated forward exactly as MuJoCo does, so the recorded activations
   and actuator forces are those a replay produces.
7. **Residual** = generalised force - ``moment.T @`` actuator force (nv): the root's 6 degrees
   of freedom (no actuator), the hinge directions no actuator spans (38 actuators for 67 hinges),
   and what bounds or the filter's lag kept the actuators from delivering. Its size is reported
   per group (``InverseDynamicsReport``).

Replaying the physics steps (``replay_inverse_dynamics``) with ``qfrc_applied`` = generalised
forces, or with the controls through the actuators plus ``qfrc_applied`` = residual, reproduces
the reference (see the tests for the errors reached).

Units: metres, radians, seconds, newtons (N for root translation, N m for rotations and hinges).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import mujoco
import numpy as np
from scipy.interpolate import CubicSpline
from scipy.signal import savgol_filter

from ..body_model import BodyModel
from ..storage import release, scratch_array
from .physics import (
    ActuatorDynamics,
    actuator_dynamics,
    as_mjmodel,
    moment_matrix,
    root_dofs,
    simulation_model,
    steps_per_frame,
)

__all__ = [
    "InverseDynamicsConfig",
    "InverseDynamicsReport",
    "InverseDynamicsResult",
    "PhysicsSteps",
    "check_reference_qpos",
    "replay_inverse_dynamics",
    "run_inverse_dynamics",
]

CONTROL_HOLDS = ("frame", "step")
RESIDUAL_GROUPS = ("root_translation", "root_rotation", "joints_actuated", "joints_unactuated")
_SPLINE_MARGIN = 16  # frames of spline context on each side of a block
_DEEP_CONTACT = 1e-3  # m: penetration beyond which the report counts a frame as deep contact


@dataclass(frozen=True)
class InverseDynamicsConfig:
    """Parameters of the inverse-dynamics replay.

    Attributes:
        timestep: physics step, seconds; None = the model's (2 ms for the rodent). The frame
            period must be a whole number of steps.
        smoothing_window: Savitzky–Golay window, frames (odd; 1 = no smoothing).
        smoothing_polyorder: Savitzky–Golay polynomial order (< smoothing_window).
        control_hold: ``"frame"`` (one control per reference frame, held over its physics steps,
            as the closed-loop controller acts) or ``"step"`` (one control per physics step).
        keep_steps: also return every physics step (``InverseDynamicsResult.steps``), needed to
            replay; memory grows with steps x nv.
        block_frames: frames processed at once (bounds memory on long sessions).
        n_workers: processes that compute the blocks' trajectories, inverse dynamics and
            penetration (spawned; 1 = all in this process). The activation filter, which
            carries from one block to the next, is inverted here in order; the results do not
            depend on ``n_workers`` (bit for bit: each block is computed by the same code on
            the same numbers). A script that runs it with ``n_workers > 1`` needs the usual
            ``if __name__ == "__main__":`` guard.
        contacts: include contact forces (floor, self-contacts) in the inverse dynamics.
            Default ``False``: contacts are disabled (``mjDSBL_CONTACT``), the body is treated
            as free, and the support of the floor ends up in the root's residual (about the body
            weight: the usual "residual force" of biomechanics without force plates). Registered
            poses are not contact-consistent (STAC's feet sit millimetres into the floor, its
            unfitted tail deeper), and the rodent's contacts are stiff (``solref`` 5 ms): with
            ``True``, ``mj_inverse`` turns penetration and kinematic noise into contact forces of
            hundreds of newtons (and actuator activations saturating against them). Use
            ``True`` for contact-consistent references. Joint limits are kept either way.
    """

    timestep: float | None = None
    smoothing_window: int = 7
    smoothing_polyorder: int = 3
    control_hold: str = "frame"
    keep_steps: bool = False
    block_frames: int = 500
    contacts: bool = False
    n_workers: int = 1

    def __post_init__(self):
        w, p = int(self.smoothing_window), int(self.smoothing_polyorder)
        if w < 1 or (w > 1 and w % 2 == 0):
            raise ValueError(
                f"InverseDynamicsConfig.smoothing_window: must be odd and >= 1, got {self.smoothing_window!r}"
            )
        if w > 1 and not 0 <= p < w:
            raise ValueError(
                f"InverseDynamicsConfig.smoothing_polyorder: must be in [0, {w - 1}], got {self.smoothing_polyorder!r}"
            )
        if self.control_hold not in CONTROL_HOLDS:
            raise ValueError(
                f"InverseDynamicsConfig.control_hold: expected one of {CONTROL_HOLDS}, got {self.control_hold!r}"
            )
        if int(self.n_workers) < 1:
            raise ValueError(f"InverseDynamicsConfig.n_workers: must be >= 1, got {self.n_workers!r}")
        if int(self.block_frames) < 2:
            raise ValueError(f"InverseDynamicsConfig.block_frames: must be >= 2, got {self.block_frames!r}")
        if self.timestep is not None and not (np.isfinite(self.timestep) and self.timestep > 0):
            raise ValueError(f"InverseDynamicsConfig.timestep: must be > 0 seconds, got {self.timestep!r}")

    def to_dict(self) -> dict:
        """Plain parameters (for provenance attributes)."""
        return asdict(self)


@dataclass(frozen=True)
class InverseDynamicsReport:
    """Size of the residual, over every physics step.

    Groups of generalised-force directions (``RESIDUAL_GROUPS``): ``root_translation`` (N) and
    ``root_rotation`` (N m), the free root's 6 degrees of freedom; ``joints_actuated`` (N m), the
    hinge directions the actuators span (the row space of the moment matrix); and
    ``joints_unactuated`` (N m), the hinge directions orthogonal to it.

    Attributes:
        n_steps: physics steps summarised.
        generalized_rms: group -> ``sqrt(mean over steps of |f_group|^2)``, generalised force.
        residual_rms: group -> the same for the residual.
        residual_share: group -> residual_rms / generalized_rms (0 when both are 0): the share of
            the force in that group the actuators do not supply.
        residual_max: group -> largest ``|residual|`` of one degree of freedom in the group.
        joints_residual_share: residual share over all hinge directions together.
        saturated_fraction: share of (step, actuator) where the least-squares force hit its bound.
        rate_limited_fraction: share of controls clipped to the control range (the filter could
            not follow the required activation).
        max_penetration: deepest contact (floor or self) of the smoothed reference frames,
            metres, whether or not contacts enter the inverse dynamics.
        deep_contact_fraction: share of frames with a contact deeper than 1 mm. With
            ``contacts=True``, a reference that penetrates the floor makes the soft contacts push
            back hard (stiff for the rodent: ``solref`` 5 ms), and those forces are in the
            generalised force and its residual.
    """

    n_steps: int
    generalized_rms: dict
    residual_rms: dict
    residual_share: dict
    residual_max: dict
    joints_residual_share: float
    saturated_fraction: float
    rate_limited_fraction: float
    max_penetration: float = 0.0
    deep_contact_fraction: float = 0.0
    units: dict = field(
        default_factory=lambda: {
            "root_translation": "N",
            "root_rotation": "N m",
            "joints_actuated": "N m",
            "joints_unactuated": "N m",
        }
    )

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """A few lines for people."""
        lines = [f"inverse dynamics over {self.n_steps} physics steps"]
        for g in RESIDUAL_GROUPS:
            lines.append(
                f"  {g:18s} generalised RMS {self.generalized_rms[g]:.4g} {self.units[g]}, "
                f"residual RMS {self.residual_rms[g]:.4g} ({100 * self.residual_share[g]:.1f}%)"
            )
        lines.append(
            f"  hinges: residual share {100 * self.joints_residual_share:.1f}%, "
            f"saturated {100 * self.saturated_fraction:.1f}%, "
            f"controls clipped {100 * self.rate_limited_fraction:.1f}%"
        )
        lines.append(
            f"  reference penetration (floor, self): deepest {1e3 * self.max_penetration:.2f} mm, "
            f"frames deeper than 1 mm {100 * self.deep_contact_fraction:.1f}%"
        )
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class PhysicsSteps:
    """Every physics step of an inverse-dynamics replay (K = (T - 1) * n + 1 steps; step
    k = i * n is frame i). Fields as in ``InverseDynamicsResult``, per step; ``time`` (K,) in
    seconds from the first frame."""

    time: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    qacc: np.ndarray
    generalized_forces: np.ndarray
    actuator_forces: np.ndarray
    actuator_activations: np.ndarray
    actuator_controls: np.ndarray
    residual_forces: np.ndarray


@dataclass(frozen=True, eq=False)
class InverseDynamicsResult:
    """Result of ``run_inverse_dynamics``, sampled at the T reference frames (frame i at
    ``i / frame_rate`` seconds from the first frame, physics step ``i * steps_per_frame``).

    Attributes:
        qpos: (T, nq) the smoothed reference that was replayed (columns of the body model).
        qvel: (T, nv) the simulator's velocity at each frame (difference over the step that
            ends at the frame), m/s and rad/s.
        qacc: (T, nv) central second difference at the frame, m/s^2 and rad/s^2.
        generalized_forces: (T, nv) ``qfrc_inverse``: actuator + external forces needed.
        actuator_forces: (T, nu) force of each actuator at the frame (N m for the rodent).
        actuator_activations: (T, na) activation state at the frame (``data.act``).
        actuator_controls: (T, nu) controls in [-1, 1] applied from the frame on (with
            ``control_hold="frame"`` held until the next frame; with ``"step"`` the first of
            the frame's steps).
        residual_forces: (T, nv) generalised - moment.T @ actuator forces.
        frame_rate: Hz; timestep: physics step, s; steps_per_frame: n.
        report: the residual's size over all physics steps.
        penetration: (T,) deepest contact (floor or self-contact) at each frame, metres (0: none).
        steps: every physics step when ``config.keep_steps``, else None.
        qpos_names, qvel_names, actuator_names: column names.
        config: the configuration used.
    """

    qpos: np.ndarray
    qvel: np.ndarray
    qacc: np.ndarray
    generalized_forces: np.ndarray
    actuator_forces: np.ndarray
    actuator_activations: np.ndarray
    actuator_controls: np.ndarray
    residual_forces: np.ndarray
    frame_rate: float
    timestep: float
    steps_per_frame: int
    report: InverseDynamicsReport
    penetration: np.ndarray
    steps: PhysicsSteps | None
    qpos_names: tuple[str, ...]
    qvel_names: tuple[str, ...]
    actuator_names: tuple[str, ...]
    config: InverseDynamicsConfig

    @property
    def n_frames(self) -> int:
        return len(self.qpos)


ProgressCallback = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# Input checks and the smoothed reference
# --------------------------------------------------------------------------------------------


def check_reference_qpos(qpos: np.ndarray, model: BodyModel | mujoco.MjModel, name: str = "qpos") -> np.ndarray:
    """(T, nq) float array of finite poses, or ValueError in one line naming the problem."""
    model = as_mjmodel(model)
    q = np.asarray(qpos, dtype=float)
    if q.ndim != 2 or q.shape[1] != model.nq:
        raise ValueError(f"{name}: expected shape (frames, {model.nq}), got {q.shape}")
    if len(q) < 2:
        raise ValueError(f"{name}: needs at least 2 frames, got {len(q)}")
    bad = ~np.isfinite(q).all(axis=1)
    if bad.any():
        frames = np.flatnonzero(bad)
        shown = ", ".join(map(str, frames[:5])) + (", ..." if len(frames) > 5 else "")
        raise ValueError(
            f"{name}: {len(frames)} frame(s) contain NaN or inf (frames {shown}); the reference "
            "must be a stretch of valid registered frames"
        )
    for adr in _quat_adrs(model):
        norms = np.linalg.norm(q[:, adr : adr + 4], axis=1)
        if (norms < 1e-6).any():
            raise ValueError(f"{name}: zero quaternion in columns {adr}..{adr + 3} at frame {np.argmax(norms < 1e-6)}")
    return q


def _quat_adrs(model: mujoco.MjModel) -> list[int]:
    adrs = []
    for j in range(model.njnt):
        t = model.jnt_type[j]
        if t == int(mujoco.mjtJoint.mjJNT_FREE):
            adrs.append(int(model.jnt_qposadr[j]) + 3)
        elif t == int(mujoco.mjtJoint.mjJNT_BALL):
            adrs.append(int(model.jnt_qposadr[j]))
    return adrs


def _normalize_quats(q: np.ndarray, adrs: list[int]) -> None:
    for a in adrs:
        q[..., a : a + 4] /= np.linalg.norm(q[..., a : a + 4], axis=-1, keepdims=True)


def smooth_qpos(qpos: np.ndarray, model: mujoco.MjModel, window: int, polyorder: int) -> np.ndarray:
    """Savitzky–Golay smoothing of qpos along frames, quaternions sign-continuous and unit."""
    q = np.array(qpos, dtype=float)
    adrs = _quat_adrs(model)
    _normalize_quats(q, adrs)
    for a in adrs:  # choose the sign of each quaternion closest to the previous frame's
        quat = q[:, a : a + 4]
        flips = np.cumsum(np.einsum("ij,ij->i", quat[1:], quat[:-1]) < 0) % 2
        quat[1:][flips == 1] *= -1
    if window > 1:
        if len(q) < window:
            raise ValueError(f"qpos: {len(q)} frames, fewer than the smoothing window ({window} frames)")
        q = savgol_filter(q, window, polyorder, axis=0, mode="interp")
        _normalize_quats(q, adrs)
    return q


# --------------------------------------------------------------------------------------------
# The replay
# --------------------------------------------------------------------------------------------


def run_inverse_dynamics(
    qpos: np.ndarray,
    body_model: BodyModel | mujoco.MjModel,
    frame_rate: float,
    config: InverseDynamicsConfig | None = None,
    *,
    initial_activation: np.ndarray | None = None,
    progress: ProgressCallback | None = None,
    scratch=None,
) -> InverseDynamicsResult:
    """Forces, activations and controls that replay registered poses.

    Args:
        qpos: (T, nq) registered poses at ``frame_rate`` (e.g. ``StacResult.qpos``), no NaN.
        body_model: the body model (its actuators: ``build_body_model(actuators="torque")``).
        frame_rate: reference frame rate, Hz.
        config: parameters (default ``InverseDynamicsConfig()``).
        initial_activation: (na,) activation state at the first frame; default the activation
            its required force asks for.
        progress: called as ``progress(frames_done, frames_total)`` after each block.
        scratch: a folder: the per-frame results are written there block by block (unlinked
            temporary files, ``mimic_nwb.storage.scratch_array``) instead of being held in
            memory; the result's arrays are memory maps of them. The numbers are the same.

    Returns:
        an InverseDynamicsResult (see the module docstring for the method).

    Raises:
        ValueError: bad shapes, NaN or inf in qpos, a timestep that does not divide the frame
            period, actuators of a kind that cannot be inverted.
    """
    config = config or InverseDynamicsConfig()
    model = _id_model(body_model, config)
    q_frames = check_reference_qpos(qpos, model)
    h = model.opt.timestep
    n = steps_per_frame(frame_rate, h)
    dyn = actuator_dynamics(model)
    q_smooth = smooth_qpos(q_frames, model, int(config.smoothing_window), int(config.smoothing_polyorder))
    del q_frames  # a checked copy of qpos: only the smoothed one is used from here on
    n_frames = len(q_smooth)
    n_steps = (n_frames - 1) * n + 1
    hold = n if config.control_hold == "frame" else 1
    if initial_activation is not None:
        initial_activation = np.asarray(initial_activation, dtype=float)
        if initial_activation.shape != (model.na,) or not np.isfinite(initial_activation).all():
            raise ValueError(
                f"initial_activation: expected {model.na} finite values, got shape {initial_activation.shape}"
            )

    out = _Frames(n_frames, model, scratch)
    keep = _Steps(n_steps, model) if config.keep_steps else None
    stats = _Stats(model)
    penetration = np.empty(n_frames)
    w = None  # activation state per actuator (nu,), "activation" = control for stateless ones
    block = int(config.block_frames)
    starts = range(0, n_frames, block)
    jobs = (_block_job(q_smooth, n, a, min(a + block, n_frames)) for a in starts)
    with _BlockWorkers(model, simulation_model(body_model), int(config.n_workers)) as workers:
        for a, (qk, vk, ak, ids, block_penetration) in zip(starts, workers.map(jobs)):
            b = min(a + block, n_frames)
            k0, k1 = a * n, min(b * n, n_steps - 1)  # steps of this block: [k0, k1) (+ the last)
            last_block = b == n_frames
            penetration[a:b] = block_penetration
            if w is None:
                w = _initial_w(dyn, ids["w_star"][0], initial_activation)
            stop = n_steps if last_block else k1  # steps whose activation/force we settle here
            w_steps, ctrl_steps, w = _invert_filter(dyn, ids["w_star"], w, k0, stop, hold)
            forces = np.clip(
                ids["gain"][: stop - k0] * w_steps + ids["bias"][: stop - k0],
                dyn.force_range[:, 0],
                dyn.force_range[:, 1],
            )
            qfrc = ids["qfrc"][: stop - k0]
            moment_id = ids["moment_id"][: stop - k0]
            residual = qfrc - _generalized_actuator_force(forces, moment_id, ids["moments"])
            act = w_steps[:, dyn.stateful]  # data.act order: actuator order (actadr increasing)
            stats.add(qfrc, residual, moment_id, ids["moments"], ids["saturated"][: stop - k0], ctrl_steps["clipped"])
            sel = np.arange(k0, stop)
            at_frame = sel % n == 0
            fi = sel[at_frame] // n
            out.qpos[fi] = qk[1:-1][: stop - k0][at_frame]
            out.qvel[fi] = vk[: stop - k0][at_frame]
            out.qacc[fi] = ak[: stop - k0][at_frame]
            out.qfrc[fi] = qfrc[at_frame]
            out.force[fi] = forces[at_frame]
            out.act[fi] = act[at_frame]
            out.ctrl[fi] = ctrl_steps["ctrl"][at_frame]
            out.residual[fi] = residual[at_frame]
            out.release()
            if keep is not None:
                keep.fill(
                    sel,
                    qk[1:-1][: stop - k0],
                    vk[: stop - k0],
                    ak[: stop - k0],
                    qfrc,
                    forces,
                    act,
                    ctrl_steps["ctrl"],
                    residual,
                )
            if progress is not None:
                progress(b, n_frames)

    names = _names(body_model, model)
    return InverseDynamicsResult(
        qpos=out.qpos,
        qvel=out.qvel,
        qacc=out.qacc,
        generalized_forces=out.qfrc,
        actuator_forces=out.force,
        actuator_activations=out.act,
        actuator_controls=out.ctrl,
        residual_forces=out.residual,
        frame_rate=float(frame_rate),
        timestep=float(h),
        steps_per_frame=n,
        report=stats.report(penetration),
        penetration=penetration,
        steps=keep.result(h) if keep else None,
        qpos_names=names[0],
        qvel_names=names[1],
        actuator_names=names[2],
        config=config,
    )


def frame_penetration(model: mujoco.MjModel, qpos: np.ndarray) -> np.ndarray:
    """(T,) deepest contact penetration (m, >= 0) of each pose, floor and self-contacts (the
    model's contact filtering applies)."""
    data = mujoco.MjData(model)
    out = np.zeros(len(qpos))
    for t, q in enumerate(qpos):
        data.qpos[:] = q
        mujoco.mj_fwdPosition(model, data)  # kinematics and collision detection
        if data.ncon:
            out[t] = max(0.0, -float(data.contact.dist[: data.ncon].min()))
    return out


def _id_model(body_model, config: InverseDynamicsConfig) -> mujoco.MjModel:
    model = simulation_model(body_model, config.timestep)
    if not config.contacts:
        model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT)
    return model


def _names(body_model, model):
    if isinstance(body_model, BodyModel):
        return body_model.qpos_names, body_model.qvel_names, body_model.actuator_names
    from ..body_model import column_names  # same naming as the body model builder

    qn, _, vn, _ = column_names(model)
    return tuple(qn), tuple(vn), tuple(model.actuator(i).name for i in range(model.nu))


def _spline_frames(n_frames, n, k_first, k_last):
    """Frames [f0, f1) of the spline through which steps k_first..k_last are interpolated."""
    f0 = max(0, k_first // n - _SPLINE_MARGIN)
    f1 = min(n_frames, -(-k_last // n) + _SPLINE_MARGIN + 1)
    return f0, f1


def _fine_trajectory(q_frames, model, n, h, k_first, k_last, first_frame=0, n_frames=None):
    """Interpolated qpos at steps k_first..k_last (inclusive; may reach one step beyond either
    end, extrapolated by the spline), and v (from k_first + 1) and a (from k_first + 1 to
    k_last - 1) by manifold differences. ``q_frames`` may be a window of the reference that
    starts at frame ``first_frame`` (of ``n_frames``) and holds the frames of `_spline_frames`."""
    n_frames = len(q_frames) if n_frames is None else n_frames
    f0, f1 = _spline_frames(n_frames, n, k_first, k_last)
    frames = np.arange(f0, f1)
    window = q_frames[f0 - first_frame : f1 - first_frame]
    if len(frames) >= 2:
        spline = CubicSpline(frames * n * h, window, axis=0, bc_type="not-a-knot" if len(frames) > 3 else "natural")
        q = spline(np.arange(k_first, k_last + 1) * h)
    else:  # pragma: no cover - run_inverse_dynamics needs 2 frames
        q = np.repeat(window, k_last - k_first + 1, axis=0)
    _normalize_quats(q, _quat_adrs(model))
    v = np.empty((len(q) - 1, model.nv))
    for i in range(len(q) - 1):
        mujoco.mj_differentiatePos(model, v[i], h, q[i], q[i + 1])
    a = np.diff(v, axis=0) / h
    return q, v, a


class _ActuatorSolver:
    """Bounded least squares of actuator forces on the generalised force, per step."""

    def __init__(self, model: mujoco.MjModel, dyn: ActuatorDynamics):
        self.model, self.dyn = model, dyn
        self.data = mujoco.MjData(model)
        self._moment = np.zeros((model.nu, model.nv))
        self._cached = None  # (moment, row norms^2, orthogonal)

    def rows(self, moment):
        c = self._cached
        if c is None or not np.array_equal(c[0], moment):
            gram = moment @ moment.T
            off = gram - np.diag(np.diag(gram))
            orth = np.abs(off).max(initial=0.0) <= 1e-12 * max(np.abs(gram).max(initial=0.0), 1e-300)
            c = self._cached = (moment.copy(), np.diag(gram).copy(), bool(orth))
        return c

    def solve(self, moment, qfrc, lo, hi):
        _, norms2, orth = self.rows(moment)
        if orth:
            with np.errstate(divide="ignore", invalid="ignore"):
                f = np.where(norms2 > 0, moment @ qfrc / norms2, 0.0)
        else:
            from scipy.optimize import lsq_linear

            lo_f = np.where(np.isfinite(lo), lo, -1e30)
            hi_f = np.where(np.isfinite(hi), hi, 1e30)
            f = lsq_linear(moment.T, qfrc, bounds=(lo_f, hi_f), method="bvls").x
        fc = np.clip(f, lo, hi)
        return fc, fc != f


def _force_bounds(dyn: ActuatorDynamics, gain, bias):
    a, b = gain * dyn.act_range[:, 0] + bias, gain * dyn.act_range[:, 1] + bias
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return np.maximum(lo, dyn.force_range[:, 0]), np.minimum(hi, dyn.force_range[:, 1])


def _inverse_block(model, solver: _ActuatorSolver, q, v, a):
    """mj_inverse at each step; required activations from the bounded least-squares forces."""
    dyn, d = solver.dyn, solver.data
    k = len(a)
    out = {
        "qfrc": np.empty((k, model.nv)),
        "moment_id": np.empty(k, dtype=int),
        "gain": np.empty((k, model.nu)),
        "bias": np.empty((k, model.nu)),
        "w_star": np.empty((k, model.nu)),
        "saturated": np.zeros((k, model.nu), dtype=bool),
    }
    moments = []  # distinct moment matrices (one for joint and fixed-tendon transmissions)
    moment = np.zeros((model.nu, model.nv))
    for i in range(k):
        d.qpos[:], d.qvel[:], d.qacc[:] = q[i], v[i], a[i]
        mujoco.mj_inverse(model, d)
        out["qfrc"][i] = d.qfrc_inverse
        moment_matrix(model, d, moment)
        if not moments or not np.array_equal(moments[-1], moment):
            moments.append(moment.copy())
        out["moment_id"][i] = len(moments) - 1
        gain, bias = dyn.gain_bias(d)
        lo, hi = _force_bounds(dyn, gain, bias)
        f, sat = solver.solve(moment, d.qfrc_inverse, lo, hi)
        out["gain"][i], out["bias"][i], out["saturated"][i] = gain, bias, sat
        with np.errstate(divide="ignore", invalid="ignore"):
            out["w_star"][i] = np.where(gain != 0, (f - bias) / gain, 0.0)
    out["w_star"] = np.clip(out["w_star"], dyn.act_range[:, 0], dyn.act_range[:, 1])
    out["moments"] = moments
    return out


def _generalized_actuator_force(forces, moment_id, moments):
    """moment[k].T @ forces[k] for each step, grouped by distinct moment matrix."""
    out = np.empty((len(forces), moments[0].shape[1]))
    for m_id, m in enumerate(moments):
        sel = moment_id == m_id
        if sel.any():
            out[sel] = forces[sel] @ m
    return out


def _initial_w(dyn: ActuatorDynamics, w_star0, initial_activation):
    w = np.array(w_star0, dtype=float)
    if initial_activation is not None:
        w[dyn.stateful] = initial_activation[dyn.act_index[dyn.stateful]]
    return w


def _invert_filter(dyn: ActuatorDynamics, w_star, w, k0, stop, hold):
    """Controls for steps k0..stop-1 from required activations w_star (steps k0.., one row per
    step, at least to min(stop + hold - 1, last step)); returns the activation of each step
    (before its update), the controls, and the activation after the last step.

    A control block starts at every multiple of ``hold``; stateful actuators choose u to
    track w* over the steps it affects; stateless ones take the mean w* of the steps it acts on.
    """
    k = stop - k0
    nu = len(w)
    ws = np.empty((k, nu))
    ctrl = np.empty((k, nu))
    clipped = np.zeros((k, nu), dtype=bool)
    lo, hi = dyn.ctrl_range[:, 0], dyn.ctrl_range[:, 1]
    rate, st = dyn.rate, dyn.stateful
    n_rows = len(w_star)
    j = np.arange(1, hold + 1)
    coef_all = 1.0 - (1.0 - rate[None, :]) ** j[:, None]  # (hold, nu) effect of u on w[s + j]
    s = k0
    while s < stop:
        L = min(hold, stop - s)
        r0 = s - k0
        # targets after the control: w*[s+1..s+hold]; beyond the data, hold the last row
        idx = np.minimum(np.arange(r0 + 1, r0 + hold + 1), n_rows - 1)
        target = w_star[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            u_st = w + (coef_all * (target - w)).sum(0) / (coef_all**2).sum(0)
        idx0 = np.minimum(np.arange(r0, r0 + hold), n_rows - 1)
        u_sl = w_star[idx0].mean(0)
        u = np.where(st, u_st, u_sl)
        uc = np.clip(u, lo, hi)
        for i in range(L):
            ws[r0 + i] = np.where(st, w, uc)
            ctrl[r0 + i] = uc
            clipped[r0 + i] = uc != u
            w = np.where(st, w + (uc - w) * rate, w)
        s += L
    return ws, {"ctrl": ctrl, "clipped": clipped}, w


class _Frames:
    """Per-frame results, in memory or (``scratch``: a folder) in scratch files."""

    def __init__(self, n_frames, model, scratch=None):
        def array(columns):
            shape = (n_frames, columns)
            return np.empty(shape) if scratch is None else scratch_array(shape, np.float64, scratch)

        self.qpos = array(model.nq)
        self.qvel = array(model.nv)
        self.qacc = array(model.nv)
        self.qfrc = array(model.nv)
        self.force = array(model.nu)
        self.act = array(model.na)
        self.ctrl = array(model.nu)
        self.residual = array(model.nv)

    def release(self):
        """Hand the rows written so far back to the scratch files (no-op in memory)."""
        for values in vars(self).values():
            release(values)


# --- blocks of frames, in this process or in worker processes ------------------------------------


def _block_job(q_smooth, n, a, b):
    """What a block of frames a..b-1 needs: its window of the smoothed reference and its steps."""
    n_frames = len(q_smooth)
    n_steps = (n_frames - 1) * n + 1
    k0, k1 = a * n, min(b * n, n_steps - 1)
    k_end = n_steps - 1 if b == n_frames else k1  # inverse dynamics for steps k0..k_end
    f0, f1 = _spline_frames(n_frames, n, k0 - 1, k_end + 1)
    return dict(
        window=q_smooth[f0:f1],
        first_frame=f0,
        n_frames=n_frames,
        steps_per_frame=n,
        k_first=k0 - 1,
        k_last=k_end + 1,
        frames=q_smooth[a:b],
    )


def _run_block(job, model, contact_model, solver):
    """The block's interpolated steps (q, v, a), their inverse dynamics, and its frames' penetration."""
    h = model.opt.timestep
    qk, vk, ak = _fine_trajectory(
        job["window"],
        model,
        job["steps_per_frame"],
        h,
        job["k_first"],
        job["k_last"],
        job["first_frame"],
        job["n_frames"],
    )
    ids = _inverse_block(model, solver, qk[1:-1], vk[:-1], ak)
    return qk, vk, ak, ids, frame_penetration(contact_model, job["frames"])


_WORKER = {}


def _init_block_worker(model, contact_model):
    _WORKER.update(model=model, contact_model=contact_model, solver=_ActuatorSolver(model, actuator_dynamics(model)))


def _run_block_in_worker(job):
    return _run_block(job, _WORKER["model"], _WORKER["contact_model"], _WORKER["solver"])


class _BlockWorkers:
    """Computes blocks in order: here (``n_workers == 1``) or in spawned processes, with at most
    two blocks per worker in flight (so results waiting for the filter inversion stay few)."""

    def __init__(self, model, contact_model, n_workers):
        self.model, self.contact_model, self.n_workers = model, contact_model, n_workers
        self._pool = None

    def __enter__(self):
        if self.n_workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: safe whatever threads the caller runs (fork is not), as STAC's workers
            self._pool = ProcessPoolExecutor(
                self.n_workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_block_worker,
                initargs=(self.model, self.contact_model),
            )
        else:
            self._solver = _ActuatorSolver(self.model, actuator_dynamics(self.model))
        return self

    def map(self, jobs):
        if self._pool is None:
            for job in jobs:
                yield _run_block(job, self.model, self.contact_model, self._solver)
            return
        from collections import deque

        pending = deque()
        jobs = iter(jobs)
        for job in jobs:
            pending.append(self._pool.submit(_run_block_in_worker, job))
            if len(pending) >= 2 * self.n_workers:
                break
        while pending:
            result = pending.popleft().result()
            job = next(jobs, None)
            if job is not None:
                pending.append(self._pool.submit(_run_block_in_worker, job))
            yield result

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(wait=exc[0] is None, cancel_futures=True)
        return False


class _Steps:
    def __init__(self, n_steps, model):
        self.arrays = {
            "qpos": np.empty((n_steps, model.nq)),
            "qvel": np.empty((n_steps, model.nv)),
            "qacc": np.empty((n_steps, model.nv)),
            "generalized_forces": np.empty((n_steps, model.nv)),
            "actuator_forces": np.empty((n_steps, model.nu)),
            "actuator_activations": np.empty((n_steps, model.na)),
            "actuator_controls": np.empty((n_steps, model.nu)),
            "residual_forces": np.empty((n_steps, model.nv)),
        }

    def fill(self, sel, q, v, a, qfrc, force, act, ctrl, residual):
        for key, val in zip(self.arrays, (q, v, a, qfrc, force, act, ctrl, residual)):
            self.arrays[key][sel] = val

    def result(self, h):
        n = len(self.arrays["qpos"])
        return PhysicsSteps(time=np.arange(n) * h, **self.arrays)


class _Stats:
    """Running sums of squares per group of directions."""

    def __init__(self, model):
        root = root_dofs(model)
        self.trans = np.zeros(model.nv, dtype=bool)
        self.rot = np.zeros(model.nv, dtype=bool)
        for j in np.flatnonzero(model.jnt_type == int(mujoco.mjtJoint.mjJNT_FREE)):
            adr = model.jnt_dofadr[j]
            self.trans[adr : adr + 3] = True
            self.rot[adr + 3 : adr + 6] = True
        self.joints = ~root
        self.sums = {g: [0.0, 0.0] for g in RESIDUAL_GROUPS}  # generalised, residual
        self.maxima = dict.fromkeys(RESIDUAL_GROUPS, 0.0)
        self.n = 0
        self.saturated = 0
        self.clipped = 0
        self.n_act = 0
        self._proj_cache = None

    def _projector(self, moment):
        # Orthogonal projector onto the actuated hinge directions (row space of the moment
        # matrix restricted to the non-root dofs).
        c = self._proj_cache
        if c is None or not np.array_equal(c[0], moment):
            mj = moment[:, self.joints]
            u, s, vt = np.linalg.svd(mj, full_matrices=False)
            basis = vt[s > 1e-10 * max(s.max(initial=0.0), 1e-300)]
            c = self._proj_cache = (moment.copy(), basis.T @ basis)
        return c[1]

    def add(self, qfrc, residual, moment_id, moments, saturated, clipped):
        self.n += len(qfrc)
        self.saturated += int(saturated.sum())
        self.clipped += int(clipped.sum())
        self.n_act += saturated.size
        for g, mask in (("root_translation", self.trans), ("root_rotation", self.rot)):
            self.sums[g][0] += float((qfrc[:, mask] ** 2).sum())
            self.sums[g][1] += float((residual[:, mask] ** 2).sum())
            if mask.any():
                self.maxima[g] = max(self.maxima[g], float(np.abs(residual[:, mask]).max()))
        fj, rj = qfrc[:, self.joints], residual[:, self.joints]
        for m_id, m in enumerate(moments):
            sel = moment_id == m_id
            if not sel.any():
                continue
            p = self._projector(m)
            f_act, r_act = fj[sel] @ p, rj[sel] @ p  # p is symmetric
            f_un, r_un = fj[sel] - f_act, rj[sel] - r_act
            for g, f, r in (("joints_actuated", f_act, r_act), ("joints_unactuated", f_un, r_un)):
                self.sums[g][0] += float((f**2).sum())
                self.sums[g][1] += float((r**2).sum())
                self.maxima[g] = max(self.maxima[g], float(np.abs(r).max(initial=0.0)))

    def report(self, penetration: np.ndarray) -> InverseDynamicsReport:
        n = max(self.n, 1)
        gen = {g: float(np.sqrt(s[0] / n)) for g, s in self.sums.items()}
        res = {g: float(np.sqrt(s[1] / n)) for g, s in self.sums.items()}
        share = {g: (res[g] / gen[g] if gen[g] > 0 else 0.0) for g in RESIDUAL_GROUPS}
        jf = self.sums["joints_actuated"][0] + self.sums["joints_unactuated"][0]
        jr = self.sums["joints_actuated"][1] + self.sums["joints_unactuated"][1]
        return InverseDynamicsReport(
            n_steps=self.n,
            generalized_rms=gen,
            residual_rms=res,
            residual_share=share,
            residual_max=dict(self.maxima),
            joints_residual_share=float(np.sqrt(jr / jf)) if jf > 0 else 0.0,
            saturated_fraction=self.saturated / max(self.n_act, 1),
            rate_limited_fraction=self.clipped / max(self.n_act, 1),
            max_penetration=float(penetration.max(initial=0.0)),
            deep_contact_fraction=float((penetration > _DEEP_CONTACT).mean()),
        )


# --------------------------------------------------------------------------------------------
# Replay (forward simulation of the result)
# --------------------------------------------------------------------------------------------


def replay_inverse_dynamics(
    body_model: BodyModel | mujoco.MjModel,
    result: InverseDynamicsResult,
    *,
    forces: str = "actuators",
    n_frames: int | None = None,
    restart_every: int | None = None,
) -> np.ndarray:
    """Forward-simulate an inverse-dynamics result from its first frame, open loop.

    Args:
        body_model: the model the result was computed for.
        result: computed with ``keep_steps=True``.
        forces: ``"generalized"``: actuators idle, ``qfrc_applied`` = generalised forces (checks
            qvel/qacc and ``mj_inverse``); ``"actuators"``: the controls through the actuators
            (activation filter included, from the recorded initial activation) plus
            ``qfrc_applied`` = residual (checks the actuator mapping and the filter inversion).
        n_frames: frames to simulate (default all).
        restart_every: restart from the recorded state (qpos, qvel, activation) every this many
            frames (1: every frame is simulated from the reference, as in open loop); None:
            never. Open-loop errors grow where the dynamics amplify them (contacts, joints held
            at a range limit); restarts separate the consistency of the forces from that growth.

    Returns:
        (n_frames, nq) simulated qpos at the frames (row 0 is the start state).
    """
    if forces not in ("generalized", "actuators"):
        raise ValueError(f"forces: expected 'generalized' or 'actuators', got {forces!r}")
    if result.steps is None:
        raise ValueError("result: has no physics steps (run with InverseDynamicsConfig(keep_steps=True))")
    model = _id_model(body_model, result.config)  # same timestep and contact setting
    if model.nq != result.qpos.shape[1]:
        raise ValueError(f"result: qpos has {result.qpos.shape[1]} columns, the model nq={model.nq}")
    n = result.steps_per_frame
    n_frames = result.n_frames if n_frames is None else min(int(n_frames), result.n_frames)
    s = result.steps
    d = mujoco.MjData(model)
    out = np.empty((n_frames, model.nq))
    out[0] = s.qpos[0]
    period = None if restart_every is None else int(restart_every) * n
    if period is not None and period < 1:
        raise ValueError(f"restart_every: must be >= 1 frame, got {restart_every!r}")
    for k in range((n_frames - 1) * n):
        if k == 0 or (period is not None and k % period == 0):
            d.qpos[:], d.qvel[:] = s.qpos[k], s.qvel[k]
            d.act[:] = s.actuator_activations[k] if forces == "actuators" else 0.0
        if forces == "generalized":
            d.qfrc_applied[:] = s.generalized_forces[k]
        else:
            d.ctrl[:] = s.actuator_controls[k]
            d.qfrc_applied[:] = s.residual_forces[k]
        mujoco.mj_step(model, d)
        if (k + 1) % n == 0:
            out[(k + 1) // n] = d.qpos
    return out

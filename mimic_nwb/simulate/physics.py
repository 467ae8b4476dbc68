"""Helpers shared by inverse dynamics and rollouts: the simulation model, its clock, actuators.

The body model's ``MjModel`` is shared with other stages and is never modified: every simulation
here runs on a private copy (``simulation_model``) with its own timestep and option flags.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import mujoco
import numpy as np

from ..body_model import BodyModel, as_mjmodel

__all__ = [
    "ActuatorDynamics",
    "actuator_dynamics",
    "moment_matrix",
    "root_dofs",
    "simulation_model",
    "steps_per_frame",
]

_DYN = mujoco.mjtDyn
# pybind11 enums do not compare equal to numpy integers: compare ints.
_SUPPORTED_DYN = tuple(int(d) for d in (_DYN.mjDYN_NONE, _DYN.mjDYN_FILTER, _DYN.mjDYN_FILTEREXACT))
_SUPPORTED_INTEGRATORS = tuple(
    int(i)
    for i in (
        mujoco.mjtIntegrator.mjINT_EULER,
        mujoco.mjtIntegrator.mjINT_IMPLICIT,
        mujoco.mjtIntegrator.mjINT_IMPLICITFAST,
    )
)


def simulation_model(body_model: BodyModel | mujoco.MjModel, timestep: float | None = None) -> mujoco.MjModel:
    """A private copy of the model for simulation, with ``timestep`` (seconds; None keeps the
    model's) and discrete-time inverse dynamics enabled (``invdiscrete``: ``mj_inverse`` reads
    ``qacc`` as ``(v[k+1] - v[k]) / h``, the velocity change of one step of the integrator, so the
    forces it returns reproduce the trajectory step for step; this flag does not change forward
    dynamics)."""
    model = copy.copy(as_mjmodel(body_model))  # MjModel copies are deep
    if timestep is not None:
        if not (np.isfinite(timestep) and timestep > 0):
            raise ValueError(f"timestep: must be > 0 seconds, got {timestep!r}")
        model.opt.timestep = float(timestep)
    model.opt.enableflags |= int(mujoco.mjtEnableBit.mjENBL_INVDISCRETE)
    if int(model.opt.integrator) not in _SUPPORTED_INTEGRATORS:
        name = mujoco.mjtIntegrator(model.opt.integrator).name
        raise ValueError(
            f"body model: integrator {name} is not supported here (Euler, implicit or implicitfast: "
            "discrete-time inverse dynamics needs a one-step integrator)"
        )
    return model


def steps_per_frame(frame_rate: float, timestep: float) -> int:
    """Physics steps per reference frame; the frame period must be a whole number of steps."""
    if not (np.isfinite(frame_rate) and frame_rate > 0):
        raise ValueError(f"frame_rate: must be > 0 Hz, got {frame_rate!r}")
    ratio = 1.0 / (frame_rate * timestep)
    n = int(round(ratio))
    if n < 1 or abs(ratio - n) > 1e-6 * ratio:
        raise ValueError(
            f"timestep: {timestep * 1e3:g} ms does not divide the frame period "
            f"{1e3 / frame_rate:g} ms ({frame_rate:g} Hz) into whole physics steps"
        )
    return n


def root_dofs(model: mujoco.MjModel) -> np.ndarray:
    """(nv,) bool: degrees of freedom of free joints (the root: 3 translations, 3 rotations)."""
    mask = np.zeros(model.nv, dtype=bool)
    for j in np.flatnonzero(model.jnt_type == int(mujoco.mjtJoint.mjJNT_FREE)):
        a = model.jnt_dofadr[j]
        mask[a : a + 6] = True
    return mask


def moment_matrix(model: mujoco.MjModel, data: mujoco.MjData, out: np.ndarray | None = None) -> np.ndarray:
    """(nu, nv) dense actuator moment matrix at the current state (after ``mj_fwdPosition`` or
    ``mj_inverse``). MuJoCo (>= 3.1) stores it sparse, by rows: ``actuator_moment`` with
    ``moment_rownnz``, ``moment_rowadr``, ``moment_colind``; the generalised actuator force is
    ``moment.T @ actuator_force``."""
    if out is None:
        out = np.zeros((model.nu, model.nv))
    if model.nu:
        mujoco.mju_sparse2dense(out, data.actuator_moment, data.moment_rownnz, data.moment_rowadr, data.moment_colind)
    return out


@dataclass(frozen=True)
class ActuatorDynamics:
    """What turns a control into an actuator force, per actuator (nu,).

    force = gain * w + bias, where w is the activation (filtered control) for stateful actuators
    and the control itself for the others; gain and bias may depend on the actuator length and
    velocity (``gain_affine``/``bias_affine`` rows of ``[p0, p1, p2]``: p0 + p1 * length + p2 *
    velocity). The first-order filter (``dyntype`` filter, time constant tau) advances one
    physics step h as ``w' = w + (u - w) * rate``, with rate = h / tau for ``filter`` (MuJoCo's
    Euler update of ``dw/dt = (u - w) / tau``) and 1 - exp(-h / tau) for ``filterexact``.

    Attributes:
        stateful: (nu,) bool, actuators with an activation (filter / filterexact).
        act_index: (nu,) index into ``data.act`` (-1 for stateless actuators).
        rate: (nu,) per-step filter rate (1 for stateless: the control acts at once).
        tau: (nu,) time constants, seconds (0 for stateless).
        ctrl_range: (nu, 2) control bounds (+-inf where not limited).
        act_range: (nu, 2) reachable activations: the control range, narrowed by ``actrange``.
        force_range: (nu, 2) force bounds where ``forcelimited`` (+-inf elsewhere).
        gain_affine, bias_affine: (nu, 3).
        kinds: (nu,) MuJoCo dyntype names.
    """

    stateful: np.ndarray
    act_index: np.ndarray
    rate: np.ndarray
    tau: np.ndarray
    ctrl_range: np.ndarray
    act_range: np.ndarray
    force_range: np.ndarray
    gain_affine: np.ndarray
    bias_affine: np.ndarray
    kinds: tuple[str, ...]

    def gain_bias(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """(gain, bias) (nu,) at the current state (needs actuator_length / _velocity)."""
        lv = np.stack([np.ones_like(data.actuator_length), data.actuator_length, data.actuator_velocity], axis=1)
        return (self.gain_affine * lv).sum(1), (self.bias_affine * lv).sum(1)


def actuator_dynamics(model: mujoco.MjModel) -> ActuatorDynamics:
    """Read the actuator parameters; ValueError for kinds this package does not invert."""
    nu = model.nu
    h = model.opt.timestep
    stateful = np.zeros(nu, dtype=bool)
    rate = np.ones(nu)
    tau = np.zeros(nu)
    kinds = []
    for i in range(nu):
        dyn = int(model.actuator_dyntype[i])
        name = model.actuator(i).name or f"actuator{i}"
        if dyn not in _SUPPORTED_DYN:
            raise ValueError(
                f"actuator {name!r}: dyntype {_DYN(dyn).name} is not supported (none, filter or filterexact)"
            )
        if model.actuator_actearly[i]:
            raise ValueError(f"actuator {name!r}: actearly is not supported")
        gaintype, biastype = int(model.actuator_gaintype[i]), int(model.actuator_biastype[i])
        if gaintype not in (int(mujoco.mjtGain.mjGAIN_FIXED), int(mujoco.mjtGain.mjGAIN_AFFINE)):
            raise ValueError(f"actuator {name!r}: gaintype {mujoco.mjtGain(gaintype).name} is not supported")
        if biastype not in (int(mujoco.mjtBias.mjBIAS_NONE), int(mujoco.mjtBias.mjBIAS_AFFINE)):
            raise ValueError(f"actuator {name!r}: biastype {mujoco.mjtBias(biastype).name} is not supported")
        kinds.append(_DYN(dyn).name.removeprefix("mjDYN_").lower())
        if dyn != int(_DYN.mjDYN_NONE):
            t = float(model.actuator_dynprm[i, 0])
            if not t > 0:
                raise ValueError(f"actuator {name!r}: filter time constant must be > 0, got {t}")
            stateful[i] = True
            tau[i] = t
            rate[i] = h / t if dyn == int(_DYN.mjDYN_FILTER) else -np.expm1(-h / t)
            if rate[i] > 1:
                raise ValueError(
                    f"actuator {name!r}: filter time constant {t} s is shorter than the timestep "
                    f"{h} s (the Euler filter is unstable)"
                )
    inf = np.full(nu, np.inf)
    ctrl = np.where(
        model.actuator_ctrllimited[:, None].astype(bool), model.actuator_ctrlrange, np.stack([-inf, inf], 1)
    )
    act = ctrl.copy()
    actlim = model.actuator_actlimited.astype(bool) & stateful
    act[actlim, 0] = np.maximum(act[actlim, 0], model.actuator_actrange[actlim, 0])
    act[actlim, 1] = np.minimum(act[actlim, 1], model.actuator_actrange[actlim, 1])
    force = np.where(
        model.actuator_forcelimited[:, None].astype(bool), model.actuator_forcerange, np.stack([-inf, inf], 1)
    )
    gain = np.zeros((nu, 3))
    bias = np.zeros((nu, 3))
    gain[:, 0] = model.actuator_gainprm[:, 0]
    affine = model.actuator_gaintype == int(mujoco.mjtGain.mjGAIN_AFFINE)
    gain[affine, 1:] = model.actuator_gainprm[affine, 1:3]
    baff = model.actuator_biastype == int(mujoco.mjtBias.mjBIAS_AFFINE)
    bias[baff] = model.actuator_biasprm[baff, :3]
    act_index = np.full(nu, -1, dtype=int)
    act_index[stateful] = model.actuator_actadr[stateful]
    return ActuatorDynamics(
        stateful=stateful,
        act_index=act_index,
        rate=rate,
        tau=tau,
        ctrl_range=ctrl,
        act_range=act,
        force_range=force,
        gain_affine=gain,
        bias_affine=bias,
        kinds=tuple(kinds),
    )

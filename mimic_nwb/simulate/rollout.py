"""Closed-loop (and open-loop) imitation of a reference by the controller, in MuJoCo.

Pure core: a body model, a reference, a checkpoint and a config in; a ``RolloutResult`` of
arrays out, one row per reference frame.

Clock. Physics advances ``steps_per_frame`` steps of ``timestep`` (default the model's 2 ms: 10
steps per 50 Hz frame) per control step; the controller acts once per reference frame and its
control is held over the frame's physics steps.

Row i of every per-frame array describes reference frame ``frames[i]``:

- ``qpos``, ``qvel``, ``actuator_activations``: the simulated state at the frame, the one the
  controller observed (after a restart: the reference state);
- ``actuator_controls`` and every layer's activations: what the controller computed from it;
- ``actuator_forces``: the mean actuator force over the frame's physics steps (NaN on the last
  row, which is not simulated further);
- ``reward`` and ``reward_terms``: the reward earned by that control, evaluated on the state it
  led to at frame i+1 against reference frame i+1 (reinforcement-learning convention); NaN on the
  last row, which is not simulated further;
- ``tracking_error``: mean distance between the bodies and the reference's bodies at frame i, m
  (0 where the frame was (re)started from the reference);
- ``step_error``: the same for the state the control led to, at frame i+1 against reference
  frame i+1, before any restart (what termination tests; in open loop, the one-frame error);
  NaN on the last row.

Reward terms (each in [0, 1] before weighting; state s at frame i+1, reference r at frame i+1)::

    root_position     exp(-|p - p_r|^2 / root_position_scale^2)            (scale 0.05 m)
    root_orientation  exp(-angle(q, q_r)^2 / root_orientation_scale^2)     (0.5 rad)
    joint_angles      exp(-sum_j (q_j - q_rj)^2 / joint_angles_scale^2)    (2 rad)
    appendages        exp(-sum_b |x_b - x_rb|^2 / appendages_scale^2)      (0.05 m)
    control_cost      control_cost_weight * mean_a u_a^2                   (0.01)
    reward = sum of weight_k * term_k - control_cost                       (weights 1)

Episodes (closed loop). An episode starts from the reference state at its first frame
(qpos, qvel, and the reference's activation state, zero when it has none) with a zero LSTM state.
After each control step, if the episode has lasted at least ``min_episode_frames`` frames and the
tracking error of the new state exceeds ``termination_error``, the episode ends there and the
next starts from the reference at that frame (body, actuator activations and LSTM state reset),
as Aldarondo et al. did to imitate whole sessions. Open loop: every step starts from the
reference state at its frame (the body, and the activation when the reference has one); the
network's recurrent state runs on; one episode, never terminated.

Randomness: ``seed`` drives three independent streams (numpy ``SeedSequence(seed).spawn(3)``):
the latent sample, the action noise, and latent resampling, so turning resampling on does not
change the rollout. MuJoCo and the jitted network are deterministic on CPU: the same seed gives
the same rollout.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import mujoco
import numpy as np

from ..body_model import BodyModel
from ..controller.checkpoint import ControllerCheckpoint, check_checkpoint_compatible
from ..controller.observations import (
    BodyState,
    ObservationLayout,
    ReferenceKinematics,
    ReferenceTrajectory,
    proprioception,
    reference_features,
)
from ..controller.policy import ControllerPolicy
from .physics import as_mjmodel, simulation_model, steps_per_frame

__all__ = ["Episodes", "LatentResampling", "RewardConfig", "RolloutConfig", "RolloutResult",
           "run_rollout", "REWARD_TERMS", "ROLLOUT_MODES"]

ROLLOUT_MODES = ("closed_loop", "open_loop")
REWARD_TERMS = ("root_position", "root_orientation", "joint_angles", "appendages", "control_cost")
LATENT_MODES = ("sample", "mean")


@dataclass(frozen=True)
class RewardConfig:
    """Scales (in the terms' units) and weights of the reward terms (module docstring)."""

    root_position_scale: float = 0.05
    root_orientation_scale: float = 0.5
    joint_angles_scale: float = 2.0
    appendages_scale: float = 0.05
    control_cost_weight: float = 0.01
    weights: tuple[tuple[str, float], ...] = (
        ("root_position", 1.0), ("root_orientation", 1.0), ("joint_angles", 1.0), ("appendages", 1.0),
    )

    def __post_init__(self):
        for name in ("root_position_scale", "root_orientation_scale", "joint_angles_scale", "appendages_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"RewardConfig.{name}: must be > 0, got {getattr(self, name)!r}")
        if not self.control_cost_weight >= 0:
            raise ValueError(f"RewardConfig.control_cost_weight: must be >= 0, got {self.control_cost_weight!r}")
        for name, _ in self.weights:
            if name not in REWARD_TERMS[:-1]:
                raise ValueError(f"RewardConfig.weights: unknown term {name!r}")


@dataclass(frozen=True)
class RolloutConfig:
    """Parameters of a rollout.

    Attributes:
        mode: ``"closed_loop"`` or ``"open_loop"`` (module docstring).
        timestep: physics step, seconds (None: the model's, 2 ms for the rodent).
        start_frame: first reference frame; n_frames: frames to run (None: to the end).
        termination_error: mean body position error (m) that ends an episode.
        min_episode_frames: frames an episode lasts at least before it may be terminated.
        latent: ``"sample"`` (mean + scale * noise, as trained) or ``"mean"``.
        action_noise: add the policy's Gaussian action noise (its learnt std), then clip.
        resample_latent: record latent resampling: at every step, ``latent_samples`` latents
            drawn from the step's latent distribution are decoded from the same state; the
            spread (std) of the actions and latents over them is recorded. The rollout itself
            is unchanged (a separate random stream).
        latent_samples: samples per step when resampling (default 50, as Aldarondo et al.).
        reward: the reward's scales and weights.
        seed: seed of every random stream.
    """

    mode: str = "closed_loop"
    timestep: float | None = None
    start_frame: int = 0
    n_frames: int | None = None
    termination_error: float = 0.03
    min_episode_frames: int = 10
    latent: str = "sample"
    action_noise: bool = False
    resample_latent: bool = False
    latent_samples: int = 50
    reward: RewardConfig = field(default_factory=RewardConfig)
    seed: int = 0

    def __post_init__(self):
        if self.mode not in ROLLOUT_MODES:
            raise ValueError(f"RolloutConfig.mode: expected one of {ROLLOUT_MODES}, got {self.mode!r}")
        if self.latent not in LATENT_MODES:
            raise ValueError(f"RolloutConfig.latent: expected one of {LATENT_MODES}, got {self.latent!r}")
        if not self.termination_error > 0:
            raise ValueError(f"RolloutConfig.termination_error: must be > 0 m, got {self.termination_error!r}")
        if int(self.min_episode_frames) < 1:
            raise ValueError(f"RolloutConfig.min_episode_frames: must be >= 1, got {self.min_episode_frames!r}")
        if int(self.latent_samples) < 2:
            raise ValueError(f"RolloutConfig.latent_samples: must be >= 2, got {self.latent_samples!r}")
        if int(self.start_frame) < 0 or (self.n_frames is not None and int(self.n_frames) < 1):
            raise ValueError("RolloutConfig: start_frame must be >= 0 and n_frames >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Episodes:
    """The episodes table (E rows). Frames are reference frame indices (``RolloutResult.frames``
    numbering); ``stop_frame`` is exclusive.

    Attributes:
        start_frame, stop_frame: (E,) int.
        termination: (E,) ``"tracking_error"`` or ``"end_of_reference"``.
        termination_error: (E,) the tracking error (m) that ended it (NaN at the end).
        episode_return: (E,) sum of rewards over its frames.
        reset_activation: (E,) how the actuator activation was reset at its start:
            ``"reference"`` (the reference's activation state) or ``"zero"``.
        reset_network_state: (E,) bool, the LSTM state was reset to zero at its start.
    """

    start_frame: np.ndarray
    stop_frame: np.ndarray
    termination: np.ndarray
    termination_error: np.ndarray
    episode_return: np.ndarray
    reset_activation: np.ndarray
    reset_network_state: np.ndarray

    @property
    def length(self) -> np.ndarray:
        return self.stop_frame - self.start_frame

    def __len__(self) -> int:
        return len(self.start_frame)


@dataclass(frozen=True, eq=False)
class LatentResampling:
    """Spread over ``n_samples`` latent samples per frame: ``action_std`` (T, n_actions) and
    ``latent_std`` (T, latent_size), standard deviations across the samples."""

    n_samples: int
    action_std: np.ndarray
    latent_std: np.ndarray


@dataclass(frozen=True, eq=False)
class RolloutResult:
    """Result of ``run_rollout``: T rows, one per reference frame (see the module docstring).

    Attributes:
        frames: (T,) reference frame index of each row (``reference.first_frame`` based).
        time: (T,) seconds, ``frames / frame_rate``.
        qpos (T, nq), qvel (T, nv), actuator_controls (T, nu), actuator_activations (T, na),
        actuator_forces (T, nu), reward (T,), reward_terms: name -> (T,), tracking_error (T,),
        step_error (T,).
        activations: layer name -> (T, size) float32; layer_kinds: layer name -> kind.
        latent_resampling: LatentResampling or None.
        episodes: the Episodes table.
        mode, seed, frame_rate, timestep, steps_per_frame, config.
        controller_sha256: checksum of the checkpoint that acted.
        wall_time: seconds spent.
        timings: seconds spent in ``compile`` (jit of the network, first use of a checkpoint),
            ``physics`` (mj_step), ``network`` (jitted steps, resampling included),
            ``observations`` (features and kinematics) and ``other`` (rewards, recording, ...).
    """

    frames: np.ndarray
    time: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    actuator_controls: np.ndarray
    actuator_activations: np.ndarray
    actuator_forces: np.ndarray
    reward: np.ndarray
    reward_terms: dict
    tracking_error: np.ndarray
    step_error: np.ndarray
    activations: dict
    layer_kinds: dict
    latent_resampling: LatentResampling | None
    episodes: Episodes
    mode: str
    seed: int
    frame_rate: float
    timestep: float
    steps_per_frame: int
    config: RolloutConfig
    controller_sha256: str
    wall_time: float
    timings: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.frames)


def run_rollout(
    body_model: BodyModel | mujoco.MjModel,
    reference: ReferenceTrajectory,
    checkpoint: ControllerCheckpoint,
    config: RolloutConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> RolloutResult:
    """Imitate ``reference`` with the controller of ``checkpoint``.

    Raises:
        ValueError: a checkpoint that does not fit the body model (actuators, joints,
            appendages, input sizes), a reference of the wrong shape or with NaN, a timestep that
            does not divide the frame period, frames out of range.
    """
    t_start = time.perf_counter()
    config = config or RolloutConfig()
    if not isinstance(reference, ReferenceTrajectory):
        raise ValueError(f"reference: expected a ReferenceTrajectory, got {type(reference).__name__}")
    mj = as_mjmodel(body_model)
    if reference.qpos.shape[1] != mj.nq or reference.qvel.shape[1] != mj.nv:
        raise ValueError(
            f"reference: qpos/qvel have {reference.qpos.shape[1]}/{reference.qvel.shape[1]} columns, "
            f"the body model {mj.nq}/{mj.nv}"
        )
    if reference.activations is not None and reference.activations.shape[1] != mj.na:
        raise ValueError(f"reference: activations have {reference.activations.shape[1]} columns, "
                         f"the body model na={mj.na}")
    check_checkpoint_compatible(checkpoint, mj)
    model = simulation_model(mj, config.timestep)
    n_sub = steps_per_frame(reference.frame_rate, model.opt.timestep)
    start = int(config.start_frame)
    stop = reference.n_frames if config.n_frames is None else min(reference.n_frames, start + int(config.n_frames))
    if start >= reference.n_frames:
        raise ValueError(f"RolloutConfig.start_frame: {start} is past the reference's {reference.n_frames} frames")

    obs = checkpoint.config.observation
    layout = ObservationLayout.build(model, obs.reference_window, obs.appendage_bodies, obs.joint_names or None)
    lookahead = min(reference.n_frames, stop + obs.reference_window)
    kin = ReferenceKinematics.compute(layout, reference.qpos[start:lookahead])
    clock = time.perf_counter
    t0 = clock()
    sha = checkpoint.sha256
    n_resample = int(config.latent_samples) if config.resample_latent else 0
    policy = _policy(checkpoint, sha, n_resample)
    timings = {"compile": clock() - t0, "physics": 0.0, "network": 0.0, "observations": 0.0}
    rec = _Recorder(stop - start, model, policy, n_resample)
    rewards = _Rewards(config.reward, layout, kin)
    streams = np.random.SeedSequence(config.seed).spawn(3)
    latent_rng, action_rng, resample_rng = (np.random.default_rng(s) for s in streams)
    latent_size = checkpoint.config.latent_size
    ref_act = reference.activations

    data = mujoco.MjData(model)
    body_ids = np.arange(1, model.nbody)
    closed = config.mode == "closed_loop"
    state = None
    episode_start, episode_return = 0, 0.0
    needs_reset = True
    for i in range(stop - start):
        frame = start + i
        if needs_reset or not closed:
            _set_reference_state(data, model, reference, frame, reset_act=needs_reset or ref_act is not None)
            if needs_reset:
                state = policy.initial_state()
                needs_reset = False
        t0 = clock()
        body = BodyState.from_data(layout, data)
        r_obs = reference_features(layout, kin, np.array([i]), body)[0].astype(np.float32)
        p_obs = proprioception(layout, body)[0].astype(np.float32)
        timings["observations"] += clock() - t0
        rec.qpos[i], rec.qvel[i], rec.act[i] = data.qpos, data.qvel, data.act
        rec.tracking_error[i] = _body_error(data.xpos[body_ids], kin.body_pos[i, body_ids])
        noise = (latent_rng.standard_normal(latent_size) if config.latent == "sample"
                 else np.zeros(latent_size)).astype(np.float32)
        t0 = clock()
        if rec.resampling is not None:  # before the step: it reads the same recurrent state
            a_std, z_std = policy.resample(
                r_obs, p_obs, state,
                resample_rng.standard_normal((config.latent_samples, latent_size)).astype(np.float32))
            rec.resampling[0][i], rec.resampling[1][i] = a_std, z_std
        action, state, flat = policy.step(r_obs, p_obs, state, noise)
        timings["network"] += clock() - t0
        if config.action_noise:
            action = action + policy.action_std * action_rng.standard_normal(len(action))
        action = np.clip(action, -1.0, 1.0)
        rec.ctrl[i], rec.activations[i] = action, flat
        if i == stop - start - 1:  # the last frame: nothing after it to imitate
            rec.force[i] = np.nan
            break
        data.ctrl[:] = action
        force = np.zeros(model.nu)
        t0 = clock()
        for _ in range(n_sub):
            mujoco.mj_step(model, data)
            force += data.actuator_force
        t1 = clock()
        rec.force[i] = force / n_sub
        mujoco.mj_kinematics(model, data)  # positions of the new state
        timings["physics"] += t1 - t0
        timings["observations"] += clock() - t1
        terms = rewards.terms(data, i + 1, action)
        rec.reward[i] = terms.pop("total")
        for name, value in terms.items():
            rec.terms[name][i] = value
        episode_return += rec.reward[i]
        error = rec.step_error[i] = _body_error(data.xpos[body_ids], kin.body_pos[i + 1, body_ids])
        if closed:
            unstable = not np.isfinite(data.qpos).all() or not np.isfinite(data.qvel).all()
            if unstable or (i + 1 - episode_start >= config.min_episode_frames and error > config.termination_error):
                rec.end_episode(start, episode_start, i + 1, "tracking_error", error, episode_return,
                                ref_act is not None)
                episode_start, episode_return, needs_reset = i + 1, 0.0, True
        if progress is not None and (i + 1) % 100 == 0:
            progress(i + 1, stop - start)
    rec.end_episode(start, episode_start, stop - start, "end_of_reference", np.nan, episode_return,
                    ref_act is not None)
    if progress is not None:
        progress(stop - start, stop - start)
    frames = reference.first_frame + np.arange(start, stop)
    wall = time.perf_counter() - t_start
    timings["other"] = wall - sum(timings.values())
    return RolloutResult(
        frames=frames, time=frames / reference.frame_rate, qpos=rec.qpos, qvel=rec.qvel,
        actuator_controls=rec.ctrl, actuator_activations=rec.act, actuator_forces=rec.force,
        reward=rec.reward, reward_terms=rec.terms, tracking_error=rec.tracking_error,
        step_error=rec.step_error,
        activations=policy.unpack(rec.activations),
        layer_kinds={layer.name: layer.kind for layer in policy.layers},
        latent_resampling=(LatentResampling(n_resample, *rec.resampling)
                           if rec.resampling is not None else None),
        episodes=rec.episodes(reference.first_frame), mode=config.mode, seed=int(config.seed),
        frame_rate=float(reference.frame_rate), timestep=float(model.opt.timestep),
        steps_per_frame=n_sub, config=config, controller_sha256=sha,
        wall_time=wall, timings=timings,
    )


_POLICIES: dict = {}


def _policy(checkpoint: ControllerCheckpoint, sha256: str, n_resample: int) -> ControllerPolicy:
    """A compiled policy per checkpoint (by checksum): rollouts of the same controller do not
    pay the jit compilation again."""
    key = (sha256, n_resample)
    if key not in _POLICIES:
        if len(_POLICIES) >= 4:
            _POLICIES.pop(next(iter(_POLICIES)))
        policy = ControllerPolicy(checkpoint, n_resample=n_resample)
        policy.warm_up()
        _POLICIES[key] = policy
    return _POLICIES[key]


def _set_reference_state(data, model, reference: ReferenceTrajectory, frame: int, reset_act: bool):
    data.qpos[:] = reference.qpos[frame]
    data.qvel[:] = reference.qvel[frame]
    if reset_act:
        data.act[:] = reference.activations[frame] if reference.activations is not None else 0.0
    data.ctrl[:] = 0.0
    data.qacc_warmstart[:] = 0.0
    mujoco.mj_kinematics(model, data)


def _body_error(x, x_ref) -> float:
    return float(np.sqrt(((x - x_ref) ** 2).sum(1)).mean())


class _Rewards:
    def __init__(self, cfg: RewardConfig, layout: ObservationLayout, kin: ReferenceKinematics):
        self.cfg, self.layout, self.kin = cfg, layout, kin
        self.weights = dict(cfg.weights)

    def terms(self, data, k: int, action) -> dict:
        cfg, lay, kin = self.cfg, self.layout, self.kin
        rq = lay.root_qpos
        dp = data.xpos[lay.root_body] - kin.root_pos[k]
        quat = data.qpos[rq + 3:rq + 7] / np.linalg.norm(data.qpos[rq + 3:rq + 7])
        angle = 2.0 * np.arccos(min(1.0, abs(float(quat @ kin.root_quat[k]))))
        dj = data.qpos[lay.joint_qpos] - kin.joints[k]
        da = data.xpos[lay.appendage_ids] - kin.appendages[k]
        out = {
            "root_position": np.exp(-(dp @ dp) / cfg.root_position_scale**2),
            "root_orientation": np.exp(-angle**2 / cfg.root_orientation_scale**2),
            "joint_angles": np.exp(-(dj @ dj) / cfg.joint_angles_scale**2),
            "appendages": np.exp(-(da**2).sum() / cfg.appendages_scale**2),
            "control_cost": cfg.control_cost_weight * float(np.mean(np.square(action))) if len(action) else 0.0,
        }
        weighted = sum(self.weights.get(k, 0.0) * v for k, v in out.items() if k != "control_cost")
        out["total"] = weighted - out["control_cost"]
        return out


class _Recorder:
    def __init__(self, n, model, policy: ControllerPolicy, n_resample: int):
        self.qpos = np.empty((n, model.nq))
        self.qvel = np.empty((n, model.nv))
        self.act = np.empty((n, model.na))
        self.ctrl = np.empty((n, model.nu))
        self.force = np.empty((n, model.nu))
        self.reward = np.full(n, np.nan)
        self.terms = {t: np.full(n, np.nan) for t in REWARD_TERMS}
        self.tracking_error = np.empty(n)
        self.step_error = np.full(n, np.nan)
        self.activations = np.empty((n, policy.activation_size), np.float32)
        c = policy.config
        self.resampling = ((np.empty((n, c.n_actions), np.float32), np.empty((n, c.latent_size), np.float32))
                           if n_resample else None)
        self._rows = []

    def end_episode(self, start, first, stop, reason, error, ret, reference_act):
        self._rows.append((start + first, start + stop, reason, error, ret,
                           "reference" if reference_act else "zero"))

    def episodes(self, offset: int) -> Episodes:
        rows = self._rows
        return Episodes(
            start_frame=np.array([r[0] for r in rows], dtype=int) + offset,
            stop_frame=np.array([r[1] for r in rows], dtype=int) + offset,
            termination=np.array([r[2] for r in rows]),
            termination_error=np.array([r[3] for r in rows], dtype=float),
            episode_return=np.array([r[4] for r in rows], dtype=float),
            reset_activation=np.array([r[5] for r in rows]),
            reset_network_state=np.ones(len(rows), dtype=bool),
        )

"""Closed-loop (and open-loop) imitation of a reference by the controller, or by the tracking
expert, in MuJoCo.

Pure core: a body model, a reference, a checkpoint (or none, for the expert) and a config in; a
``RolloutResult`` of arrays out, one row per reference frame.

Modes: ``closed_loop`` (the network acts on the state it reached), ``open_loop`` (every step
starts from the reference state), ``expert`` (the ``TrackingExpert`` of ``expert.py`` acts in
closed loop: inverse dynamics + PD through the actuators, optionally predictive sampling).

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
- ``tracking_error``: the body error (``tracking.py``: mean distance of the keypoint-carrying
  bodies to the reference's, m) of the observed state at frame i (0 where the frame was
  (re)started from the reference);
- ``step_error``: the same for the state the control led to, at frame i+1 against reference
  frame i+1, before any restart (what termination tests; in open loop, the one-frame error);
  NaN on the last row;
- ``tracking`` (T, len(TRACKING_COLUMNS)): the paper's measures of the state the simulation
  *reached* at frame i (before any restart there) against reference frame i: total and pose
  keypoint error, body error, dm_control's termination metric, track-mjx's distances and its
  termination rule (``tracking.py``); NaN on the first row, which was not simulated.

Reward terms, as track-mjx defines them (``track_mjx/environment/task/reward.py``, weights and
scales of ``rodent-full-clips.yaml``; state s at frame i+1, reference r at frame i+1)::

    root_position      exp(-400 |p - p_r|^2)                  p: root position, m
    root_orientation   exp(-4 d_q^2)                          d_q = half the root rotation angle, rad
    joint_angles       exp(-0.25 sum_j (q_j - q_rj)^2)        rad
    end_effectors      exp(-500 sum_b |x_b - x_rb|^2)         feet, hands, skull, m
    bodies             exp(-8 sum_b |x_b - x_rb|^2)           track-mjx's 18 bodies, m (weight 0)
    control_cost       0.02 sum_a u_a^2
    control_diff_cost  0.02 sum_a (u_a - u_prev_a)^2          (u_prev = 0 at an episode start)
    energy_cost        0.01 min(sum_j |v_j f_j|, 50)          joint velocities x actuator forces
    reward = sum of weight_k * term_k - the three costs       (weights 1, bodies 0)

Episodes (closed loop and expert). An episode starts from the reference state at its first frame
(qpos, qvel, and the reference's activation state, zero when it has none) with a zero LSTM state.
After each control step, if the episode has lasted at least ``min_episode_frames`` frames and the
body error of the new state exceeds ``termination_error`` (``tracking.TerminationConfig``), the
episode ends there and the next starts from the reference at that frame (body, actuator
activations, LSTM state and the expert's warm start reset), as Aldarondo et al. did to imitate
whole sessions. A simulation that blows up (NaN) ends its episode as ``physics_unstable``. Open
loop: every step starts from the reference state at its frame (the body, and the activation when
the reference has one); the network's recurrent state runs on; one episode, never terminated.

Randomness: ``seed`` drives three independent streams (numpy ``SeedSequence(seed).spawn(3)``):
the latent sample, the action noise, and latent resampling, so turning resampling on does not
change the rollout. MuJoCo and the jitted network are deterministic on CPU: the same seed gives
the same rollout. The expert's sampling noise has its own seed (``ExpertConfig.seed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

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
from ..storage import release, scratch_array
from .expert import ExpertConfig, TrackingExpert
from .physics import as_mjmodel, simulation_model, steps_per_frame
from .tracking import (
    TRACKING_COLUMNS,
    TerminationConfig,
    TrackingMeter,
    bounded_quat_distance,
    episode_length_quantiles,
)

__all__ = [
    "Episodes",
    "LatentResampling",
    "RewardConfig",
    "RolloutConfig",
    "RolloutResult",
    "run_rollout",
    "REWARD_TERMS",
    "ROLLOUT_MODES",
]

ROLLOUT_MODES = ("closed_loop", "open_loop", "expert")
REWARD_TERMS = (
    "root_position",
    "root_orientation",
    "joint_angles",
    "end_effectors",
    "bodies",
    "control_cost",
    "control_diff_cost",
    "energy_cost",
)
_COSTS = ("control_cost", "control_diff_cost", "energy_cost")
LATENT_MODES = ("sample", "mean")
# track-mjx's rodent end effectors and tracked bodies (rodent-full-clips.yaml)
TRACKMJX_END_EFFECTORS = ("foot_L", "foot_R", "hand_L", "hand_R", "skull")
TRACKMJX_BODIES = (
    "torso",
    "pelvis",
    "upper_leg_L",
    "lower_leg_L",
    "foot_L",
    "upper_leg_R",
    "lower_leg_R",
    "foot_R",
    "skull",
    "jaw",
    "scapula_L",
    "upper_arm_L",
    "lower_arm_L",
    "finger_L",
    "scapula_R",
    "upper_arm_R",
    "lower_arm_R",
    "finger_R",
)


@dataclass(frozen=True)
class RewardConfig:
    """track-mjx's reward (module docstring): exponent scales (1 / the terms' squared units),
    cost weights, term weights, and the bodies the end-effector and body terms compare (bodies
    the model lacks are skipped)."""

    root_position_exp_scale: float = 400.0
    root_orientation_exp_scale: float = 4.0
    joint_angles_exp_scale: float = 0.25
    end_effectors_exp_scale: float = 500.0
    bodies_exp_scale: float = 8.0
    control_cost_weight: float = 0.02
    control_diff_cost_weight: float = 0.02
    energy_cost_weight: float = 0.01
    energy_cost_cap: float = 50.0
    weights: tuple[tuple[str, float], ...] = (
        ("root_position", 1.0),
        ("root_orientation", 1.0),
        ("joint_angles", 1.0),
        ("end_effectors", 1.0),
        ("bodies", 0.0),
    )
    end_effectors: tuple[str, ...] = TRACKMJX_END_EFFECTORS
    bodies: tuple[str, ...] = TRACKMJX_BODIES

    def __post_init__(self):
        for name in (
            "root_position_exp_scale",
            "root_orientation_exp_scale",
            "joint_angles_exp_scale",
            "end_effectors_exp_scale",
            "bodies_exp_scale",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"RewardConfig.{name}: must be >= 0, got {getattr(self, name)!r}")
        for name in ("control_cost_weight", "control_diff_cost_weight", "energy_cost_weight", "energy_cost_cap"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"RewardConfig.{name}: must be >= 0, got {getattr(self, name)!r}")
        for name, _ in self.weights:
            if name not in REWARD_TERMS or name in _COSTS:
                raise ValueError(f"RewardConfig.weights: unknown term {name!r}")


@dataclass(frozen=True)
class RolloutConfig:
    """Parameters of a rollout.

    Attributes:
        mode: ``"closed_loop"``, ``"open_loop"`` or ``"expert"`` (module docstring).
        timestep: physics step, seconds (None: the model's, 2 ms for the rodent).
        start_frame: first reference frame; n_frames: frames to run (None: to the end).
        termination_error: body error (m; mean distance of the keypoint-carrying bodies to the
            reference's) that ends an episode; default and its reason: ``tracking.TerminationConfig``.
        min_episode_frames: frames an episode lasts at least before it may be terminated.
        latent: ``"sample"`` (mean + scale * noise, as trained) or ``"mean"``.
        action_noise: add the policy's Gaussian action noise (its learnt std), then clip.
        resample_latent: record latent resampling: at every step, ``latent_samples`` latents
            drawn from the step's latent distribution are decoded from the same state; the
            spread (std) of the actions and latents over them is recorded. The rollout itself
            is unchanged (a separate random stream).
        latent_samples: samples per step when resampling (default 50, as Aldarondo et al.).
        reward: the reward's scales and weights.
        expert: the expert's parameters (mode ``expert``).
        seed: seed of every random stream.
    """

    mode: str = "closed_loop"
    timestep: float | None = None
    start_frame: int = 0
    n_frames: int | None = None
    termination_error: float = TerminationConfig.threshold
    min_episode_frames: int = TerminationConfig.min_episode_frames
    latent: str = "sample"
    action_noise: bool = False
    resample_latent: bool = False
    latent_samples: int = 50
    reward: RewardConfig = field(default_factory=RewardConfig)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
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

    @property
    def termination(self) -> TerminationConfig:
        return TerminationConfig(float(self.termination_error), int(self.min_episode_frames))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Episodes:
    """The episodes table (E rows). Frames are reference frame indices (``RolloutResult.frames``
    numbering); ``stop_frame`` is exclusive.

    Attributes:
        start_frame, stop_frame: (E,) int.
        termination: (E,) ``"tracking_error"``, ``"physics_unstable"`` or ``"end_of_reference"``.
        termination_error: (E,) the body error (m) that ended it (NaN at the end).
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
        step_error (T,), tracking (T, len(TRACKING_COLUMNS)) (module docstring).
        activations: layer name -> (T, size) float32 (empty for the expert);
        layer_kinds: layer name -> kind.
        latent_resampling: LatentResampling or None.
        episodes: the Episodes table.
        mode, seed, frame_rate, timestep, steps_per_frame, config.
        controller_sha256: checksum of the checkpoint that acted ("" for the expert).
        wall_time: seconds spent; cpu_time: CPU seconds of this process spent.
        timings: seconds spent in ``compile`` (jit of the network, first use of a checkpoint),
            ``physics`` (mj_step), ``network`` (jitted steps, resampling included; the expert's
            controls in mode ``expert``), ``observations`` (features, kinematics, tracking) and
            ``other`` (rewards, recording, ...).
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
    tracking: np.ndarray | None = None
    cpu_time: float = float("nan")

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    def tracking_column(self, name: str) -> np.ndarray:
        """(T,) one column of ``tracking`` by name (``TRACKING_COLUMNS``)."""
        return self.tracking[:, TRACKING_COLUMNS.index(name)]

    @property
    def total_error(self) -> np.ndarray:
        """(T,) total keypoint error of the simulated states, m (NaN on the first row)."""
        return self.tracking_column("total_error")

    @property
    def pose_error(self) -> np.ndarray:
        """(T,) pose error (after rigid alignment without scaling), m (NaN on the first row)."""
        return self.tracking_column("pose_error")

    def summary(self) -> str:
        """One line: episodes, their median and quartile lengths, mean total and pose error,
        dm_control's termination metric beside them, CPU time per second of reference."""
        q = episode_length_quantiles(self.episodes.length, (0.25, 0.5, 0.75))
        clip = (self.n_frames - 1) / self.frame_rate
        return (
            f"{self.mode}: {self.n_frames} frames, {len(self.episodes)} episodes (median "
            f"{q[0.5]:.0f} frames, quartiles {q[0.25]:.0f}-{q[0.75]:.0f}), mean total error "
            f"{1e3 * np.nanmean(self.total_error):.1f} mm, pose error {1e3 * np.nanmean(self.pose_error):.1f} mm "
            f"(dm_control error {np.nanmean(self.tracking_column('dm_control_error')):.3f}), "
            f"{self.cpu_time / clip if clip > 0 else float('nan'):.2f} CPU s per clip second"
        )


def run_rollout(
    body_model: BodyModel | mujoco.MjModel,
    reference: ReferenceTrajectory,
    checkpoint: ControllerCheckpoint | None = None,
    config: RolloutConfig | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    block_frames: int | None = None,
    scratch=None,
) -> RolloutResult:
    """Imitate ``reference`` with the controller of ``checkpoint`` (modes ``closed_loop``,
    ``open_loop``) or with the tracking expert (mode ``expert``: ``checkpoint`` is not used).

    Memory on long references: ``block_frames`` frames are prepared at a time (the reference's
    kinematics, tracking and reward targets; None: all at once), and with ``scratch`` (a folder)
    the per-frame outputs that grow with the session (qpos, qvel, activation states, controls,
    forces, every layer's activations, latent resampling) are written to unlinked temporary files
    there as the rollout goes (``mimic_nwb.storage.scratch_array``): the result's arrays are then
    memory maps of those files, paged in only when read. Neither changes a number: the rollout is
    the same, bit for bit, for any ``block_frames`` and with or without ``scratch``.

    Raises:
        ValueError: a checkpoint that does not fit the body model (actuators, joints,
            appendages, input sizes), a reference of the wrong shape or with NaN, a timestep that
            does not divide the frame period, frames out of range, no checkpoint for a network
            mode, a body model without keypoint sites.
    """
    t_start, cpu_start = time.perf_counter(), time.process_time()
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
        raise ValueError(
            f"reference: activations have {reference.activations.shape[1]} columns, the body model na={mj.na}"
        )
    expert_mode = config.mode == "expert"
    if not expert_mode:
        if checkpoint is None:
            raise ValueError(f"checkpoint: mode {config.mode!r} needs a controller checkpoint")
        check_checkpoint_compatible(checkpoint, mj)
    model = simulation_model(mj, config.timestep)
    n_sub = steps_per_frame(reference.frame_rate, model.opt.timestep)
    start = int(config.start_frame)
    stop = reference.n_frames if config.n_frames is None else min(reference.n_frames, start + int(config.n_frames))
    if start >= reference.n_frames:
        raise ValueError(f"RolloutConfig.start_frame: {start} is past the reference's {reference.n_frames} frames")

    if block_frames is not None and int(block_frames) < 1:
        raise ValueError(f"block_frames: must be >= 1, got {block_frames!r}")

    clock = time.perf_counter
    t0 = clock()
    if expert_mode:
        expert = TrackingExpert(model, reference, config.expert)
        policy, layout, sha, n_resample, window, lookahead = None, None, "", 0, 0, stop
    else:
        obs = checkpoint.config.observation
        layout = ObservationLayout.build(model, obs.reference_window, obs.appendage_bodies, obs.joint_names or None)
        window = int(obs.reference_window)
        lookahead = min(reference.n_frames, stop + window)
        sha = checkpoint.sha256
        n_resample = int(config.latent_samples) if config.resample_latent else 0
        policy = _policy(checkpoint, sha, n_resample)
    timings = {"compile": clock() - t0, "physics": 0.0, "network": 0.0, "observations": 0.0}
    n_rows = stop - start
    block = n_rows if block_frames is None else min(int(block_frames), n_rows)
    rec = _Recorder(n_rows, model, policy, n_resample, block, scratch)
    streams = np.random.SeedSequence(config.seed).spawn(3)
    latent_rng, action_rng, resample_rng = (np.random.default_rng(s) for s in streams)
    latent_size = checkpoint.config.latent_size if policy is not None else 0
    ref_act = reference.activations
    rule = config.termination

    data = mujoco.MjData(model)
    open_loop = config.mode == "open_loop"
    state = None
    episode_start, episode_return = 0, 0.0
    previous_action = np.zeros(model.nu)
    needs_reset = True
    for b0 in range(0, n_rows, block):
        b1 = min(b0 + block, n_rows)
        # The block's targets: kinematics of its frames and of the reference window after its
        # last one (clipped at the reference's end, as for the whole), tracking and reward
        # targets of its frames and the next (a control is judged on the state it leads to).
        t0 = clock()
        if policy is not None:
            kin = ReferenceKinematics.compute(layout, reference.qpos[start + b0 : min(start + b1 + window, lookahead)])
        meter = TrackingMeter(model, reference.qpos[start + b0 : start + min(b1 + 1, n_rows)])
        rewards = _Rewards(config.reward, model, reference.qpos[start + b0 : start + min(b1 + 1, n_rows)])
        timings["observations"] += clock() - t0
        for i in range(b0, b1):
            frame, j = start + i, i - b0  # j: the row of the block's targets
            if needs_reset or open_loop:
                _set_reference_state(data, model, reference, frame, reset_act=needs_reset or ref_act is not None)
                if needs_reset:
                    if policy is not None:
                        state = policy.initial_state()
                    else:
                        expert.reset()
                    previous_action = np.zeros(model.nu)
                    needs_reset = False
            rec.qpos[i], rec.qvel[i], rec.act[i] = data.qpos, data.qvel, data.act
            t0 = clock()
            rec.tracking_error[i] = meter.body_error(data, j)
            if policy is not None:
                body = BodyState.from_data(layout, data)
                r_obs = reference_features(layout, kin, np.array([j]), body)[0].astype(np.float32)
                p_obs = proprioception(layout, body)[0].astype(np.float32)
            timings["observations"] += clock() - t0
            t0 = clock()
            if policy is None:
                action = expert.controls(data, frame)
            else:
                noise = (
                    latent_rng.standard_normal(latent_size) if config.latent == "sample" else np.zeros(latent_size)
                ).astype(np.float32)
                if rec.resampling is not None:  # before the step: it reads the same recurrent state
                    a_std, z_std = policy.resample(
                        r_obs,
                        p_obs,
                        state,
                        resample_rng.standard_normal((config.latent_samples, latent_size)).astype(np.float32),
                    )
                    rec.resampling[0][i], rec.resampling[1][i] = a_std, z_std
                action, state, flat = policy.step(r_obs, p_obs, state, noise)
                rec.record_activations(i, flat)
                if config.action_noise:
                    action = action + policy.action_std * action_rng.standard_normal(len(action))
                action = np.clip(action, -1.0, 1.0)
            timings["network"] += clock() - t0
            rec.ctrl[i] = action
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
            timings["physics"] += t1 - t0
            unstable = not np.isfinite(data.qpos).all() or not np.isfinite(data.qvel).all()
            if unstable:
                rec.tracking[i + 1] = np.nan
                error = np.nan
                rec.reward[i] = np.nan
            else:
                mujoco.mj_kinematics(model, data)  # positions of the new state
                rec.tracking[i + 1] = meter.measure(data, j + 1)
                error = rec.tracking[i + 1, _BODY]
                terms = rewards.terms(data, j + 1, action, previous_action)
                rec.reward[i] = terms.pop("total")
                for name, value in terms.items():
                    rec.terms[name][i] = value
                episode_return += rec.reward[i]
            timings["observations"] += clock() - t1
            rec.step_error[i] = error
            previous_action = action
            if not open_loop and (unstable or rule.ends(error, i + 1 - episode_start)):
                rec.end_episode(
                    start,
                    episode_start,
                    i + 1,
                    "physics_unstable" if unstable else "tracking_error",
                    error,
                    episode_return,
                    ref_act is not None,
                    policy is not None,
                )
                episode_start, episode_return, needs_reset = i + 1, 0.0, True
            if progress is not None and (i + 1) % 100 == 0:
                progress(i + 1, stop - start)
        rec.flush(b0, b1)
    rec.end_episode(
        start,
        episode_start,
        stop - start,
        "end_of_reference",
        np.nan,
        episode_return,
        ref_act is not None,
        policy is not None,
    )
    if progress is not None:
        progress(stop - start, stop - start)
    frames = reference.first_frame + np.arange(start, stop)
    wall = time.perf_counter() - t_start
    timings["other"] = wall - sum(timings.values())
    return RolloutResult(
        frames=frames,
        time=frames / reference.frame_rate,
        qpos=rec.qpos,
        qvel=rec.qvel,
        actuator_controls=rec.ctrl,
        actuator_activations=rec.act,
        actuator_forces=rec.force,
        reward=rec.reward,
        reward_terms=rec.terms,
        tracking_error=rec.tracking_error,
        step_error=rec.step_error,
        activations=rec.layer_activations(policy),
        layer_kinds={layer.name: layer.kind for layer in policy.layers} if policy is not None else {},
        latent_resampling=(LatentResampling(n_resample, *rec.resampling) if rec.resampling is not None else None),
        episodes=rec.episodes(reference.first_frame),
        mode=config.mode,
        seed=int(config.seed),
        frame_rate=float(reference.frame_rate),
        timestep=float(model.opt.timestep),
        steps_per_frame=n_sub,
        config=config,
        controller_sha256=sha,
        wall_time=wall,
        timings=timings,
        tracking=rec.tracking,
        cpu_time=time.process_time() - cpu_start,
    )


_BODY = TRACKING_COLUMNS.index("body_error")
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


def _body_ids(model, names):
    ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n) for n in names]
    return np.array([i for i in ids if i >= 0], dtype=int)


class _Rewards:
    """track-mjx's reward terms of a state against reference frame k (module docstring)."""

    def __init__(self, cfg: RewardConfig, model: mujoco.MjModel, reference_qpos: np.ndarray):
        self.cfg = cfg
        self.weights = dict(cfg.weights)
        self.root_qpos = int(model.jnt_qposadr[0])
        self.root_body = int(model.jnt_bodyid[0])
        scalar = [
            j
            for j in range(model.njnt)
            if int(model.jnt_type[j]) in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
        ]
        self.joint_qpos = np.array([model.jnt_qposadr[j] for j in scalar], dtype=int)
        self.joint_dof = np.array([model.jnt_dofadr[j] for j in scalar], dtype=int)
        self.end_effectors = _body_ids(model, cfg.end_effectors)
        self.bodies = _body_ids(model, cfg.bodies)
        data = mujoco.MjData(model)
        self.xpos = np.empty((len(reference_qpos), model.nbody, 3))
        for t, q in enumerate(reference_qpos):
            data.qpos[:] = q
            mujoco.mj_kinematics(model, data)
            self.xpos[t] = data.xpos
        rq = self.root_qpos
        self.root_pos = self.xpos[:, self.root_body].copy()
        quat = reference_qpos[:, rq + 3 : rq + 7]
        self.root_quat = quat / np.linalg.norm(quat, axis=1, keepdims=True)
        self.joints = reference_qpos[:, self.joint_qpos]

    def terms(self, data, k: int, action, previous_action) -> dict:
        cfg, rq = self.cfg, self.root_qpos
        dp = data.xpos[self.root_body] - self.root_pos[k]
        quat = data.qpos[rq + 3 : rq + 7] / np.linalg.norm(data.qpos[rq + 3 : rq + 7])
        dq = bounded_quat_distance(quat, self.root_quat[k])
        dj = data.qpos[self.joint_qpos] - self.joints[k]
        de = data.xpos[self.end_effectors] - self.xpos[k, self.end_effectors]
        db = data.xpos[self.bodies] - self.xpos[k, self.bodies]
        power = np.abs(data.qvel[self.joint_dof] * data.qfrc_actuator[self.joint_dof]).sum()
        out = {
            "root_position": np.exp(-cfg.root_position_exp_scale * float(dp @ dp)),
            "root_orientation": np.exp(-cfg.root_orientation_exp_scale * dq**2),
            "joint_angles": np.exp(-cfg.joint_angles_exp_scale * float(dj @ dj)),
            "end_effectors": np.exp(-cfg.end_effectors_exp_scale * float((de**2).sum())),
            "bodies": np.exp(-cfg.bodies_exp_scale * float((db**2).sum())),
            "control_cost": cfg.control_cost_weight * float(np.sum(np.square(action))),
            "control_diff_cost": cfg.control_diff_cost_weight * float(np.sum(np.square(action - previous_action))),
            "energy_cost": cfg.energy_cost_weight * min(float(power), cfg.energy_cost_cap),
        }
        weighted = sum(self.weights.get(name, 0.0) * v for name, v in out.items() if name not in _COSTS)
        out["total"] = weighted - sum(out[c] for c in _COSTS)
        return out


class _Recorder:
    """The rollout's per-frame rows. Without ``scratch`` every array is in memory; with it (a
    folder) the arrays that grow with the session go to scratch files (``storage.scratch_array``),
    activations through an in-memory buffer of one block, and ``flush`` after each block writes
    the buffer out and hands written pages back to the files."""

    def __init__(self, n, model, policy: ControllerPolicy | None, n_resample: int, block: int, scratch=None):
        def big(shape, dtype=np.float64):
            return np.empty(shape, dtype) if scratch is None else scratch_array(shape, dtype, scratch)

        self.scratch = scratch
        self.qpos = big((n, model.nq))
        self.qvel = big((n, model.nv))
        self.act = big((n, model.na))
        self.ctrl = big((n, model.nu))
        self.force = big((n, model.nu))
        self.reward = np.full(n, np.nan)
        self.terms = {t: np.full(n, np.nan) for t in REWARD_TERMS}
        self.tracking_error = np.empty(n)
        self.step_error = np.full(n, np.nan)
        self.tracking = np.full((n, len(TRACKING_COLUMNS)), np.nan)
        self.policy = policy
        self.activations = self.layers = None
        if policy is not None:
            if scratch is None:
                self.activations = np.empty((n, policy.activation_size), np.float32)
            else:  # one scratch array per layer, so that writing a layer reads only its own pages
                self.activations = np.empty((block, policy.activation_size), np.float32)
                self.layers = {layer.name: big((n, layer.size), np.float32) for layer in policy.layers}
        c = policy.config if policy is not None else None
        self.resampling = (
            (big((n, c.n_actions), np.float32), big((n, c.latent_size), np.float32)) if n_resample else None
        )
        self._rows = []

    def record_activations(self, i, flat):
        self.activations[i if self.layers is None else i % len(self.activations)] = flat

    def flush(self, b0, b1):
        """Rows b0..b1-1 are complete (blocks start at multiples of the block size)."""
        if self.scratch is None:
            return
        if self.layers is not None:
            buffer = self.activations[: b1 - b0]
            for name, rows in self.policy.layer_slices.items():
                self.layers[name][b0:b1] = buffer[:, rows]
        for array in (self.qpos, self.qvel, self.act, self.ctrl, self.force, *(self.layers or {}).values()):
            release(array)
        for array in self.resampling or ():
            release(array)

    def layer_activations(self, policy) -> dict:
        if policy is None:
            return {}
        return dict(self.layers) if self.layers is not None else policy.unpack(self.activations)

    def end_episode(self, start, first, stop, reason, error, ret, reference_act, network):
        self._rows.append(
            (start + first, start + stop, reason, error, ret, "reference" if reference_act else "zero", network)
        )

    def episodes(self, offset: int) -> Episodes:
        rows = self._rows
        return Episodes(
            start_frame=np.array([r[0] for r in rows], dtype=int) + offset,
            stop_frame=np.array([r[1] for r in rows], dtype=int) + offset,
            termination=np.array([r[2] for r in rows]),
            termination_error=np.array([r[3] for r in rows], dtype=float),
            episode_return=np.array([r[4] for r in rows], dtype=float),
            reset_activation=np.array([r[5] for r in rows]),
            reset_network_state=np.array([r[6] for r in rows], dtype=bool),
        )

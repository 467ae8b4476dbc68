"""Distillation of the tracking expert into the MIMIC network (DAgger, with DART-style noise).

Pure core: a body model, a reference, a tracking expert and a config in; a trained checkpoint and
its training log out (no files).

Why not supervised training on the reference alone: a network trained only on states that lie
exactly on the reference never sees the states its own small errors lead to, and in closed loop
those errors compound until the body falls (Ross et al. 2011). DAgger trains on the states the
network itself visits, labelled by an expert that knows how to recover from them:

1. **Expert data** (first iteration): the expert (``simulate.expert.TrackingExpert``) drives the
   body through the reference for ``expert_passes`` passes, its controls perturbed by Gaussian
   noise of ``expert_noise`` (control units) as in DART (Laskey et al. 2017), so that the data
   covers small deviations and the expert's corrections of them. The noise must stay small: the
   rodent's spine tendons (gain 20 N m) turn a control error of 0.02 into 0.4 N m, enough to cut
   the expert's own episodes several-fold.
2. **Student data** (every later iteration): the network drives the body (``student_passes``
   passes, its latent sampled as in a rollout); at every state it visits, the expert's control is
   recorded as the label (the expert acts instead, with probability ``expert_probability``).
3. **Aggregate and retrain**: all data collected so far, ``steps_per_iteration`` Adam steps
   (``controller.training.SupervisedTrainer``, the optimiser's state kept across iterations).

A pass imitates the reference in closed loop the way a rollout does: an episode starts from the
reference state at its first frame, ends when the error of the keypoint-carrying bodies exceeds
the termination threshold (``simulate.tracking.TerminationConfig``), and the next one starts from
the reference at that frame, until the end of the frames used. Each episode is one segment of the
data (training windows never cross episodes). After each iteration, the student's closed-loop
pass without noise (latent at its mean... or sampled, as ``latent`` says) is measured: episode
lengths and total keypoint error; they make the training log.

The checkpoint's ``training`` log gets one ``"dagger"`` stage with every iteration's numbers;
distillation continues from a checkpoint (``initial``): its weights and normalisation are kept,
iterations are numbered on, and the aggregated data restart from the student's own passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import mujoco
import numpy as np

from ..body_model import BodyModel
from ..controller.checkpoint import ControllerCheckpoint, check_checkpoint_compatible
from ..controller.config import ControllerConfig, ObservationSpec
from ..controller.observations import (
    DEFAULT_APPENDAGES,
    BodyState,
    ObservationLayout,
    ReferenceKinematics,
    ReferenceTrajectory,
    proprioception,
    reference_features,
)
from ..controller.policy import ControllerPolicy
from ..controller.training import SupervisedTrainer, TrainingConfig, TrainingSet, software_versions
from .physics import actuator_dynamics, as_mjmodel, simulation_model, steps_per_frame
from .tracking import TerminationConfig, TrackingMeter

__all__ = [
    "DistillationConfig",
    "DistillationResult",
    "PassResult",
    "distill_controller",
    "imitation_pass",
    "LATENT_MODES",
]

LATENT_MODES = ("sample", "mean")


@dataclass(frozen=True)
class DistillationConfig:
    """Parameters of the distillation (module docstring).

    Attributes:
        iterations: DAgger iterations (the first is the expert's, when starting fresh).
        expert_passes: noisy expert passes over the reference in the first iteration.
        expert_noise: std of the Gaussian noise on the expert's controls when it acts (DART),
            control units (controls are in [-1, 1]), for an actuator of average loss weight;
            each actuator's std is ``expert_noise / sqrt(weight)``, so the noise is small where
            the student must be precise (the strong spine tendons: a noise of 0.03 on them alone
            cuts the expert's median episode from the whole clip to about 40 frames, while the
            limbs take 0.1) and large where errors do not matter.
        student_passes: passes driven by the network per later iteration.
        expert_probability: probability that the expert acts at a step of a student pass (0:
            pure DAgger; the expert still labels every state).
        perturbations: perturbed copies of every visited state labelled by the expert
            (``perturbed_labels``); 0: none.
        perturbation_scale: multiplies the perturbations' standard deviations.
        steps_per_iteration: Adam steps after each iteration's data collection.
        training: optimisation settings (batch, window, learning rate, action weights; its
            ``steps`` is unused); validation is measured on the student's own passes instead.
        action_weighting: ``"gain"`` weights each actuator's squared control error by its
            gain (times its gear; normalised to mean 1), ``"sqrt_gain"`` by the gain's square
            root, ``"none"``: equal weights. Ignored when ``training.action_weights`` is given.
            Why: on the rodent, the expert's limb controls vary a lot from frame to frame
            (std 0.1-0.6) but barely move the body (gains 0.025-0.3 N m), while the spine
            tendons' controls are small (std < 0.05) and decisive (gain 20 N m).
        termination: when an episode ends (keypoint-body error threshold, minimum frames).
        min_std: floor of the normalisation's standard deviations, in the features' units.
            Far below the supervised default (1e-2): the tracking errors the expert corrects are
            millimetres, and the spine tendons' activations vary by less than 0.01 on the
            expert's passes; a coarser floor would hide exactly what the controls depend on.
        latent: how the network's latent is drawn when it acts: ``"sample"`` (as trained and
            as a rollout does by default) or ``"mean"``.
        start_frame, stop_frame: the frames of the reference used (stop exclusive; None: to the
            end), e.g. to hold out the rest for testing.
        seed: seed of the noise, the latent samples and the network's initialisation.
    """

    iterations: int = 3
    expert_passes: int = 3
    expert_noise: float = 0.02
    student_passes: int = 2
    expert_probability: float = 0.0
    perturbations: int = 0
    perturbation_scale: float = 1.0
    steps_per_iteration: int = 2000
    # windows of 8 frames: the LSTM decoder learns from short histories (the MLP ignores them);
    # the step size decays to 1e-5 in every iteration (on the demo clip: median episode 32
    # frames after 5 iterations against 25 with a constant 1e-3)
    training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(
            batch_size=32,
            sequence_length=8,
            learning_rate=1e-3,
            final_learning_rate=1e-5,
            validation_fraction=0.0,
            log_every=250,
        )
    )
    action_weighting: str = "gain"
    termination: TerminationConfig = field(default_factory=TerminationConfig)
    min_std: float = 1e-3
    latent: str = "sample"
    start_frame: int = 0
    stop_frame: int | None = None
    seed: int = 0

    def __post_init__(self):
        for name in ("iterations", "steps_per_iteration"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DistillationConfig.{name}: must be >= 1, got {getattr(self, name)!r}")
        for name in ("expert_passes", "student_passes", "perturbations"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"DistillationConfig.{name}: must be >= 0, got {getattr(self, name)!r}")
        if not (np.isfinite(self.expert_noise) and self.expert_noise >= 0):
            raise ValueError(f"DistillationConfig.expert_noise: must be >= 0, got {self.expert_noise!r}")
        if not (np.isfinite(self.perturbation_scale) and self.perturbation_scale >= 0):
            raise ValueError(f"DistillationConfig.perturbation_scale: must be >= 0, got {self.perturbation_scale!r}")
        if not 0 <= self.expert_probability <= 1:
            raise ValueError(
                f"DistillationConfig.expert_probability: must be in [0, 1], got {self.expert_probability!r}"
            )
        if self.action_weighting not in ("gain", "sqrt_gain", "none"):
            raise ValueError(
                f"DistillationConfig.action_weighting: expected 'gain', 'sqrt_gain' or 'none', "
                f"got {self.action_weighting!r}"
            )
        if not (np.isfinite(self.min_std) and self.min_std > 0):
            raise ValueError(f"DistillationConfig.min_std: must be > 0, got {self.min_std!r}")
        if self.latent not in LATENT_MODES:
            raise ValueError(f"DistillationConfig.latent: expected one of {LATENT_MODES}, got {self.latent!r}")
        if int(self.start_frame) < 0 or (self.stop_frame is not None and int(self.stop_frame) <= int(self.start_frame)):
            raise ValueError("DistillationConfig: start_frame must be >= 0 and stop_frame > start_frame")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class PassResult:
    """One closed-loop pass over frames [start, stop) of the reference.

    Attributes:
        data: the visited states' inputs, labelled with the expert's controls (one segment per
            episode), or None when not recorded.
        episode_lengths: (E,) frames per episode (the last one cut by the end of the frames).
        total_error: (T - 1,) total keypoint error (m) of each state reached, against the
            reference at its frame, before any restart.
        body_error: (T - 1,) the error termination tests (keypoint-carrying bodies), m.
        cpu_time: process CPU seconds of the pass.
        states: the visited states (``qpos``, ``qvel``, ``act`` and ``frame`` arrays, one row
            per row of ``data``), or None when not recorded.
    """

    data: TrainingSet | None
    episode_lengths: np.ndarray
    total_error: np.ndarray
    body_error: np.ndarray
    cpu_time: float
    states: dict | None = None

    def summary(self) -> dict:
        return {
            "episodes": int(len(self.episode_lengths)),
            "median_episode_frames": float(np.median(self.episode_lengths)),
            "mean_total_error_m": float(np.mean(self.total_error)),
            "mean_body_error_m": float(np.mean(self.body_error)),
        }


@dataclass(frozen=True, eq=False)
class DistillationResult:
    """``checkpoint``: the distilled controller (its ``training`` log ends with the ``"dagger"``
    stage); ``log``: one dict per iteration (this run's); ``wall_time``: seconds."""

    checkpoint: ControllerCheckpoint
    log: tuple
    wall_time: float


class _Imitation:
    """What every pass over one reference shares: the simulation model, observation layout,
    reference kinematics and the tracking meter."""

    def __init__(self, body_model, reference: ReferenceTrajectory, spec: ObservationSpec):
        mj = as_mjmodel(body_model)
        if reference.qpos.shape[1] != mj.nq or reference.qvel.shape[1] != mj.nv:
            raise ValueError(
                f"reference: qpos/qvel have {reference.qpos.shape[1]}/{reference.qvel.shape[1]} "
                f"columns, the body model {mj.nq}/{mj.nv}"
            )
        self.model = simulation_model(mj)
        self.reference = reference
        self.n_sub = steps_per_frame(reference.frame_rate, self.model.opt.timestep)
        self.layout = ObservationLayout.build(
            self.model, spec.reference_window, spec.appendage_bodies, spec.joint_names or None
        )
        self.kin = ReferenceKinematics.compute(self.layout, reference.qpos)
        self.meter = TrackingMeter(self.model, reference.qpos)
        self.data = mujoco.MjData(self.model)
        dyn = actuator_dynamics(self.model)
        self.act_range = np.tile([-np.inf, np.inf], (self.model.na, 1))
        self.act_range[dyn.act_index[dyn.stateful]] = dyn.act_range[dyn.stateful]

    def reset(self, frame: int) -> None:
        d, ref = self.data, self.reference
        d.qpos[:] = ref.qpos[frame]
        d.qvel[:] = ref.qvel[frame]
        d.act[:] = ref.activations[frame] if ref.activations is not None else 0.0
        d.ctrl[:] = 0.0
        d.qacc_warmstart[:] = 0.0
        mujoco.mj_forward(self.model, d)

    def observe(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        body = BodyState.from_data(self.layout, self.data)
        r = reference_features(self.layout, self.kin, np.array([frame]), body)[0]
        return r.astype(np.float32), proprioception(self.layout, body)[0].astype(np.float32)


def observation_spec(body_model, reference_window: int = 5, appendage_bodies=DEFAULT_APPENDAGES) -> ObservationSpec:
    """The observation specification (names and sizes, no statistics) for a body model."""
    model = as_mjmodel(body_model)
    layout = ObservationLayout.build(model, reference_window, tuple(appendage_bodies))
    return ObservationSpec(
        reference_window=int(reference_window),
        joint_names=layout.joint_names,
        appendage_bodies=tuple(appendage_bodies),
        actuator_names=tuple(model.actuator(i).name for i in range(model.nu)),
        reference_size=layout.reference_size,
        proprioception_size=layout.proprioception_size,
    )


def imitation_pass(
    sim: _Imitation,
    expert,
    policy: ControllerPolicy | None,
    *,
    start: int,
    stop: int,
    expert_probability: float,
    expert_noise: float,
    latent: str,
    termination: TerminationConfig,
    rng: np.random.Generator,
    spec: ObservationSpec,
    record: bool = True,
) -> PassResult:
    """One closed-loop pass over frames [start, stop) (module docstring).

    ``policy`` None: the expert acts at every step (``expert_probability`` is then 1), its
    controls perturbed by Gaussian noise of std ``expert_noise`` (a scalar or (nu,) per
    actuator). With ``record``, every visited state's observation is stored with the expert's
    (unperturbed) control for it.
    """
    t_cpu = time.process_time()
    model, d, n_sub = sim.model, sim.data, sim.n_sub
    latent_size = policy.config.latent_size if policy is not None else 0
    refs, props, labels, segments = [], [], [], []
    qpos, qvel, act, frames = [], [], [], []
    lengths, total, body = [], [], []
    episode, episode_start, needs_reset, state = 0, start, True, None
    for frame in range(start, stop - 1):
        if needs_reset:
            sim.reset(frame)
            if expert is not None:
                expert.reset()
            state = policy.initial_state() if policy is not None else None
            needs_reset = False
        r_obs, p_obs = sim.observe(frame)
        label = expert.controls(d, frame) if (record or policy is None or expert_probability > 0) else None
        expert_acts = policy is None or (expert_probability > 0 and rng.random() < expert_probability)
        if policy is not None:
            noise = (rng.standard_normal(latent_size) if latent == "sample" else np.zeros(latent_size)).astype(
                np.float32
            )
            action, state, _ = policy.step(r_obs, p_obs, state, noise)
        if expert_acts:
            action = label + expert_noise * rng.standard_normal(len(label))
        if record:
            refs.append(r_obs)
            props.append(p_obs)
            labels.append(label)
            segments.append(episode)
            qpos.append(d.qpos.copy())
            qvel.append(d.qvel.copy())
            act.append(d.act.copy())
            frames.append(frame)
        d.ctrl[:] = np.clip(action, -1.0, 1.0)
        for _ in range(n_sub):
            mujoco.mj_step(model, d)
        mujoco.mj_kinematics(model, d)
        row = sim.meter.measure(d, frame + 1)
        total.append(row[0])
        body.append(row[2])
        if termination.ends(row[2], frame + 1 - episode_start):
            lengths.append(frame + 1 - episode_start)
            episode_start, needs_reset, episode = frame + 1, True, episode + 1
    lengths.append(stop - episode_start)
    data = states = None
    if record and refs:
        data = TrainingSet(
            reference=np.asarray(refs, np.float32),
            proprioception=np.asarray(props, np.float32),
            targets=np.asarray(labels, np.float32),
            segment=np.asarray(segments, int),
            spec=spec,
        )
        states = {
            "qpos": np.asarray(qpos),
            "qvel": np.asarray(qvel),
            "act": np.asarray(act),
            "frame": np.asarray(frames, int),
        }
    return PassResult(
        data=data,
        episode_lengths=np.asarray(lengths, int),
        total_error=np.asarray(total),
        body_error=np.asarray(body),
        cpu_time=time.process_time() - t_cpu,
        states=states,
    )


def perturbed_labels(
    sim: _Imitation, expert, states: dict, copies: int, scale: float, rng: np.random.Generator, spec: ObservationSpec
) -> TrainingSet:
    """The expert's controls at ``copies`` random perturbations of each visited state (rows of
    ``states``, from ``PassResult.states``): every scalar joint moved by N(0, (0.02 rad x scale)^2),
    every velocity by N(0, (0.5 x scale)^2) (rad/s, m/s for the root's translation), the root
    moved by N(0, (2 mm x scale)^2) and turned by N(0, (0.02 rad x scale)^2) about each axis, the
    activations by N(0, (0.02 x scale)^2) (clipped to their range). No simulation: each copy is
    one evaluation of the expert's feedback law, so the network sees that law in every direction
    around the states it visits (the dense, local supervision of linear-feedback policy cloning,
    Merel et al. 2019) at a fraction of the cost of rollouts. Each copy is its own segment."""
    model, d, lay = sim.model, sim.data, sim.layout
    rq = lay.root_qpos
    refs, props, labels = [], [], []
    for qpos, qvel, act, frame in zip(states["qpos"], states["qvel"], states["act"], states["frame"]):
        for _ in range(int(copies)):
            d.qpos[:] = qpos
            d.qpos[lay.joint_qpos] += 0.02 * scale * rng.standard_normal(len(lay.joint_qpos))
            d.qpos[rq : rq + 3] += 0.002 * scale * rng.standard_normal(3)
            quat = d.qpos[rq + 3 : rq + 7].copy()
            mujoco.mju_quatIntegrate(quat, 0.02 * scale * rng.standard_normal(3), 1.0)
            d.qpos[rq + 3 : rq + 7] = quat
            d.qvel[:] = qvel + 0.5 * scale * rng.standard_normal(model.nv)
            if model.na:
                d.act[:] = np.clip(
                    act + 0.02 * scale * rng.standard_normal(model.na), sim.act_range[:, 0], sim.act_range[:, 1]
                )
            mujoco.mj_kinematics(model, d)
            r_obs, p_obs = sim.observe(int(frame))
            refs.append(r_obs)
            props.append(p_obs)
            labels.append(expert.controls(d, int(frame)))
    n = len(labels)
    return TrainingSet(
        reference=np.asarray(refs, np.float32),
        proprioception=np.asarray(props, np.float32),
        targets=np.asarray(labels, np.float32),
        segment=np.arange(n),
        spec=spec,
    )


def action_weights(model: mujoco.MjModel, weighting: str) -> tuple[float, ...] | None:
    """Per-actuator weights of the squared control error (``DistillationConfig.action_weighting``)."""
    if weighting == "none":
        return None
    gain = np.abs(model.actuator_gainprm[:, 0]) * np.abs(model.actuator_gear[:, 0])
    gain = np.where(gain > 0, gain, gain[gain > 0].min() if (gain > 0).any() else 1.0)
    w = gain if weighting == "gain" else np.sqrt(gain)
    return tuple(float(x) for x in w / w.mean())


def distill_controller(
    body_model: BodyModel | mujoco.MjModel,
    reference: ReferenceTrajectory,
    expert,
    controller: ControllerConfig | None = None,
    config: DistillationConfig | None = None,
    *,
    initial: ControllerCheckpoint | None = None,
    on_iteration: Callable[[dict, ControllerCheckpoint], None] | None = None,
) -> DistillationResult:
    """Distil ``expert`` into a MIMIC network on ``reference`` (module docstring).

    Args:
        body_model: the body model the reference and the expert were made for.
        reference: poses, velocities and activations to imitate.
        expert: a ``TrackingExpert`` on the same model and reference (anything with
            ``controls(data, frame)`` and ``reset()``).
        controller: the network's sizes (default ``ControllerConfig()``); ignored with ``initial``.
        config: the distillation's parameters (default ``DistillationConfig()``).
        initial: continue from this checkpoint (weights, normalisation, and the iteration count
            of its last ``"dagger"`` stage).
        on_iteration: called after every iteration with its log entry (a dict) and the
            checkpoint so far (save it to be able to resume).

    Raises:
        ValueError: a checkpoint or reference that does not fit the body model, frames outside
            the reference.
    """
    t_start, t_cpu = time.perf_counter(), time.process_time()
    config = config or DistillationConfig()
    mj = as_mjmodel(body_model)
    start = int(config.start_frame)
    stop = reference.n_frames if config.stop_frame is None else int(config.stop_frame)
    if stop > reference.n_frames or stop - start < 2:
        raise ValueError(
            f"DistillationConfig: frames [{start}, {stop}) are not inside the reference's "
            f"{reference.n_frames} frames (at least 2 needed)"
        )
    if initial is not None:
        check_checkpoint_compatible(initial, mj)
        spec = initial.config.observation
    else:
        window = controller.observation.reference_window if controller is not None else 5
        spec = observation_spec(mj, window)
    sim = _Imitation(mj, reference, spec)
    rng = np.random.default_rng(config.seed)
    weights = config.training.action_weights or action_weights(mj, config.action_weighting)
    training = replace(config.training, action_weights=weights, seed=config.seed)
    noise = float(config.expert_noise) / np.sqrt(np.asarray(weights) if weights else np.ones(mj.nu))
    common = dict(start=start, stop=stop, termination=config.termination, spec=spec, latent=config.latent)

    previous = [s for s in (initial.training if initial else ()) if s.get("stage") == "dagger"]
    done = sum(len(s.get("iterations", ())) for s in previous)
    log, datasets = [], []
    trainer = None

    def stage() -> dict:
        return {
            "stage": "dagger",
            "objective": (
                "weighted mse(action, expert control) + kl_weight * KL(latent || AR(1) prior) on "
                "the states the network visits in closed loop (DAgger; DART noise on the expert)"
            ),
            "distillation_config": _jsonable(config.to_dict()),
            "action_weights": list(weights) if weights else None,
            "expert": _expert_description(expert),
            "frames": [start, stop],
            "resumed_from_iteration": done,
            "iterations": list(log),
            "wall_time_s": round(time.perf_counter() - t_start, 3),
            "cpu_time_s": round(time.process_time() - t_cpu, 3),
            "software": software_versions(),
        }

    def augment(passes) -> list:
        if not config.perturbations:
            return []
        return [
            perturbed_labels(sim, expert, p.states, config.perturbations, config.perturbation_scale, rng, spec)
            for p in passes
        ]

    def report():
        if on_iteration is not None:
            on_iteration(log[-1], _checkpoint(net_config, trainer.params, initial, stage()))

    if initial is None:
        # Iteration 0: the expert's noisy passes, which also fix the normalisation statistics.
        passes = [
            imitation_pass(sim, expert, None, expert_probability=1.0, expert_noise=noise, rng=rng, **common)
            for _ in range(max(1, int(config.expert_passes)))
        ]
        data = TrainingSet.concatenate([p.data for p in passes] + augment(passes))
        datasets.append(data)
        ctrl = controller or ControllerConfig(n_actions=mj.nu)
        net_config = replace(
            ctrl,
            n_actions=mj.nu,
            observation=spec.with_statistics(data.reference, data.proprioception, min_std=config.min_std),
        )
        trainer = SupervisedTrainer(net_config, training)
        history = trainer.fit(data, int(config.steps_per_iteration))
        log.append(_entry(done, "expert", passes, data, history, trainer, None, t_start))
        report()
        n_iter = int(config.iterations) - 1
    else:
        net_config = initial.config
        trainer = SupervisedTrainer(net_config, training, initial.params)
        n_iter = int(config.iterations)
    for _ in range(n_iter):
        policy = ControllerPolicy(_checkpoint(net_config, trainer.params, initial))
        passes = [
            imitation_pass(
                sim, expert, policy, expert_probability=config.expert_probability, expert_noise=noise, rng=rng, **common
            )
            for _ in range(max(1, int(config.student_passes)))
        ]
        new = TrainingSet.concatenate([p.data for p in passes])
        before = trainer.evaluate(new)  # the student's error on its own states, before training on them
        datasets.append(TrainingSet.concatenate([new] + augment(passes)))
        data = TrainingSet.concatenate(datasets)
        history = trainer.fit(data, int(config.steps_per_iteration))
        log.append(_entry(done + len(log), "student", passes, data, history, trainer, before, t_start))
        report()
    ckpt = _checkpoint(net_config, trainer.params, initial, stage())
    return DistillationResult(checkpoint=ckpt, log=tuple(log), wall_time=time.perf_counter() - t_start)


def _checkpoint(config, params, initial, stage=None) -> ControllerCheckpoint:
    history = initial.training if initial is not None else ()
    return ControllerCheckpoint(
        config=config,
        params=params,
        training=history + ((stage,) if stage else ()),
        extra=dict(initial.extra) if initial is not None else {},
    )


def _entry(index, actor, passes, data, history, trainer, before, t_start) -> dict:
    lengths = np.concatenate([p.episode_lengths for p in passes])
    total = np.concatenate([p.total_error for p in passes])
    return {
        "iteration": int(index),
        "actor": actor,
        "passes": len(passes),
        "episodes": int(len(lengths)),
        "median_episode_frames": float(np.median(lengths)),
        "mean_total_error_m": float(total.mean()),
        "new_frames": int(sum(len(p.data) for p in passes)),
        "frames": int(len(data)),
        "error_on_new_states_before_training": None if before is None else float(before),
        "training_steps": int(trainer.steps_done),
        "final_loss": float(history["loss"][-1]),
        "final_mse": float(history["mse"][-1]),
        "collection_cpu_s": round(float(sum(p.cpu_time for p in passes)), 3),
        "elapsed_s": round(time.perf_counter() - t_start, 3),
    }


def _expert_description(expert) -> dict:
    cfg = getattr(expert, "config", None)
    out = {"type": type(expert).__name__}
    if cfg is not None and hasattr(cfg, "to_dict"):
        out["config"] = _jsonable(cfg.to_dict())
    return out


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    return obj

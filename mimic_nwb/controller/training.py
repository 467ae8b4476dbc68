"""Supervised training of the controller as an inverse-dynamics model: from (current state,
next reference frames) to the actuator controls that inverse dynamics found for that frame.

Data (``build_training_set``): for every frame t of a reference, the body is put exactly in the
reference state (qpos, qvel and activation at t); the inputs are the proprioception of that
state and the reference features of frames t+1 .. t+W relative to it; the target is the
control inverse dynamics applies from frame t (``InverseDynamicsResult.actuator_controls``,
computed with ``control_hold="frame"``: one control per frame, as the controller acts).

Objective, on random windows of ``sequence_length`` consecutive frames (the LSTM starts each
window from its zero state, as an episode does)::

    loss = mean_(t, actuators) (action - target)^2 + kl_weight * mean_t KL_t

with the latent sampled by reparameterisation and KL_t against the autoregressive prior
(``kl_to_prior``). Optimiser: Adam with global-norm gradient clipping (optax). Optionally,
Gaussian noise of ``input_noise`` (in normalised units) is added to the inputs, which makes the
policy less brittle off the reference. Supervised training alone does not teach recovery from
errors (the states are always on the reference); closed-loop imitation needs reinforcement
learning for that (see ``checkpoint`` for how a PPO stage fits in).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from .checkpoint import ControllerCheckpoint
from .config import ControllerConfig, ObservationSpec
from .network import initial_carry, kl_to_prior, network_from_params, network_params
from .observations import (
    DEFAULT_APPENDAGES,
    BodyState,
    ObservationLayout,
    ReferenceKinematics,
    ReferenceTrajectory,
    proprioception,
    reference_features,
)

__all__ = ["TrainingConfig", "TrainingResult", "TrainingSet", "build_training_set",
           "train_controller"]


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """Inputs and targets, one row per reference frame (several references concatenated).

    Attributes:
        reference: (N, reference_size) raw reference features.
        proprioception: (N, proprioception_size) raw proprioception.
        targets: (N, n_actions) controls in [-1, 1].
        segment: (N,) int, which reference each row came from (windows never cross segments).
        spec: the ObservationSpec (names and sizes; no statistics yet).
    """

    reference: np.ndarray
    proprioception: np.ndarray
    targets: np.ndarray
    segment: np.ndarray
    spec: ObservationSpec

    def __len__(self) -> int:
        return len(self.targets)

    @staticmethod
    def concatenate(sets: Sequence["TrainingSet"]) -> "TrainingSet":
        if not sets:
            raise ValueError("training sets: none given")
        spec = sets[0].spec
        for s in sets[1:]:
            if s.spec.to_json_dict() != spec.to_json_dict():
                raise ValueError("training sets: observation specifications differ")
        offset, segs = 0, []
        for s in sets:
            segs.append(s.segment + offset)
            offset += int(s.segment.max()) + 1
        return TrainingSet(
            reference=np.concatenate([s.reference for s in sets]),
            proprioception=np.concatenate([s.proprioception for s in sets]),
            targets=np.concatenate([s.targets for s in sets]),
            segment=np.concatenate(segs), spec=spec,
        )


def build_training_set(body_model, reference: ReferenceTrajectory, controls: np.ndarray, *,
                       reference_window: int = 5,
                       appendage_bodies: Sequence[str] = DEFAULT_APPENDAGES) -> TrainingSet:
    """Inputs and targets for every frame of ``reference``.

    Args:
        body_model: BodyModel or MjModel.
        reference: poses, velocities and activations (``ReferenceTrajectory.from_inverse_dynamics``).
        controls: (T, nu) target controls (``InverseDynamicsResult.actuator_controls``).
        reference_window: future frames the controller sees.
        appendage_bodies: observed appendages.
    """
    from ..simulate.physics import as_mjmodel  # lazy: simulate imports the controller

    model = as_mjmodel(body_model)
    controls = np.asarray(controls, dtype=float)
    if controls.shape != (reference.n_frames, model.nu):
        raise ValueError(f"controls: expected shape ({reference.n_frames}, {model.nu}), got {controls.shape}")
    if not np.isfinite(controls).all():
        raise ValueError("controls: contain NaN or inf")
    if reference.qpos.shape[1] != model.nq or reference.qvel.shape[1] != model.nv:
        raise ValueError(f"reference: qpos/qvel have {reference.qpos.shape[1]}/{reference.qvel.shape[1]} "
                         f"columns, the body model {model.nq}/{model.nv}")
    layout = ObservationLayout.build(model, reference_window, tuple(appendage_bodies))
    kin = ReferenceKinematics.compute(layout, reference.qpos)
    frames = np.arange(reference.n_frames)
    body = BodyState.from_reference(layout, kin, reference.qvel, reference.activations, frames)
    spec = ObservationSpec(
        reference_window=int(reference_window), joint_names=layout.joint_names,
        appendage_bodies=tuple(appendage_bodies),
        actuator_names=tuple(model.actuator(i).name for i in range(model.nu)),
        reference_size=layout.reference_size, proprioception_size=layout.proprioception_size,
    )
    return TrainingSet(
        reference=reference_features(layout, kin, frames, body).astype(np.float32),
        proprioception=proprioception(layout, body).astype(np.float32),
        targets=controls.astype(np.float32), segment=np.zeros(len(frames), dtype=int), spec=spec,
    )


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings (defaults: a few minutes on a 2-core CPU for a 1000-frame clip).

    Attributes:
        steps: optimiser steps; batch_size: windows per step; sequence_length: frames per window.
        learning_rate: Adam step size; max_grad_norm: global-norm clipping.
        validation_fraction: share of each segment's last frames held out.
        input_noise: std of Gaussian noise added to the normalised inputs (0 = none).
        seed: initialisation and sampling seed.
        log_every: steps between history entries (validation loss included).
    """

    steps: int = 1500
    batch_size: int = 16
    sequence_length: int = 32
    learning_rate: float = 3e-4
    max_grad_norm: float = 1.0
    validation_fraction: float = 0.1
    input_noise: float = 0.0
    seed: int = 0
    log_every: int = 50

    def __post_init__(self):
        for name in ("steps", "batch_size", "sequence_length", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainingConfig.{name}: must be >= 1, got {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainingConfig.learning_rate: must be > 0, got {self.learning_rate!r}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("TrainingConfig.validation_fraction: must be in [0, 1), "
                             f"got {self.validation_fraction!r}")
        if not self.input_noise >= 0:
            raise ValueError(f"TrainingConfig.input_noise: must be >= 0, got {self.input_noise!r}")


@dataclass(frozen=True, eq=False)
class TrainingResult:
    """``checkpoint``: the trained controller; ``history``: arrays ``step``, ``loss``, ``mse``,
    ``kl`` (training batches, mean since the previous entry) and ``validation_mse`` (NaN without
    validation data); ``wall_time``: seconds."""

    checkpoint: ControllerCheckpoint
    history: dict
    wall_time: float

    @property
    def final_loss(self) -> float:
        return float(self.history["loss"][-1])


def _windows(segment: np.ndarray, mask: np.ndarray, length: int) -> np.ndarray:
    """Start indices of windows of ``length`` rows inside one segment and inside ``mask``."""
    starts = []
    for s in np.unique(segment):
        rows = np.flatnonzero((segment == s) & mask)
        if len(rows) >= length:
            # rows of a segment inside the mask are contiguous (the split holds out a tail)
            starts.extend(rows[: len(rows) - length + 1].tolist())
    return np.asarray(starts, dtype=int)


def _split(data: TrainingSet, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    train = np.ones(len(data), dtype=bool)
    for s in np.unique(data.segment):
        rows = np.flatnonzero(data.segment == s)
        n_val = int(round(fraction * len(rows)))
        if n_val:
            train[rows[-n_val:]] = False
    return train, ~train


def train_controller(
    data: TrainingSet,
    config: ControllerConfig | None = None,
    training: TrainingConfig | None = None,
    *,
    initial: ControllerCheckpoint | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainingResult:
    """Train (or continue training) the controller on ``data``.

    Args:
        data: from ``build_training_set`` (or ``TrainingSet.concatenate``).
        config: network sizes (default ``ControllerConfig()``); its observation spec is replaced
            by the data's, with normalisation statistics fitted on the training rows. A config
            whose reference window or actuator count differs from the data's is an error.
        training: optimisation settings (default ``TrainingConfig()``).
        initial: continue from this checkpoint (its config and statistics are kept).
        progress: called as ``progress(step, steps, loss)`` at every history entry.

    Returns:
        a TrainingResult whose checkpoint records this stage in ``training``.
    """
    t_start = time.perf_counter()
    training = training or TrainingConfig()
    train_rows, val_rows = _split(data, training.validation_fraction)
    if initial is not None:
        config = initial.config
        _check_data_matches(config, data)
    else:
        config = config or ControllerConfig(n_actions=data.targets.shape[1])
        _check_data_matches(config, data, check_sizes=False)
        spec = data.spec.with_statistics(data.reference[train_rows], data.proprioception[train_rows])
        config = replace(config, observation=spec)
    length = min(int(training.sequence_length), int(np.bincount(data.segment[train_rows]).max()))
    starts = _windows(data.segment, train_rows, length)
    if len(starts) == 0:
        raise ValueError(f"training data: no window of {length} consecutive training frames")
    val_starts = _windows(data.segment, val_rows, min(length, max(1, int(val_rows.sum()))))

    norm = config.observation.normalisation()
    ref = (data.reference - norm["reference_mean"]) / norm["reference_std"]
    prop = (data.proprioception - norm["proprioception_mean"]) / norm["proprioception_std"]
    ref, prop, targets = (jnp.asarray(a, jnp.float32) for a in (ref, prop, data.targets))

    network = network_from_params(config, initial.params if initial else None, seed=training.seed)
    _, params, _ = nnx.split(network, nnx.Param, ...)
    flat_params = ravel_pytree(params)[0]
    steps = _compiled_steps(config, length, training)
    opt_state = steps.optimizer.init(flat_params)
    arrays = (ref, prop, targets)
    train_step, eval_mse = steps.train_step, steps.eval_mse

    rng = np.random.default_rng(training.seed)
    key = jax.random.key(training.seed)
    hist = {"step": [], "loss": [], "mse": [], "kl": [], "validation_mse": []}
    acc = np.zeros(3)
    n_acc = 0
    for step in range(1, int(training.steps) + 1):
        idx = jnp.asarray(rng.choice(starts, size=training.batch_size, replace=len(starts) < training.batch_size))
        key, sub = jax.random.split(key)
        flat_params, opt_state, loss, mse, kl = train_step(flat_params, opt_state, arrays, idx, sub)
        acc += np.array([float(loss), float(mse), float(kl)])
        n_acc += 1
        if step % training.log_every == 0 or step == training.steps:
            mean = acc / n_acc
            val = float(eval_mse(flat_params, arrays, jnp.asarray(val_starts))) if len(val_starts) else float("nan")
            for name, v in zip(("step", "loss", "mse", "kl", "validation_mse"), (step, *mean, val)):
                hist[name].append(v)
            acc[:], n_acc = 0.0, 0
            if progress is not None:
                progress(step, int(training.steps), float(mean[0]))

    network = nnx.merge(steps.graphdef, steps.unravel(flat_params), steps.rest)
    history = {k: np.asarray(v) for k, v in hist.items()}
    wall = time.perf_counter() - t_start
    stage = {
        "stage": "supervised",
        "objective": "mse(action, inverse-dynamics control) + kl_weight * KL(latent || AR(1) prior)",
        "training_config": asdict(training),
        "frames": int(len(data)), "training_frames": int(train_rows.sum()),
        "segments": int(len(np.unique(data.segment))),
        "final_loss": float(history["loss"][-1]), "final_mse": float(history["mse"][-1]),
        "final_validation_mse": float(history["validation_mse"][-1]),
        "wall_time_s": round(wall, 3),
        "software": _software(),
    }
    ckpt = ControllerCheckpoint(
        config=config, params=network_params(network),
        training=(initial.training if initial else ()) + (stage,),
        extra=dict(initial.extra) if initial else {},
    )
    return TrainingResult(checkpoint=ckpt, history=history, wall_time=wall)


class _Steps:
    """The jitted training and evaluation steps of one (config, window length, optimiser)."""

    def __init__(self, config: ControllerConfig, length: int, training: TrainingConfig):
        network = nnx.eval_shape(lambda: network_from_params(config))
        graphdef, params, rest = nnx.split(network, nnx.Param, ...)
        # One flat parameter vector for the optimiser: the same Adam, but XLA compiles a handful
        # of vector ops instead of a copy per parameter array (halves the compile time here).
        _, unravel = ravel_pytree(jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), params))
        self.graphdef, self.rest, self.unravel = graphdef, rest, unravel
        self.optimizer = optimizer = optax.chain(optax.clip_by_global_norm(training.max_grad_norm),
                                                 optax.adam(training.learning_rate))
        offsets = jnp.arange(length)
        noise_std = float(training.input_noise)

        # The data are arguments, not closure constants: XLA would try to constant-fold gathers
        # from megabytes of embedded constants, which makes compiling several times slower.
        def sequence_loss(flat, arrays, idx, key):
            """idx (B,) window starts; returns (loss, (mse, kl))."""
            net = nnx.merge(graphdef, unravel(flat), rest)
            rows = idx[:, None] + offsets[None, :]  # (B, S)
            r, p, y = (a[rows] for a in arrays)
            k_lat, k_noise = jax.random.split(key)
            if noise_std > 0:
                kr, kp = jax.random.split(k_noise)
                r = r + noise_std * jax.random.normal(kr, r.shape)
                p = p + noise_std * jax.random.normal(kp, p.shape)
            enc = net.encode(r)
            eps = jax.random.normal(k_lat, enc["latent_mean"].shape)
            z = enc["latent_mean"] + enc["latent_scale"] * eps
            z_prev = jnp.concatenate([jnp.zeros_like(z[:, :1]), z[:, :-1]], axis=1)
            first = jnp.zeros(z.shape[:2], bool).at[:, 0].set(True)
            kl = kl_to_prior(enc["latent_mean"], enc["latent_scale"], z_prev, first, config.prior_ar)
            if config.decoder == "lstm":
                def step(carry, xs):
                    zt, pt = xs
                    action, carry, _ = net.decode(zt, pt, carry)
                    return carry, action
                carry0 = initial_carry(config, (rows.shape[0],))
                _, actions = jax.lax.scan(step, carry0, (jnp.swapaxes(z, 0, 1), jnp.swapaxes(p, 0, 1)))
                actions = jnp.swapaxes(actions, 0, 1)
            else:
                actions, _, _ = net.decode(z, p, ())
            mse = jnp.mean((actions - y) ** 2)
            kl_mean = jnp.mean(kl)
            return mse + config.kl_weight * kl_mean, (mse, kl_mean)

        @jax.jit
        def train_step(flat, opt_state, arrays, idx, key):
            (loss, (mse, kl)), grads = jax.value_and_grad(sequence_loss, has_aux=True)(flat, arrays, idx, key)
            updates, opt_state = optimizer.update(grads, opt_state, flat)
            return optax.apply_updates(flat, updates), opt_state, loss, mse, kl

        @jax.jit
        def eval_mse(flat, arrays, idx):
            return sequence_loss(flat, arrays, idx, jax.random.key(0))[1][0]

        self.train_step, self.eval_mse = train_step, eval_mse


_STEPS_CACHE: dict = {}


def _compiled_steps(config: ControllerConfig, length: int, training: TrainingConfig) -> _Steps:
    """Reuse jitted steps (and XLA's compilations) across calls with the same network,
    window length and optimiser, e.g. when training continues from a checkpoint."""
    key = (config.to_json(), int(length), float(training.learning_rate),
           float(training.max_grad_norm), float(training.input_noise))
    if key not in _STEPS_CACHE:
        if len(_STEPS_CACHE) >= 8:
            _STEPS_CACHE.pop(next(iter(_STEPS_CACHE)))
        _STEPS_CACHE[key] = _Steps(config, length, training)
    return _STEPS_CACHE[key]


def _check_data_matches(config: ControllerConfig, data: TrainingSet, check_sizes: bool = True):
    spec = data.spec
    if config.n_actions != data.targets.shape[1]:
        raise ValueError(f"controller config: n_actions={config.n_actions}, the training targets "
                         f"have {data.targets.shape[1]} actuators")
    # a config that came with sizes (from a checkpoint) must match; a fresh one takes the data's
    sized = check_sizes or config.observation.reference_size
    if config.observation.reference_window != spec.reference_window and sized:
        raise ValueError(
            f"controller config: reference window {config.observation.reference_window}, the training "
            f"data was built with {spec.reference_window}"
        )
    if check_sizes and (config.observation.reference_size != spec.reference_size
                        or config.observation.proprioception_size != spec.proprioception_size):
        raise ValueError("controller config: input sizes differ from the training data's observation spec")


def _software() -> dict:
    import flax
    import mujoco

    try:
        from importlib.metadata import version

        own = version("ndx-mimic")
    except Exception:  # not installed
        own = "unknown"
    return {"ndx-mimic": own, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "mujoco": mujoco.__version__}

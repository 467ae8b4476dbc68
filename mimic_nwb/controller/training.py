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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

from ..body_model import as_mjmodel
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

__all__ = [
    "SupervisedTrainer",
    "TrainingConfig",
    "TrainingResult",
    "TrainingSet",
    "build_training_set",
    "software_versions",
    "train_controller",
]


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
    def concatenate(sets: Sequence[TrainingSet]) -> TrainingSet:
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
            segment=np.concatenate(segs),
            spec=spec,
        )


def build_training_set(
    body_model,
    reference: ReferenceTrajectory,
    controls: np.ndarray,
    *,
    reference_window: int = 5,
    appendage_bodies: Sequence[str] = DEFAULT_APPENDAGES,
) -> TrainingSet:
    """Inputs and targets for every frame of ``reference``.

    Args:
        body_model: BodyModel or MjModel.
        reference: poses, velocities and activations (``ReferenceTrajectory.from_inverse_dynamics``).
        controls: (T, nu) target controls (``InverseDynamicsResult.actuator_controls``).
        reference_window: future frames the controller sees.
        appendage_bodies: observed appendages.
    """
    model = as_mjmodel(body_model)
    controls = np.asarray(controls, dtype=float)
    if controls.shape != (reference.n_frames, model.nu):
        raise ValueError(f"controls: expected shape ({reference.n_frames}, {model.nu}), got {controls.shape}")
    if not np.isfinite(controls).all():
        raise ValueError("controls: contain NaN or inf")
    if reference.qpos.shape[1] != model.nq or reference.qvel.shape[1] != model.nv:
        raise ValueError(
            f"reference: qpos/qvel have {reference.qpos.shape[1]}/{reference.qvel.shape[1]} "
            f"columns, the body model {model.nq}/{model.nv}"
        )
    layout = ObservationLayout.build(model, reference_window, tuple(appendage_bodies))
    kin = ReferenceKinematics.compute(layout, reference.qpos)
    frames = np.arange(reference.n_frames)
    body = BodyState.from_reference(layout, kin, reference.qvel, reference.activations, frames)
    spec = ObservationSpec(
        reference_window=int(reference_window),
        joint_names=layout.joint_names,
        appendage_bodies=tuple(appendage_bodies),
        actuator_names=tuple(model.actuator(i).name for i in range(model.nu)),
        reference_size=layout.reference_size,
        proprioception_size=layout.proprioception_size,
    )
    return TrainingSet(
        reference=reference_features(layout, kin, frames, body).astype(np.float32),
        proprioception=proprioception(layout, body).astype(np.float32),
        targets=controls.astype(np.float32),
        segment=np.zeros(len(frames), dtype=int),
        spec=spec,
    )


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings (defaults: a few minutes on a 2-core CPU for a 1000-frame clip).

    Attributes:
        steps: optimiser steps; batch_size: windows per step; sequence_length: frames per window
            (a window that reaches the end of its segment is cut there: its missing frames are
            masked out of the loss).
        learning_rate: Adam step size; max_grad_norm: global-norm clipping.
        final_learning_rate: None (the step size stays ``learning_rate``), or the step size that
            a cosine schedule reaches at the end of every ``fit`` call (every DAgger iteration
            restarts it). Why: the distilled network must be precise to about 0.005 (control
            units) on the rodent's spine tendons; with the step size decaying from 1e-3 to 1e-5
            in every iteration the demo clip's 5-iteration student imitated longer (median
            episode 32 frames against 25 with a constant 1e-3).
        validation_fraction: share of each segment's last frames held out.
        input_noise: std of Gaussian noise added to the normalised inputs (0 = none).
        action_weights: per-actuator weights of the squared error (n_actions values, normalised
            to mean 1), or None (all 1). Weighting by the actuators' gains makes the error count
            in force units: a control error on a strong actuator (the rodent's spine tendons,
            gain 20 N m) moves the body far more than one on a finger (0.025 N m).
        seed: initialisation and sampling seed.
        log_every: steps between history entries (validation loss included).
    """

    steps: int = 1500
    batch_size: int = 16
    sequence_length: int = 32
    learning_rate: float = 3e-4
    final_learning_rate: float | None = None
    max_grad_norm: float = 1.0
    validation_fraction: float = 0.1
    input_noise: float = 0.0
    action_weights: tuple[float, ...] | None = None
    seed: int = 0
    log_every: int = 50

    def __post_init__(self):
        for name in ("steps", "batch_size", "sequence_length", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainingConfig.{name}: must be >= 1, got {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"TrainingConfig.learning_rate: must be > 0, got {self.learning_rate!r}")
        if self.final_learning_rate is not None and not (
            np.isfinite(self.final_learning_rate) and 0 < self.final_learning_rate <= self.learning_rate
        ):
            raise ValueError(
                f"TrainingConfig.final_learning_rate: must be in (0, learning_rate], got {self.final_learning_rate!r}"
            )
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"TrainingConfig.validation_fraction: must be in [0, 1), got {self.validation_fraction!r}")
        if not self.input_noise >= 0:
            raise ValueError(f"TrainingConfig.input_noise: must be >= 0, got {self.input_noise!r}")
        if self.action_weights is not None:
            w = tuple(float(x) for x in self.action_weights)
            if not w or not all(np.isfinite(x) and x >= 0 for x in w) or sum(w) <= 0:
                raise ValueError("TrainingConfig.action_weights: must be finite, >= 0 and not all 0")
            object.__setattr__(self, "action_weights", w)


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


def _split(data: TrainingSet, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    train = np.ones(len(data), dtype=bool)
    for s in np.unique(data.segment):
        rows = np.flatnonzero(data.segment == s)
        n_val = int(round(fraction * len(rows)))
        if n_val:
            train[rows[-n_val:]] = False
    return train, ~train


def _capacity(n: int) -> int:
    """Rows the device arrays are padded to: the next power of two (>= 256), so that a growing
    data set (DAgger) recompiles the training step only a logarithmic number of times."""
    return max(256, 1 << int(np.ceil(np.log2(max(n, 1)))))


class SupervisedTrainer:
    """Fits the network to (inputs, target controls) by minibatch Adam, keeping the parameters
    and the optimiser's state between calls to ``fit`` (so data can be added in between, as
    DAgger does). Pure JAX: the same code runs on a GPU where one is present.

    Args:
        config: the network (with its observation statistics: inputs are normalised by them).
        training: optimisation settings (``steps`` is ignored: ``fit`` says how many).
        params: initial parameters (a checkpoint's), or None (fresh, from ``training.seed``).
    """

    def __init__(self, config: ControllerConfig, training: TrainingConfig, params: dict | None = None):
        if not config.observation.normalised:
            raise ValueError("controller config: the observation spec has no normalisation statistics")
        if training.action_weights is not None and len(training.action_weights) != config.n_actions:
            raise ValueError(
                f"TrainingConfig.action_weights: {len(training.action_weights)} values for {config.n_actions} actuators"
            )
        self.config, self.training = config, training
        network = network_from_params(config, params, seed=training.seed)
        _, state, _ = nnx.split(network, nnx.Param, ...)
        self.steps = _compiled_steps(config, int(training.sequence_length), training)
        self.flat_params = ravel_pytree(state)[0]
        self.opt_state = self.steps.optimizer.init(self.flat_params)
        self.rng = np.random.default_rng(training.seed)
        self.key = jax.random.key(training.seed)
        self.steps_done = 0

    @property
    def params(self) -> dict:
        """The current parameters (nested dict of numpy arrays, as a checkpoint stores them)."""
        s = self.steps
        return network_params(nnx.merge(s.graphdef, s.unravel(self.flat_params), s.rest))

    def _arrays(self, data: TrainingSet):
        norm = self.config.observation.normalisation()
        n, cap = len(data), _capacity(len(data) + int(self.training.sequence_length))

        def pad(a, fill=0.0):
            out = np.full((cap, *a.shape[1:]), fill, np.float32)
            out[:n] = a
            return jnp.asarray(out)

        ref = (data.reference - norm["reference_mean"]) / norm["reference_std"]
        prop = (data.proprioception - norm["proprioception_mean"]) / norm["proprioception_std"]
        segment = np.full(cap, -1, np.int32)
        segment[:n] = data.segment
        return (pad(ref), pad(prop), pad(data.targets), jnp.asarray(segment)), cap

    @staticmethod
    def _mask(rows: np.ndarray, cap: int) -> jnp.ndarray:
        m = np.zeros(cap, np.float32)
        m[: len(rows)] = rows
        return jnp.asarray(m)

    def fit(
        self,
        data: TrainingSet,
        steps: int,
        *,
        train_rows: np.ndarray | None = None,
        validation_rows: np.ndarray | None = None,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> dict:
        """``steps`` optimiser steps on windows of ``data`` starting in ``train_rows`` (bool (N,),
        default all). Returns the history (see ``TrainingResult``); ``step`` counts from the
        trainer's first call."""
        tr = self.training
        train_rows = np.ones(len(data), bool) if train_rows is None else np.asarray(train_rows, bool)
        validation_rows = np.zeros(len(data), bool) if validation_rows is None else np.asarray(validation_rows, bool)
        starts = np.flatnonzero(train_rows)
        if len(starts) == 0:
            raise ValueError("training data: no training frames")
        arrays, cap = self._arrays(data)
        train_mask, val_mask = self._mask(train_rows, cap), self._mask(validation_rows, cap)
        val_starts = np.flatnonzero(validation_rows)
        hist = {"step": [], "loss": [], "mse": [], "kl": [], "validation_mse": []}
        acc, n_acc = np.zeros(3), 0
        train_step = self.steps.train_step
        for i in range(1, int(steps) + 1):
            self.steps.set_learning_rate(self.opt_state, self._learning_rate(i - 1, int(steps)))
            idx = jnp.asarray(self.rng.choice(starts, size=tr.batch_size, replace=len(starts) < tr.batch_size))
            self.key, sub = jax.random.split(self.key)
            self.flat_params, self.opt_state, loss, mse, kl = train_step(
                self.flat_params, self.opt_state, arrays, train_mask, idx, sub
            )
            acc += np.array([float(loss), float(mse), float(kl)])
            n_acc += 1
            self.steps_done += 1
            if i % tr.log_every == 0 or i == int(steps):
                mean = acc / n_acc
                val = self.evaluate_rows(arrays, val_mask, val_starts) if len(val_starts) else float("nan")
                for name, v in zip(("step", "loss", "mse", "kl", "validation_mse"), (self.steps_done, *mean, val)):
                    hist[name].append(v)
                acc[:], n_acc = 0.0, 0
                if progress is not None:
                    progress(i, int(steps), float(mean[0]))
        return {k: np.asarray(v) for k, v in hist.items()}

    def _learning_rate(self, i: int, steps: int) -> float:
        """Step size of step ``i`` (from 0) of a ``fit`` of ``steps`` steps (cosine schedule)."""
        lr, final = float(self.training.learning_rate), self.training.final_learning_rate
        if final is None or steps < 2:
            return lr
        return float(final) + (lr - float(final)) * 0.5 * (1.0 + np.cos(np.pi * i / (steps - 1)))

    def evaluate_rows(self, arrays, mask, starts: np.ndarray, batch: int = 512) -> float:
        """Mean squared (weighted) action error over windows starting at ``starts``."""
        total, count = 0.0, 0
        for b in range(0, len(starts), batch):
            chunk = starts[b : b + batch]
            idx = np.concatenate([chunk, np.full(batch - len(chunk), chunk[0])])  # one compiled shape
            sums = np.asarray(self.steps.eval_sums(self.flat_params, arrays, mask, jnp.asarray(idx)))
            sums = sums[: len(chunk)]
            total += float(sums[:, 0].sum())
            count += float(sums[:, 1].sum())
        return total / max(count, 1.0)

    def evaluate(self, data: TrainingSet, rows: np.ndarray | None = None) -> float:
        """Mean squared (weighted) action error on ``data`` (rows: bool (N,), default all), with
        the latent at its mean."""
        rows = np.ones(len(data), bool) if rows is None else np.asarray(rows, bool)
        arrays, cap = self._arrays(data)
        return self.evaluate_rows(arrays, self._mask(rows, cap), np.flatnonzero(rows))


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
    training = replace(training, sequence_length=length)
    trainer = SupervisedTrainer(config, training, initial.params if initial else None)
    history = trainer.fit(data, int(training.steps), train_rows=train_rows, validation_rows=val_rows, progress=progress)
    wall = time.perf_counter() - t_start
    stage = {
        "stage": "supervised",
        "objective": "mse(action, inverse-dynamics control) + kl_weight * KL(latent || AR(1) prior)",
        "training_config": asdict(training),
        "frames": int(len(data)),
        "training_frames": int(train_rows.sum()),
        "segments": int(len(np.unique(data.segment))),
        "final_loss": float(history["loss"][-1]),
        "final_mse": float(history["mse"][-1]),
        "final_validation_mse": float(history["validation_mse"][-1]),
        "wall_time_s": round(wall, 3),
        "software": software_versions(),
    }
    ckpt = ControllerCheckpoint(
        config=config,
        params=trainer.params,
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
        # The step size is a hyper-parameter in the optimiser's state (set before every step
        # by ``set_learning_rate``): a schedule needs no recompilation.
        self.optimizer = optimizer = optax.chain(
            optax.clip_by_global_norm(training.max_grad_norm),
            optax.inject_hyperparams(optax.adam)(learning_rate=training.learning_rate),
        )
        offsets = jnp.arange(length)
        noise_std = float(training.input_noise)
        weights = (
            jnp.ones(config.n_actions)
            if training.action_weights is None
            else jnp.asarray(training.action_weights, jnp.float32)
        )
        weights = weights / weights.mean()

        # The data are arguments, not closure constants: XLA would try to constant-fold gathers
        # from megabytes of embedded constants, which makes compiling several times slower.
        def window_errors(flat, arrays, mask, idx, key, sample):
            """idx (B,) window starts; (B, S) weighted squared errors, KL and validity."""
            net = nnx.merge(graphdef, unravel(flat), rest)
            ref, prop, targets, segment = arrays
            rows = idx[:, None] + offsets[None, :]  # (B, S); arrays are padded past the end
            valid = (segment[rows] == segment[idx][:, None]) & (mask[rows] > 0)
            # A window stops at its first invalid frame (end of its segment or of the training rows).
            valid = jnp.cumprod(valid, axis=1).astype(jnp.float32)
            r, p, y = ref[rows], prop[rows], targets[rows]
            k_lat, k_noise = jax.random.split(key)
            if noise_std > 0 and sample:
                kr, kp = jax.random.split(k_noise)
                r = r + noise_std * jax.random.normal(kr, r.shape)
                p = p + noise_std * jax.random.normal(kp, p.shape)
            enc = net.encode(r)
            eps = jax.random.normal(k_lat, enc["latent_mean"].shape) if sample else 0.0
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
            err = jnp.mean(weights * (actions - y) ** 2, axis=-1)  # (B, S)
            return err, kl, valid

        def sequence_loss(flat, arrays, mask, idx, key):
            err, kl, valid = window_errors(flat, arrays, mask, idx, key, True)
            n = jnp.maximum(valid.sum(), 1.0)
            mse, kl_mean = (err * valid).sum() / n, (kl * valid).sum() / n
            return mse + config.kl_weight * kl_mean, (mse, kl_mean)

        @jax.jit
        def train_step(flat, opt_state, arrays, mask, idx, key):
            (loss, (mse, kl)), grads = jax.value_and_grad(sequence_loss, has_aux=True)(flat, arrays, mask, idx, key)
            updates, opt_state = optimizer.update(grads, opt_state, flat)
            return optax.apply_updates(flat, updates), opt_state, loss, mse, kl

        @jax.jit
        def eval_sums(flat, arrays, mask, idx):
            """(B, 2): per window, the sum of squared errors (latent at its mean) and frames."""
            err, _, valid = window_errors(flat, arrays, mask, idx, jax.random.key(0), False)
            return jnp.stack([(err * valid).sum(1), valid.sum(1)], axis=1)

        self.train_step, self.eval_sums = train_step, eval_sums

    @staticmethod
    def set_learning_rate(opt_state, learning_rate: float) -> None:
        """Set the step size the next ``train_step`` uses (in place, in ``opt_state``)."""
        opt_state[1].hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)


_STEPS_CACHE: dict = {}


def _compiled_steps(config: ControllerConfig, length: int, training: TrainingConfig) -> _Steps:
    """Reuse jitted steps (and XLA's compilations) across calls with the same network,
    window length and optimiser, e.g. when training continues from a checkpoint."""
    key = (
        config.to_json(),
        int(length),
        float(training.learning_rate),
        float(training.max_grad_norm),
        float(training.input_noise),
        training.action_weights,
    )
    if key not in _STEPS_CACHE:
        if len(_STEPS_CACHE) >= 8:
            _STEPS_CACHE.pop(next(iter(_STEPS_CACHE)))
        _STEPS_CACHE[key] = _Steps(config, length, training)
    return _STEPS_CACHE[key]


def _check_data_matches(config: ControllerConfig, data: TrainingSet, check_sizes: bool = True):
    spec = data.spec
    if config.n_actions != data.targets.shape[1]:
        raise ValueError(
            f"controller config: n_actions={config.n_actions}, the training targets "
            f"have {data.targets.shape[1]} actuators"
        )
    # a config that came with sizes (from a checkpoint) must match; a fresh one takes the data's
    sized = check_sizes or config.observation.reference_size
    if config.observation.reference_window != spec.reference_window and sized:
        raise ValueError(
            f"controller config: reference window {config.observation.reference_window}, the training "
            f"data was built with {spec.reference_window}"
        )
    if check_sizes and (
        config.observation.reference_size != spec.reference_size
        or config.observation.proprioception_size != spec.proprioception_size
    ):
        raise ValueError("controller config: input sizes differ from the training data's observation spec")


def software_versions() -> dict:
    """Versions of this package and of the libraries training depends on (provenance)."""
    import flax
    import mujoco

    try:
        from importlib.metadata import version

        own = version("ndx-mimic")
    except Exception:  # not installed
        own = "unknown"
    return {
        "ndx-mimic": own,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "mujoco": mujoco.__version__,
    }

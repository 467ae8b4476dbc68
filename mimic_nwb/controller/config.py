"""Configuration of the MIMIC controller: every size of the network, and the observation
specification with its normalisation statistics (what a checkpoint must carry to be used)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from ndx_mimic import LAYER_KINDS  # the kinds of recorded layers the file format allows

from .observations import DEFAULT_APPENDAGES

__all__ = ["ControllerConfig", "ObservationSpec", "LayerSpec", "DECODERS", "ACTIVATIONS", "LAYER_KINDS"]

DECODERS = ("lstm", "mlp")
ACTIVATIONS = ("tanh", "relu", "elu", "gelu", "swish")


@dataclass(frozen=True, eq=False)
class ObservationSpec:
    """What the controller observes, and how inputs are normalised.

    Attributes:
        reference_window: future reference frames seen at each step.
        joint_names: the body model's scalar joints (hinges), in qpos order.
        appendage_bodies: bodies whose positions are observed.
        actuator_names: the actuators driven (one action each).
        reference_size, proprioception_size: input sizes (see ``observations``).
        reference_mean, reference_std: (reference_size,) normalisation statistics;
        proprioception_mean, proprioception_std: (proprioception_size,).
            ``x_normalised = (x - mean) / std``; std is floored (``min_std``) so features
            constant in the training data do not blow up.
    """

    reference_window: int = 5
    joint_names: tuple[str, ...] = ()
    appendage_bodies: tuple[str, ...] = DEFAULT_APPENDAGES
    actuator_names: tuple[str, ...] = ()
    reference_size: int = 0
    proprioception_size: int = 0
    reference_mean: np.ndarray | None = None
    reference_std: np.ndarray | None = None
    proprioception_mean: np.ndarray | None = None
    proprioception_std: np.ndarray | None = None

    def __post_init__(self):
        if int(self.reference_window) < 1:
            raise ValueError(f"ObservationSpec.reference_window: must be >= 1, got {self.reference_window!r}")
        for name, size in (("reference", self.reference_size), ("proprioception", self.proprioception_size)):
            for stat in ("mean", "std"):
                v = getattr(self, f"{name}_{stat}")
                if v is None:
                    continue
                v = np.asarray(v, dtype=np.float32)
                if v.shape != (size,) or not np.isfinite(v).all():
                    raise ValueError(
                        f"ObservationSpec.{name}_{stat}: expected {size} finite values, got shape {v.shape}"
                    )
                if stat == "std" and (v <= 0).any():
                    raise ValueError(f"ObservationSpec.{name}_std: must be > 0")
                object.__setattr__(self, f"{name}_{stat}", v)
        for name in ("joint_names", "appendage_bodies", "actuator_names"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def normalised(self) -> bool:
        return self.reference_mean is not None and self.proprioception_mean is not None

    def normalisation(self) -> dict[str, np.ndarray]:
        """The four statistics (identity when not fitted)."""

        def get(v, size, fill):
            return np.full(size, fill, np.float32) if v is None else v

        return {
            "reference_mean": get(self.reference_mean, self.reference_size, 0.0),
            "reference_std": get(self.reference_std, self.reference_size, 1.0),
            "proprioception_mean": get(self.proprioception_mean, self.proprioception_size, 0.0),
            "proprioception_std": get(self.proprioception_std, self.proprioception_size, 1.0),
        }

    def with_statistics(
        self, reference: np.ndarray, proprioception: np.ndarray, min_std: float = 1e-2
    ) -> ObservationSpec:
        """A copy with normalisation statistics fitted on (N, size) feature arrays. The std
        floor ``min_std`` is in the features' units (metres, radians, ...)."""
        r, p = np.asarray(reference, float), np.asarray(proprioception, float)
        return replace(
            self,
            reference_mean=r.mean(0),
            reference_std=np.maximum(r.std(0), min_std),
            proprioception_mean=p.mean(0),
            proprioception_std=np.maximum(p.std(0), min_std),
        )

    def to_json_dict(self) -> dict:
        """Everything but the statistics (stored as arrays)."""
        return {
            "reference_window": int(self.reference_window),
            "joint_names": list(self.joint_names),
            "appendage_bodies": list(self.appendage_bodies),
            "actuator_names": list(self.actuator_names),
            "reference_size": int(self.reference_size),
            "proprioception_size": int(self.proprioception_size),
        }


@dataclass(frozen=True, eq=False)
class ControllerConfig:
    """Every size and hyper-parameter of the MIMIC network (Aldarondo et al. 2024, after the
    neural probabilistic motor primitives of Merel et al. 2019).

    Reference encoder: MLP ``encoder_sizes`` with ``encoder_activation`` on the normalised
    reference features; latent: a diagonal Gaussian of size ``latent_size`` (mean linear, scale
    = softplus(linear) + ``min_latent_scale``), sampled as mean + scale * noise, regularised by
    ``kl_weight`` x KL(q(z_t) || p(z_t | z_{t-1})) with the autoregressive prior
    ``p = N(prior_ar * z_{t-1}, 1 - prior_ar^2)`` (N(0, 1) at the first step of an episode);
    decoder: ``decoder`` = ``"lstm"`` (stacked LSTM cells of ``decoder_sizes``) or ``"mlp"``
    (``decoder_sizes`` with ``decoder_activation``) on [latent, normalised proprioception];
    action head: linear to ``n_actions`` then tanh (controls in [-1, 1]).
    ``action_std`` initialises the policy's state-independent log std (a parameter, used to add
    action noise in rollouts and by reinforcement-learning fine-tuning).

    Attributes:
        observation: the ObservationSpec (sizes, names and normalisation).
    """

    observation: ObservationSpec = field(default_factory=ObservationSpec)
    encoder_sizes: tuple[int, ...] = (1024, 1024)
    encoder_activation: str = "tanh"
    latent_size: int = 60
    decoder: str = "lstm"
    decoder_sizes: tuple[int, ...] = (128, 128)
    decoder_activation: str = "tanh"
    n_actions: int = 38
    kl_weight: float = 1e-4
    prior_ar: float = 0.95
    min_latent_scale: float = 1e-3
    action_std: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "encoder_sizes", tuple(int(s) for s in self.encoder_sizes))
        object.__setattr__(self, "decoder_sizes", tuple(int(s) for s in self.decoder_sizes))
        if not self.encoder_sizes or min(self.encoder_sizes) < 1:
            raise ValueError(f"ControllerConfig.encoder_sizes: needs >= 1 layer of >= 1 unit, got {self.encoder_sizes}")
        if not self.decoder_sizes or min(self.decoder_sizes) < 1:
            raise ValueError(f"ControllerConfig.decoder_sizes: needs >= 1 layer of >= 1 unit, got {self.decoder_sizes}")
        if self.decoder not in DECODERS:
            raise ValueError(f"ControllerConfig.decoder: expected one of {DECODERS}, got {self.decoder!r}")
        for name in ("encoder_activation", "decoder_activation"):
            if getattr(self, name) not in ACTIVATIONS:
                raise ValueError(f"ControllerConfig.{name}: expected one of {ACTIVATIONS}, got {getattr(self, name)!r}")
        if int(self.latent_size) < 1 or int(self.n_actions) < 1:
            raise ValueError("ControllerConfig: latent_size and n_actions must be >= 1")
        if not (self.kl_weight >= 0 and np.isfinite(self.kl_weight)):
            raise ValueError(f"ControllerConfig.kl_weight: must be finite and >= 0, got {self.kl_weight!r}")
        if not 0 <= self.prior_ar < 1:
            raise ValueError(f"ControllerConfig.prior_ar: must be in [0, 1), got {self.prior_ar!r}")
        if not (self.min_latent_scale > 0 and self.action_std > 0):
            raise ValueError("ControllerConfig: min_latent_scale and action_std must be > 0")
        if self.observation.actuator_names and len(self.observation.actuator_names) != self.n_actions:
            raise ValueError(
                f"ControllerConfig: n_actions={self.n_actions} but the observation spec names "
                f"{len(self.observation.actuator_names)} actuators"
            )

    @property
    def reference_window(self) -> int:
        return self.observation.reference_window

    def layers(self) -> tuple[LayerSpec, ...]:
        """Every recorded layer, in forward order: name, kind, size."""
        out = [LayerSpec(f"encoder_{i}", "encoder", s) for i, s in enumerate(self.encoder_sizes)]
        out += [LayerSpec(k, k, self.latent_size) for k in ("latent_mean", "latent_scale", "latent_sample")]
        if self.decoder == "lstm":
            for i, s in enumerate(self.decoder_sizes):
                out += [LayerSpec(f"lstm_hidden_{i}", "lstm_hidden", s), LayerSpec(f"lstm_cell_{i}", "lstm_cell", s)]
        else:
            out += [LayerSpec(f"decoder_{i}", "decoder", s) for i, s in enumerate(self.decoder_sizes)]
        out.append(LayerSpec("action", "action", self.n_actions))
        return tuple(out)

    def to_json_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "observation"}
        d["encoder_sizes"] = list(self.encoder_sizes)
        d["decoder_sizes"] = list(self.decoder_sizes)
        d["observation"] = self.observation.to_json_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), sort_keys=True)

    @classmethod
    def from_json_dict(cls, d: dict, statistics: dict | None = None) -> ControllerConfig:
        d = dict(d)
        obs = dict(d.pop("observation"))
        obs.update(statistics or {})
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"controller config: unknown fields {sorted(unknown)}")
        return cls(observation=ObservationSpec(**obs), **d)


@dataclass(frozen=True)
class LayerSpec:
    """A recorded layer: ``name`` (unique), ``kind`` (one of LAYER_KINDS) and ``size``."""

    name: str
    kind: str
    size: int

    def to_dict(self) -> dict:
        return asdict(self)

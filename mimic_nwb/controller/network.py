"""The MIMIC network in Flax NNX: reference encoder -> variational latent -> LSTM (or MLP)
decoder -> actions in [-1, 1]. Every intermediate activation is returned by name.

``MimicNetwork`` is the stateful NNX module (its structure readable in one screen);
``apply_network`` is the pure function of (params, inputs) that jit, vmap, scan and a future
PPO trainer use. Parameters travel as a plain nested dict of arrays (``network_params`` /
``network_from_params``), which is also what a checkpoint stores.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .config import ControllerConfig

__all__ = [
    "MimicNetwork",
    "apply_network",
    "initial_carry",
    "kl_to_prior",
    "network_from_params",
    "network_params",
    "split_network",
]

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "elu": jax.nn.elu, "gelu": jax.nn.gelu, "swish": jax.nn.swish}

Carry = tuple  # ((c_0, h_0), (c_1, h_1), ...) for the LSTM decoder; () for the MLP decoder


class MimicNetwork(nnx.Module):
    """Inputs are *normalised* features: ``reference`` (..., reference_size) and
    ``proprioception`` (..., proprioception_size); leading axes are batch axes."""

    def __init__(self, config: ControllerConfig, *, rngs: nnx.Rngs):
        c, obs = config, config.observation
        self.config = config
        sizes = (obs.reference_size, *c.encoder_sizes)
        self.encoder = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.latent_mean = nnx.Linear(sizes[-1], c.latent_size, rngs=rngs)
        self.latent_scale = nnx.Linear(sizes[-1], c.latent_size, rngs=rngs)
        dec = (c.latent_size + obs.proprioception_size, *c.decoder_sizes)
        if c.decoder == "lstm":
            self.decoder = nnx.List([nnx.OptimizedLSTMCell(a, b, rngs=rngs) for a, b in zip(dec[:-1], dec[1:])])
        else:
            self.decoder = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dec[:-1], dec[1:])])
        # Small initial actions: the policy starts near "do nothing".
        self.action = nnx.Linear(
            dec[-1],
            c.n_actions,
            rngs=rngs,
            kernel_init=nnx.initializers.variance_scaling(0.01, "fan_in", "truncated_normal"),
        )
        self.action_log_std = nnx.Param(jnp.full((c.n_actions,), np.log(c.action_std), jnp.float32))

    def encode(self, reference):
        """Encoder layers and the latent distribution (mean, scale)."""
        act = _ACTIVATIONS[self.config.encoder_activation]
        out, x = {}, reference
        for i, layer in enumerate(self.encoder):
            x = act(layer(x))
            out[f"encoder_{i}"] = x
        out["latent_mean"] = self.latent_mean(x)
        out["latent_scale"] = jax.nn.softplus(self.latent_scale(x)) + self.config.min_latent_scale
        return out

    def decode(self, latent, proprioception, carry: Carry):
        """One decoder step: (action, new carry, activations)."""
        x = jnp.concatenate([latent, proprioception], axis=-1)
        out, new_carry = {}, []
        if self.config.decoder == "lstm":
            for i, (cell, state) in enumerate(zip(self.decoder, carry)):
                state, x = cell(state, x)
                new_carry.append(state)
                out[f"lstm_hidden_{i}"], out[f"lstm_cell_{i}"] = state[1], state[0]
        else:
            act = _ACTIVATIONS[self.config.decoder_activation]
            for i, layer in enumerate(self.decoder):
                x = act(layer(x))
                out[f"decoder_{i}"] = x
        out["action"] = jnp.tanh(self.action(x))
        return out["action"], tuple(new_carry), out

    def __call__(self, reference, proprioception, carry: Carry, noise):
        """Full step with the latent ``mean + scale * noise`` (noise 0: the mean)."""
        out = self.encode(reference)
        out["latent_sample"] = out["latent_mean"] + out["latent_scale"] * noise
        action, carry, dec = self.decode(out["latent_sample"], proprioception, carry)
        out.update(dec)
        return action, carry, out


def initial_carry(config: ControllerConfig, batch_shape: tuple = ()) -> Carry:
    """Zero LSTM state ((c, h) per layer), the state at the start of every episode."""
    if config.decoder != "lstm":
        return ()
    return tuple(
        (jnp.zeros((*batch_shape, s), jnp.float32), jnp.zeros((*batch_shape, s), jnp.float32))
        for s in config.decoder_sizes
    )


def network_params(network: MimicNetwork) -> dict:
    """The parameters as a nested dict of numpy arrays (what a checkpoint stores)."""
    state = nnx.state(network, nnx.Param)
    return jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(state))


def network_from_params(config: ControllerConfig, params: dict | None = None, seed: int = 0) -> MimicNetwork:
    """A network of ``config``: fresh (initialised from ``seed``) or with ``params``.

    Raises ValueError when ``params`` do not have the structure and shapes the config implies.
    """
    if params is None:
        return MimicNetwork(config, rngs=nnx.Rngs(seed))
    abstract = nnx.eval_shape(lambda: MimicNetwork(config, rngs=nnx.Rngs(0)))
    graphdef, state, rest = nnx.split(abstract, nnx.Param, ...)
    expected = jax.tree_util.tree_map(lambda x: tuple(x.shape), nnx.to_pure_dict(state))
    given = jax.tree_util.tree_map(lambda x: tuple(np.shape(x)), params)
    if expected != given:
        raise ValueError(
            "controller params: do not match the config (layer sizes, reference window or "
            "actuator count differ from the network the parameters were trained for)"
        )
    nnx.replace_by_pure_dict(state, jax.tree_util.tree_map(jnp.asarray, params))
    return nnx.merge(graphdef, state, rest)


def apply_network(graphdef, params, reference, proprioception, carry: Carry, noise):
    """Pure forward step on ``split_network``'s (graphdef, params); returns (action, new carry,
    activations by layer name). Jit, vmap or scan it freely."""
    network = nnx.merge(graphdef, *params)
    return network(reference, proprioception, carry, noise)


def split_network(network: MimicNetwork):
    """(graphdef, params) for ``apply_network``; ``params`` is a tuple of NNX states (a pytree)."""
    graphdef, *states = nnx.split(network, nnx.Param, ...)
    return graphdef, tuple(states)


def kl_to_prior(mean, scale, previous_latent, first, prior_ar: float):
    """KL( N(mean, scale^2) || N(prior_ar * z_prev, 1 - prior_ar^2) ), summed over the latent
    axis; at the first step of an episode (``first`` true) the prior is N(0, 1)."""
    first = jnp.asarray(first)[..., None]
    prior_mean = jnp.where(first, 0.0, prior_ar * previous_latent)
    prior_var = jnp.where(first, 1.0, 1.0 - prior_ar**2)
    var = scale**2
    kl = 0.5 * (jnp.log(prior_var) - jnp.log(var) + (var + (mean - prior_mean) ** 2) / prior_var - 1.0)
    return kl.sum(-1)

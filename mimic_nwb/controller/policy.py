"""A trained controller ready to act one step at a time (rollouts): normalisation, the jitted
network step and latent resampling, with flat arrays in and out to keep per-step overhead low.

The network's recurrent state (LSTM (c, h) per layer) travels as one flat float32 vector
(``initial_state``); a step returns the action, the new state and every layer's activation
concatenated in the order of ``config.layers()`` (``unpack`` splits it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .checkpoint import ControllerCheckpoint
from .config import ControllerConfig
from .network import network_from_params

__all__ = ["ControllerPolicy"]


class ControllerPolicy:
    """Acts with a checkpoint's network.

    Args:
        checkpoint: the trained controller.
        n_resample: latent samples per step for ``resample`` (0: never called).
    """

    def __init__(self, checkpoint: ControllerCheckpoint, n_resample: int = 0):
        self.checkpoint = checkpoint
        self.config: ControllerConfig = checkpoint.config
        self.layers = self.config.layers()
        self.layer_slices = {}
        start = 0
        for layer in self.layers:
            self.layer_slices[layer.name] = slice(start, start + layer.size)
            start += layer.size
        self.activation_size = start
        c = self.config
        self.state_size = 2 * sum(c.decoder_sizes) if c.decoder == "lstm" else 0
        self.n_resample = int(n_resample)

        network = network_from_params(c, checkpoint.params)
        graphdef, params, rest = nnx.split(network, nnx.Param, ...)
        norm = {k: jnp.asarray(v, jnp.float32) for k, v in c.observation.normalisation().items()}
        self.action_std = np.exp(np.asarray(checkpoint.params["action_log_std"], np.float32))
        names = [layer.name for layer in self.layers]
        sizes = c.decoder_sizes

        def unflatten_state(state):
            carry, i = [], 0
            for s in sizes if c.decoder == "lstm" else ():
                carry.append((state[i : i + s], state[i + s : i + 2 * s]))  # (c, h)
                i += 2 * s
            return tuple(carry)

        def flatten_state(carry):
            if not carry:
                return jnp.zeros(0, jnp.float32)
            return jnp.concatenate([x for pair in carry for x in pair])

        def normalise(reference, proprioception):
            r = (reference - norm["reference_mean"]) / norm["reference_std"]
            p = (proprioception - norm["proprioception_mean"]) / norm["proprioception_std"]
            return r, p

        def step(params, reference, proprioception, state, noise):
            net = nnx.merge(graphdef, params, rest)
            r, p = normalise(reference, proprioception)
            action, carry, acts = net(r, p, unflatten_state(state), noise)
            flat = jnp.concatenate([acts[n] for n in names])
            return action, flatten_state(carry), flat

        def resample(params, reference, proprioception, state, noise):
            """noise (K, latent): action and latent spread over K latent samples, decoded from
            the same recurrent state."""
            net = nnx.merge(graphdef, params, rest)
            r, p = normalise(reference, proprioception)
            enc = net.encode(r)
            z = enc["latent_mean"][None] + enc["latent_scale"][None] * noise
            carry = jax.tree_util.tree_map(
                lambda x: jnp.broadcast_to(x, (noise.shape[0], *x.shape)), unflatten_state(state)
            )
            pk = jnp.broadcast_to(p, (noise.shape[0], p.shape[-1]))
            actions, _, _ = net.decode(z, pk, carry)
            return actions.std(0), z.std(0)

        self._params = params
        self._step = jax.jit(step)
        self._resample = jax.jit(resample)

    def initial_state(self) -> np.ndarray:
        """The recurrent state at the start of an episode (zeros)."""
        return np.zeros(self.state_size, np.float32)

    def step(self, reference: np.ndarray, proprioception: np.ndarray, state, noise: np.ndarray):
        """One control step on raw (unnormalised) features.

        Args:
            reference: (reference_size,); proprioception: (proprioception_size,).
            state: the recurrent state (from ``initial_state`` or the previous step).
            noise: (latent_size,) standard normal noise of the latent sample (zeros: the mean).

        Returns:
            (action (n_actions,) numpy, new state (device array, pass back as is), activations
            (activation_size,) numpy float32).
        """
        action, state, flat = self._step(self._params, reference, proprioception, state, noise)
        return np.asarray(action), state, np.asarray(flat)

    def resample(self, reference, proprioception, state, noise: np.ndarray):
        """(action std (n_actions,), latent std (latent_size,)) over the rows of ``noise``."""
        a, z = self._resample(self._params, reference, proprioception, state, noise)
        return np.asarray(a), np.asarray(z)

    def unpack(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Split concatenated activations (..., activation_size) by layer name."""
        return {name: flat[..., s] for name, s in self.layer_slices.items()}

    def warm_up(self) -> None:
        """Compile the jitted steps (so timing and the first step are not the compiler's)."""
        c = self.config
        r = np.zeros(c.observation.reference_size, np.float32)
        p = np.zeros(c.observation.proprioception_size, np.float32)
        self.step(r, p, self.initial_state(), np.zeros(c.latent_size, np.float32))
        if self.n_resample:
            self.resample(r, p, self.initial_state(), np.zeros((self.n_resample, c.latent_size), np.float32))

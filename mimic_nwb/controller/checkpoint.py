"""Controller checkpoints: one ``.npz`` file with everything needed to run the network again.

Layout (format ``mimic-nwb-controller``, version 1; every entry a numpy array)::

    format                      JSON {"format": "mimic-nwb-controller", "version": 1}
    config                      JSON of ControllerConfig (sizes, activations, KL, observation spec
                                names and sizes)
    training                    JSON list, one entry per training stage, oldest first
                                ({"stage": "supervised", "steps": ..., "seed": ..., "data": ...})
    normalisation/<name>        reference_mean, reference_std, proprioception_mean,
                                proprioception_std (float32)
    params/<path>               network parameters, path = the module tree joined by "/"
                                (e.g. params/encoder/0/kernel)
    extra/<group>/<path>        optional parameter groups (none written by supervised training)
    sha256                      hex digest of all the entries above (see ``_digest``)

How reinforcement-learning fine-tuning fits without changing the format: the policy's
state-independent log std is already a network parameter (``params/action_log_std``); a PPO
trainer on MJX loads ``params`` with ``network_from_params``, keeps its value function in
``extra/critic/...`` and, optionally, its optimiser state in ``extra/optimizer/...``, and appends
``{"stage": "ppo", ...}`` to ``training``. Readers ignore extra groups they do not know.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..body_model import as_mjmodel
from .config import ControllerConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "ControllerCheckpoint",
    "check_checkpoint_compatible",
    "checkpoint_entries",
    "checkpoint_from_bytes",
    "checkpoint_to_bytes",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "mimic-nwb-controller"
CHECKPOINT_VERSION = 1
_STATS = ("reference_mean", "reference_std", "proprioception_mean", "proprioception_std")


@dataclass(frozen=True, eq=False)
class ControllerCheckpoint:
    """A trained controller.

    Attributes:
        config: the full ControllerConfig (with the observation spec and its statistics).
        params: nested dict of numpy arrays (``network_params``).
        training: one dict per training stage (JSON-serialisable metadata).
        extra: optional parameter groups (group -> nested dict of arrays), e.g. a critic.
    """

    config: ControllerConfig
    params: dict
    training: tuple = ()
    extra: dict = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return _digest(checkpoint_entries(self))


def _flatten(tree: dict, prefix: str) -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, path))
        else:
            out[path] = np.asarray(value)
    return out


def _unflatten(flat: dict[str, np.ndarray], prefix: str) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        if not path.startswith(prefix + "/"):
            continue
        keys = path[len(prefix) + 1 :].split("/")
        node = tree
        for k in keys[:-1]:
            node = node.setdefault(int(k) if k.isdigit() else k, {})
        node[int(keys[-1]) if keys[-1].isdigit() else keys[-1]] = value
    return tree


def _json_array(obj) -> np.ndarray:
    return np.array(json.dumps(obj, sort_keys=True))


def checkpoint_entries(ckpt: ControllerCheckpoint) -> dict[str, np.ndarray]:
    """``{key: array}``: every entry of the checkpoint file (what the ``.npz`` and a stored
    ControllerNetwork hold)."""
    cfg = ckpt.config
    entries = {
        "format": _json_array({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION}),
        "config": _json_array(cfg.to_json_dict()),
        "training": _json_array(list(ckpt.training)),
    }
    for name, value in cfg.observation.normalisation().items():
        entries[f"normalisation/{name}"] = np.asarray(value, np.float32)
    entries.update(_flatten(ckpt.params, "params"))
    for group, tree in ckpt.extra.items():
        entries.update(_flatten(tree, f"extra/{group}"))
    return entries


def _digest(entries: dict[str, np.ndarray]) -> str:
    """sha256 over the entries in sorted order: name, dtype, shape, then the raw bytes."""
    h = hashlib.sha256()
    for name in sorted(entries):
        if name == "sha256":
            continue
        a = np.ascontiguousarray(entries[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes() if a.dtype.kind != "U" else str(a[()]).encode())
    return h.hexdigest()


def checkpoint_to_bytes(ckpt: ControllerCheckpoint) -> bytes:
    """The checkpoint file's bytes (e.g. to store the weights inside a session file)."""
    entries = checkpoint_entries(ckpt)
    entries["sha256"] = np.array(_digest(entries))
    buf = io.BytesIO()
    np.savez(buf, **entries)
    return buf.getvalue()


def checkpoint_from_bytes(data: bytes, name: str = "checkpoint") -> ControllerCheckpoint:
    """Read checkpoint bytes; ValueError (one line, naming ``name``) when they are not a valid
    checkpoint or the checksum does not match."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            entries = {k: z[k] for k in z.files}
    except Exception as err:  # zip or npy errors of many kinds
        raise ValueError(f"{name}: not a controller checkpoint (.npz): {err}") from None
    try:
        fmt = json.loads(str(entries["format"][()]))
        stored = str(entries["sha256"][()])
    except KeyError as err:
        raise ValueError(f"{name}: not a controller checkpoint (no {err.args[0]!r} entry)") from None
    if fmt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{name}: format {fmt.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    if int(fmt.get("version", -1)) > CHECKPOINT_VERSION:
        raise ValueError(
            f"{name}: checkpoint version {fmt.get('version')} is newer than this software reads ({CHECKPOINT_VERSION})"
        )
    actual = _digest(entries)
    if actual != stored:
        raise ValueError(
            f"{name}: checksum mismatch (stored sha256 {stored[:12]}..., content "
            f"{actual[:12]}...): the file is damaged or was edited"
        )
    stats = {s: entries[f"normalisation/{s}"] for s in _STATS}
    try:
        config = ControllerConfig.from_json_dict(json.loads(str(entries["config"][()])), stats)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: bad controller config: {err}") from None
    extra_groups = {k.split("/")[1] for k in entries if k.startswith("extra/")}
    return ControllerCheckpoint(
        config=config,
        params=_unflatten(entries, "params"),
        training=tuple(json.loads(str(entries["training"][()]))),
        extra={g: _unflatten(entries, f"extra/{g}") for g in sorted(extra_groups)},
    )


def save_checkpoint(path: str | os.PathLike, ckpt: ControllerCheckpoint) -> str:
    """Write the checkpoint atomically (temporary file, then rename); returns its sha256."""
    path = Path(path)
    data = checkpoint_to_bytes(ckpt)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ckpt.sha256


def load_checkpoint(path: str | os.PathLike) -> ControllerCheckpoint:
    """Read a checkpoint file; ValueError in one line for a missing, damaged or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    return checkpoint_from_bytes(path.read_bytes(), str(path))


def check_checkpoint_compatible(ckpt: ControllerCheckpoint, body_model, *, reference_window: int | None = None) -> None:
    """ValueError (one line) when the controller cannot drive this body model: a different
    actuator count or names, joints, missing appendage bodies, or (when given) a different
    reference window."""
    from .observations import ObservationLayout

    model = as_mjmodel(body_model)
    obs = ckpt.config.observation
    if ckpt.config.n_actions != model.nu:
        raise ValueError(
            f"checkpoint: the controller drives {ckpt.config.n_actions} actuators, the body model has {model.nu}"
        )
    names = tuple(model.actuator(i).name for i in range(model.nu))
    if obs.actuator_names and obs.actuator_names != names:
        diff = next(i for i, (a, b) in enumerate(zip(obs.actuator_names, names)) if a != b)
        raise ValueError(
            f"checkpoint: actuator {diff} is {obs.actuator_names[diff]!r} in the controller, "
            f"{names[diff]!r} in the body model"
        )
    if reference_window is not None and int(reference_window) != obs.reference_window:
        raise ValueError(
            f"checkpoint: the controller was trained with a reference window of {obs.reference_window} "
            f"frames, {reference_window} requested"
        )
    layout = ObservationLayout.build(model, obs.reference_window, obs.appendage_bodies, obs.joint_names or None)
    for what, size, expected in (
        ("reference", obs.reference_size, layout.reference_size),
        ("proprioception", obs.proprioception_size, layout.proprioception_size),
    ):
        if size != expected:
            raise ValueError(
                f"checkpoint: {what} input of {size} features, the body model gives {expected} "
                f"(reference window {obs.reference_window})"
            )

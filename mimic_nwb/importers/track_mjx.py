"""track-mjx rollouts into a session: SimulationRollout, ControllerNetwork and NetworkActivations.

:func:`read_track_mjx` reads the file into a :class:`TrackMjxRollout` (checked);
:func:`controller_metadata` fills the ControllerNetwork fields the file does not state;
:func:`import_track_mjx` appends the results. T is rollout steps; nq and nu are the body model's.

Layout (what ``track_mjx.analysis.rollout`` generates, saved to HDF5). Datasets: ``qposes_ref``
(T, nq) and ``qposes_rollout`` (T, nq); ``ctrl`` (T, nu) or (T-1, nu) (track-mjx's controls
between its T states: a NaN row is appended); optional ``reward`` (or ``state_rewards``) (T,);
optional group ``rewards`` of per-term (T,) datasets; optional group ``activations`` of (T, units)
or (T-1, units) datasets (nested groups give names joined by '.'), whose layer kind comes from the
name (case-insensitive, first match: lstm…cell/cell_state → lstm_cell; lstm/hidden_state →
lstm_hidden; latent_mean/mean/mu → latent_mean; latent_scale/logvar/log_var/log_std/scale/std/sigma
→ latent_scale (stored as written); latent_sample/intention/latent/z → latent_sample; encoder;
decoder; action/ctrl/policy → action) or from ``layer_kinds``; optional
``observation_mean``/``observation_std`` (inputs,); optional ``config`` (JSON/YAML text,
track-mjx's config). File attributes, all optional: ``physics_timestep``, ``control_timestep``
(s), ``seed``, ``start_frame``, ``decoder_kind``, ``latent_size``, ``reference_window``,
``checkpoint_sha256``, ``architecture``, ``training``, ``observation_spec`` (JSON text).

Appends SimulationRollout_<name> (mode closed_loop; qpos, actuator_controls, reward,
reward_terms, one episode), ControllerNetwork_<name> and NetworkActivations_<name>, linked to the
session's StacRegistration and its BodyModel (or its only BodyModel; without either, the
dm_control rodent is added as BodyModel).
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import mujoco
import numpy as np
from pynwb import TimeSeries

import ndx_mimic
from ndx_mimic.mimic import LAYER_KINDS

from ..body_model import build_body_model, column_names
from ..errors import InputError
from ..session import RESULTS_MODULE, opened, where_of
from ..storage import compressed, quantized
from ..writers import body_model_to_nwb
from .hdf5 import attribute_dict, file_sha256, numeric, open_h5, parse_config, read_dataset
from .keypoint_data import check_rate

# A track-mjx reference frame matches a registration frame within this (qpos units).
REFERENCE_MATCH_TOLERANCE = 1e-4
UNKNOWN = "unknown"

_LAYER_KIND_RULES = (
    (r"lstm.*(cell|_c\b)|cell_state", "lstm_cell"),
    (r"lstm|hidden_state", "lstm_hidden"),
    (r"latent_mean|(^|[._/])(mean|mu)([._/]|$)", "latent_mean"),
    (r"latent_scale|logvar|log_var|log_std|(^|[._/])(scale|std|sigma)([._/]|$)", "latent_scale"),
    (r"latent_sample|intention|latent|(^|[._/])z([._/]|$)", "latent_sample"),
    (r"encoder", "encoder"),
    (r"decoder", "decoder"),
    (r"action|ctrl|policy", "action"),
)


def layer_kind_of(name):
    """The layer kind (ndx_mimic LAYER_KINDS) a layer name implies, else None."""
    lowered = name.lower()
    return next((kind for pattern, kind in _LAYER_KIND_RULES if re.search(pattern, lowered)), None)


@dataclass(frozen=True)
class TrackMjxRollout:
    """A track-mjx rollout: T steps; controls and activations padded to T rows with NaN when the file had T-1."""

    qpos_reference: np.ndarray  # (T, nq)
    qpos: np.ndarray  # (T, nq)
    ctrl: np.ndarray  # (T, nu)
    reward: np.ndarray | None  # (T,)
    reward_terms: dict  # name -> (T,)
    activations: dict  # layer name -> (T, units), dtype as written (stored as int16, see import_track_mjx)
    layer_kinds: dict  # layer name -> kind
    observation_mean: np.ndarray | None
    observation_std: np.ndarray | None
    attributes: dict
    config: dict | None
    padded: bool  # the file had T-1 controls (and activations)
    source: str

    @property
    def num_steps(self):
        return len(self.qpos)


def _pad_steps(array, num_steps, key, source):
    """(T, ...) as is, (T-1, ...) with a NaN row appended (track-mjx: one control fewer than states)."""
    if len(array) == num_steps:
        return array, False
    if len(array) == num_steps - 1:
        dtype = array.dtype if array.dtype.kind == "f" else np.float64
        return np.concatenate([array.astype(dtype), np.full((1, *array.shape[1:]), np.nan, dtype)]), True
    raise InputError(f"{source}: '{key}' has {len(array)} rows; the rollout has {num_steps} steps (T or T-1 expected)")


def read_track_mjx(path, layer_kinds=None):
    """Read a track-mjx rollout ``.h5`` (layout in the module docstring) into a :class:`TrackMjxRollout`.

    ``layer_kinds`` ({layer name: kind}) sets or overrides the kinds inferred from the names.
    """
    source = str(path)
    layer_kinds = dict(layer_kinds or {})
    wrong = {n: k for n, k in layer_kinds.items() if k not in LAYER_KINDS}
    if wrong:
        raise InputError(f"layer kinds {wrong}: each must be one of {', '.join(LAYER_KINDS)}")
    with open_h5(path, "a track-mjx rollout .h5 (qposes_ref, qposes_rollout, ctrl, ...)") as f:
        qpos_reference = numeric(read_dataset(f, "qposes_ref", source), "qposes_ref", source, 2).astype(np.float64)
        qpos = numeric(read_dataset(f, "qposes_rollout", source), "qposes_rollout", source, 2).astype(np.float64)
        ctrl = numeric(read_dataset(f, "ctrl", source), "ctrl", source, 2).astype(np.float64)
        reward_key = "reward" if "reward" in f else "state_rewards"
        reward = read_dataset(f, reward_key, source, optional=True)
        terms = {}
        if isinstance(f.get("rewards"), h5py.Group):
            terms = {k: v[()] for k, v in f["rewards"].items() if isinstance(v, h5py.Dataset)}
        layers = {}
        if isinstance(f.get("activations"), h5py.Group):
            f["activations"].visititems(
                lambda key, obj: (
                    layers.__setitem__(key.replace("/", "."), obj[()]) if isinstance(obj, h5py.Dataset) else None
                )
            )
        observation = [read_dataset(f, k, source, optional=True) for k in ("observation_mean", "observation_std")]
        config = read_dataset(f, "config", source, optional=True)
        attributes = attribute_dict(f)

    num_steps = len(qpos)
    if num_steps == 0:
        raise InputError(f"{source}: qposes_rollout has no steps")
    if qpos_reference.shape != qpos.shape:
        raise InputError(f"{source}: qposes_ref has shape {qpos_reference.shape} but qposes_rollout {qpos.shape}")
    ctrl, padded = _pad_steps(ctrl, num_steps, "ctrl", source)
    if reward is not None:
        reward = numeric(reward, reward_key, source, (1, 2)).astype(np.float64).reshape(len(reward), -1)
        if reward.shape != (num_steps, 1):
            raise InputError(f"{source}: '{reward_key}' has shape {reward.shape[:1]}, expected ({num_steps},)")
        reward = reward[:, 0]
    for key, values in terms.items():
        values = numeric(values, f"rewards/{key}", source, (1, 2)).astype(np.float64).reshape(len(values), -1)
        if values.shape != (num_steps, 1):
            raise InputError(f"{source}: 'rewards/{key}' has {values.shape[0]} rows, expected ({num_steps},)")
        terms[key] = values[:, 0]
    activations = {}
    for key, values in layers.items():
        values = numeric(values, f"activations/{key}", source, (1, 2))
        values = values.reshape(len(values), -1) if values.ndim == 1 else values
        if values.dtype.kind != "f":
            values = values.astype(np.float32)
        values, layer_padded = _pad_steps(values, num_steps, f"activations/{key}", source)
        if layer_padded != padded:
            raise InputError(
                f"{source}: 'activations/{key}' has {len(layers[key])} rows but ctrl has {len(ctrl) - padded}"
            )
        activations[key] = values
    unknown = [k for k in activations if k not in layer_kinds and layer_kind_of(k) is None]
    if unknown:
        raise InputError(
            f"{source}: layer kind of activations {unknown} unknown from the name; give it "
            f"(layer_kinds / --layer-kind NAME=KIND, KIND one of {', '.join(LAYER_KINDS)})"
        )
    extra = [k for k in layer_kinds if k not in activations]
    if extra:
        raise InputError(f"{source}: layer kinds given for {extra}, which are not in the activations group")
    for key, values in zip(("observation_mean", "observation_std"), observation):
        if values is not None and numeric(values, key, source, 1).shape != np.shape(observation[0]):
            raise InputError(f"{source}: observation_mean and observation_std differ in shape")
    return TrackMjxRollout(
        qpos_reference=qpos_reference,
        qpos=qpos,
        ctrl=ctrl,
        reward=reward,
        reward_terms=terms,
        activations=activations,
        layer_kinds={k: layer_kinds.get(k) or layer_kind_of(k) for k in activations},
        observation_mean=None if observation[0] is None else np.asarray(observation[0], np.float64),
        observation_std=None if observation[1] is None else np.asarray(observation[1], np.float64),
        attributes=attributes,
        config=parse_config(config, "config", source) if config is not None else None,
        padded=padded,
        source=source,
    )


def _plain(value):
    """``value`` as plain JSON types (YAML configs may hold dates and other objects)."""
    return json.loads(json.dumps(value, default=str))


def _json_text(value, default):
    """A JSON text attribute as given, or ``default`` dumped as JSON."""
    if value is None:
        return json.dumps(default, sort_keys=True, default=str)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def controller_metadata(rollout: TrackMjxRollout):
    """The ControllerNetwork fields of a track-mjx rollout; file attributes first, then ``config``.

    When the file does not say: ``decoder_kind`` 'lstm' if the config has ``use_lstm`` true or a
    layer is an LSTM state, else 'mlp'; ``latent_size`` the config's ``intention_size`` /
    ``latent_size``, else the width of the latent_mean (or latent_sample) layer, else 0;
    ``reference_window`` the config's ``traj_length`` / ``reference_window``, else 0 (unknown);
    ``architecture`` JSON of the recorded layers (kind, units) and the config's ``network_config``;
    ``training`` JSON of the config's ``train_setup`` (else {}); ``observation_spec`` '[]';
    ``checkpoint_sha256`` 'unknown'; observation mean and std empty arrays.
    """
    attrs, config = rollout.attributes, rollout.config or {}
    kinds = rollout.layer_kinds
    widths = {name: int(values.shape[1]) for name, values in rollout.activations.items()}
    use_lstm = _find_key(config, "use_lstm")
    decoder_kind = attrs.get("decoder_kind") or (
        "lstm" if use_lstm or (use_lstm is None and {"lstm_hidden", "lstm_cell"} & set(kinds.values())) else "mlp"
    )
    latent_layer = next((n for kind in ("latent_mean", "latent_sample") for n, k in kinds.items() if k == kind), None)
    latent_size = attrs.get("latent_size", _find_key(config, "intention_size", "latent_size"))
    if latent_size is None:
        latent_size = widths[latent_layer] if latent_layer else 0
    reference_window = attrs.get("reference_window", _find_key(config, "traj_length", "reference_window"))
    architecture = {
        "source": "track-mjx",
        "decoder_kind": decoder_kind,
        "layers": {name: {"kind": kinds[name], "units": widths[name]} for name in rollout.activations},
    }
    network_config = _find_key(config, "network_config")
    if network_config is not None:
        architecture["network_config"] = network_config
    return dict(
        architecture=_json_text(attrs.get("architecture"), architecture),
        decoder_kind=str(decoder_kind),
        latent_size=int(latent_size),
        reference_window=int(reference_window or 0),
        observation_spec=_json_text(attrs.get("observation_spec"), []),
        training=_json_text(attrs.get("training"), _find_key(config, "train_setup") or {}),
        checkpoint_sha256=str(attrs.get("checkpoint_sha256", UNKNOWN)),
        observation_mean=rollout.observation_mean if rollout.observation_mean is not None else np.zeros(0),
        observation_std=rollout.observation_std if rollout.observation_std is not None else np.zeros(0),
    )


def _find_key(mapping, *keys):
    """The first value found under any of ``keys`` in a nested mapping (depth first), else None."""
    if not isinstance(mapping, dict):
        return None
    for key in keys:
        if key in mapping:
            return mapping[key]
    for value in mapping.values():
        found = _find_key(value, *keys)
        if found is not None:
            return found
    return None


def _qpos_units(model_nwb):
    """Units of the qpos columns of a stored body model (compiled from its MJCF)."""
    model = mujoco.MjModel.from_xml_string(model_nwb.mjcf, model_nwb.assets)
    return column_names(model)[1]


def _reference_deviation(rollout, registration, start_frame):
    """Largest |qposes_ref - reference qpos| over the frames they share (steps = frames), or None."""
    if registration is None:
        return None
    reference = np.asarray(registration.qpos.data[start_frame : start_frame + rollout.num_steps])
    shared = min(len(reference), rollout.num_steps)
    difference = np.abs(reference[:shared] - rollout.qpos_reference[:shared])
    return float(np.nanmax(difference)) if np.isfinite(difference).any() else None


def _series_times(series):
    return np.asarray(series.get_timestamps(), dtype=np.float64)


@dataclass(frozen=True)
class TrackMjxImportConfig:
    """How to read a track-mjx rollout.

    ``rate`` (Hz) is the control rate when the file has no ``control_timestep`` attribute (else it
    must agree with it; without either, the reference's frame rate); ``layer_kinds``
    ({layer name: kind}) sets or overrides the layer kinds inferred from the names.
    """

    rate: float | None = None
    layer_kinds: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "rate", check_rate(self.rate, "rate", ValueError))
        wrong = {n: k for n, k in (self.layer_kinds or {}).items() if k not in LAYER_KINDS}
        if wrong:
            raise ValueError(f"layer_kinds {wrong}: each must be one of {', '.join(LAYER_KINDS)}")
        object.__setattr__(self, "layer_kinds", dict(self.layer_kinds or {}))


@dataclass(frozen=True)
class TrackMjxImportResult:
    """What :func:`import_track_mjx` appended: the SimulationRollout at ``name``, the
    ControllerNetwork at ``controller``, the NetworkActivations at ``activations`` (None without
    activations), on the BodyModel at ``body_model`` (added by this import when
    ``body_model_added``), referring to the StacRegistration at ``reference`` (or None) from its
    frame ``start_frame``; ``rollout`` holds the numbers read."""

    path: Path
    name: str
    controller: str
    activations: str | None
    body_model: str
    body_model_added: bool
    reference: str | None
    start_frame: int
    rollout: TrackMjxRollout

    def summary(self):
        """One line: steps, reference and start frame, layers and their kinds."""
        linked = (
            f"reference {self.reference.rpartition('/')[2]} from frame {self.start_frame}"
            if self.reference is not None
            else "no reference"
        )
        kinds = ", ".join(f"{n} {k}" for n, k in self.rollout.layer_kinds.items())
        return (
            f"{self.path}: {self.name}: {self.rollout.num_steps} steps (closed loop, {linked}); "
            f"{len(self.rollout.activations)} layers in "
            f"{self.activations.rpartition('/')[2] if self.activations else 'none'}" + (f" ({kinds})" if kinds else "")
        )


def _chosen(session, kind, chosen):
    """The session's result of type ``kind`` named ``chosen``, else its only one, else None (none there)."""
    if chosen is None and not session.results(kind):
        return None
    return session.result(kind, chosen)


def import_track_mjx(
    session,
    source,
    config: TrackMjxImportConfig | None = None,
    *,
    registration=None,
    body_model=None,
    name="track_mjx",
    replace=False,
):
    """Append a track-mjx rollout: SimulationRollout_<name>, ControllerNetwork_<name>, NetworkActivations_<name>.

    ``session`` is a :class:`~mimic_nwb.session.Session` opened with mode ``"a"`` or a session
    path; ``source`` the rollout ``.h5`` (layout in the module docstring). The rollout links the
    session's StacRegistration (``registration`` names one when there are several) and its
    BodyModel, or the session's only BodyModel (``body_model`` names one); a session with neither
    gets the dm_control rodent as ``BodyModel``. qpos columns must equal the body model's nq,
    controls its nu. Steps are ``control_timestep`` apart (file attribute, else 1/``rate``, else
    the reference's frame period) and start at the time of the reference frame the rollout
    started from (file attribute ``start_frame``, else found by matching ``qposes_ref[0]`` to the
    reference's qpos, else 0). Activations are stored per layer as int16 codes over the layer's
    range (``conversion``, ``offset``; the error bound is in the layer's description), or as
    float32 when a layer has non-finite values. ``replace`` replaces the three results. Returns a
    :class:`TrackMjxImportResult`.
    """
    config = config or TrackMjxImportConfig()
    source = Path(source)
    rate = config.rate
    rollout = read_track_mjx(source, config.layer_kinds)
    names = {kind: f"{kind}_{name}" for kind in ("SimulationRollout", "ControllerNetwork", "NetworkActivations")}
    num_steps, nq = rollout.qpos.shape
    attrs = rollout.attributes
    with opened(session) as current:
        reference = _chosen(current, ndx_mimic.StacRegistration, registration)
        if reference is not None:
            model_nwb = reference.body_model
            inputs = current.object_ids(reference)
        else:
            model_nwb = _chosen(current, ndx_mimic.BodyModel, body_model)
            inputs = current.object_ids(model_nwb) if model_nwb is not None else {}
        default = None
        if model_nwb is None:
            default = build_body_model(None)
            if nq != default.nq:
                raise InputError(
                    f"{source}: qposes_rollout has {nq} columns; the session has no BodyModel or StacRegistration "
                    f"and the default rodent has nq {default.nq} (import the reference first)"
                )
            model_nwb = body_model_to_nwb(default, "BodyModel", f"{default.source} (no keypoint sites)")
        qpos_names = list(model_nwb.qpos_names[:])
        if nq != len(qpos_names):
            raise InputError(
                f"{source}: qposes_rollout has {nq} columns but body model '{model_nwb.name}' has nq {len(qpos_names)}"
            )
        actuator_names = list(model_nwb.actuator_names[:])
        if rollout.ctrl.shape[1] != len(actuator_names):
            raise InputError(
                f"{source}: ctrl has {rollout.ctrl.shape[1]} columns but body model '{model_nwb.name}' has "
                f"{len(actuator_names)} actuators"
            )
        qpos_units = _qpos_units(model_nwb)
        model_timestep = float(model_nwb.timestep)

        start_frame, start_note, frame_times = 0, "unknown (0)", None
        if reference is not None:
            frame_times = _series_times(reference.qpos)
            if "start_frame" in attrs:
                start_frame, start_note = int(attrs["start_frame"]), "file attribute"
            else:
                gaps = np.abs(np.asarray(reference.qpos.data[:]) - rollout.qpos_reference[0]).max(axis=1)
                gaps[np.isnan(gaps)] = np.inf  # frames not fitted
                best = int(np.argmin(gaps))
                if gaps[best] < REFERENCE_MATCH_TOLERANCE:
                    start_frame, start_note = best, "qposes_ref[0] matched to the reference qpos"
            if not 0 <= start_frame < len(frame_times):
                raise InputError(
                    f"{source}: start_frame {start_frame} is outside the reference's {len(frame_times)} frames"
                )
        elif "start_frame" in attrs:
            start_frame, start_note = int(attrs["start_frame"]), "file attribute"
        if "control_timestep" in attrs:
            control_timestep = float(attrs["control_timestep"])
            if rate is not None and abs(rate * control_timestep - 1) > 1e-9:
                raise InputError(f"rate: {rate} Hz contradicts the file's control_timestep {control_timestep} s")
        elif rate is not None:
            control_timestep = 1.0 / rate
        elif reference is not None and reference.qpos.rate is not None:
            control_timestep = 1.0 / reference.qpos.rate
        else:
            raise InputError(f"{source}: no control_timestep attribute; give the control rate (--rate)")
        if not control_timestep > 0:
            raise InputError(f"{source}: control_timestep {control_timestep} s must be positive")
        starting_time = float(frame_times[start_frame]) if frame_times is not None else 0.0
        reference_deviation = _reference_deviation(rollout, reference, start_frame)
        reference_path = where_of(reference) if reference is not None else None
        model_path = where_of(model_nwb) if default is None else f"processing/{RESULTS_MODULE}/{model_nwb.name}"
        clock = dict(rate=1.0 / control_timestep, starting_time=starting_time)

        with current.append(replace=list(names.values()) if replace else (), inputs=inputs) as s:
            for result in names.values():
                s.check_new(result)
            # Link the objects of the working copy, checked to be the ones read above.
            linked_registration = s.input(reference) if reference is not None else None
            if linked_registration is not None:
                model_nwb = linked_registration.body_model
            elif default is None:
                model_nwb = s.input(model_nwb)
            else:
                model_nwb = s.add(
                    model_nwb,
                    parameters={
                        "scale": default.scale,
                        "actuators": default.actuator_kind,
                        "mjcf": str(default.source),
                    },
                )

            def joint_series(series_name, data, columns, unit, units=None, description=""):
                return ndx_mimic.JointStateSeries(
                    name=series_name,
                    data=compressed(data),
                    unit=unit,
                    column_names=columns,
                    column_units=units,
                    body_model=model_nwb,
                    description=description,
                    **clock,
                )

            reward = None
            if rollout.reward is not None:
                reward = TimeSeries(
                    name="reward",
                    data=compressed(rollout.reward),
                    unit="dimensionless",
                    description="Total reward per step (track-mjx).",
                    **clock,
                )
            reward_terms = None
            if rollout.reward_terms:
                reward_terms = ndx_mimic.NamedColumnSeries(
                    name="reward_terms",
                    data=compressed(np.column_stack(list(rollout.reward_terms.values()))),
                    unit="dimensionless",
                    column_names=list(rollout.reward_terms),
                    description="Reward terms per step (track-mjx rewards group).",
                    **clock,
                )
            episodes = ndx_mimic.RolloutEpisodes(
                name="episodes", description="The rollout as one episode (track-mjx file)."
            )
            episodes.add_row(
                start_time=starting_time,
                stop_time=starting_time + num_steps * control_timestep,
                start_frame=start_frame,
                termination_reason=str(attrs.get("termination_reason", UNKNOWN)),
                episode_return=float(np.nansum(rollout.reward)) if rollout.reward is not None else float("nan"),
            )
            controller = s.add(
                ndx_mimic.ControllerNetwork(name=names["ControllerNetwork"], **controller_metadata(rollout)),
                parameters={"format": "track-mjx", "source": str(source), "config": _plain(rollout.config)},
            )
            padding = " (the file's last step has no control: NaN)" if rollout.padded else ""
            simulation = ndx_mimic.SimulationRollout(
                name=names["SimulationRollout"],
                mode="closed_loop",
                physics_timestep=float(attrs.get("physics_timestep", model_timestep)),
                control_timestep=control_timestep,
                seed=int(attrs["seed"]) if "seed" in attrs else None,
                qpos=joint_series(
                    "qpos", rollout.qpos, qpos_names, "mixed", qpos_units, "Simulated qpos (qposes_rollout)."
                ),
                actuator_controls=joint_series(
                    "actuator_controls",
                    rollout.ctrl,
                    actuator_names,
                    "dimensionless",
                    description=f"Actuator controls (track-mjx ctrl){padding}.",
                ),
                reward=reward,
                reward_terms=reward_terms,
                episodes=episodes,
                body_model=model_nwb,
                reference=linked_registration,
                controller=controller,
            )
            parameters = {
                "format": "track-mjx",
                "source": str(source),
                "source_sha256": file_sha256(source),
                "start_frame": start_frame,
                "start_frame_from": start_note,
                "controls_padded": rollout.padded,
                "reference_max_deviation": reference_deviation,
            }
            s.add(simulation, parameters=parameters)
            if rollout.activations:
                # int16 over each layer's range (conversion, offset; error bound in the description), as
                # the simulate stage stores its own: a float16 source would otherwise stay float16, which
                # h5wasm (the DANDI web viewers) and MATLAB cannot read. A layer with NaN (the padded last
                # step) has no integer code for it and is stored as float32.
                stored = {
                    layer: quantized(values, f"Activations of layer '{layer}' (track-mjx){padding}.")
                    for layer, values in rollout.activations.items()
                }
                layers = [
                    ndx_mimic.LayerActivations(name=layer, layer_kind=rollout.layer_kinds[layer], **args, **clock)
                    for layer, args in stored.items()
                ]
                s.add(
                    ndx_mimic.NetworkActivations(
                        name=names["NetworkActivations"],
                        layer_activations=layers,
                        controller=controller,
                        rollout=simulation,
                    ),
                    parameters={
                        "format": "track-mjx",
                        "source": str(source),
                        "layer_kinds": rollout.layer_kinds,
                        "source_dtypes": {n: str(v.dtype) for n, v in rollout.activations.items()},
                        # quantized gives a conversion exactly when it stores int16 codes
                        "stored_dtypes": {n: "int16" if "conversion" in a else "float32" for n, a in stored.items()},
                    },
                )
        path = current.path
    where = f"processing/{RESULTS_MODULE}/"
    return TrackMjxImportResult(
        path=path,
        name=where + names["SimulationRollout"],
        controller=where + names["ControllerNetwork"],
        activations=where + names["NetworkActivations"] if rollout.activations else None,
        body_model=model_path,
        body_model_added=default is not None,
        reference=reference_path,
        start_frame=start_frame,
        rollout=rollout,
    )

"""Python classes of the ndx-mimic types.

Every class is generated from the spec by pynwb; a hand-written subclass is registered only
where it adds behaviour: checks that names match data columns (with an error that names the
field), defaults, and accessors. A file written elsewhere with inconsistent shapes still reads
(the check becomes a warning); :mod:`ndx_mimic.inspector_checks` reports it.
"""

import hashlib
import warnings

import numpy as np
from hdmf.utils import docval, get_data_shape, get_docval
from pynwb import get_class, register_class

NAMESPACE = "ndx-mimic"

ROLLOUT_MODES = ("closed_loop", "open_loop", "inverse_dynamics", "expert")
LAYER_KINDS = (
    "encoder",
    "latent_mean",
    "latent_scale",
    "latent_sample",
    "lstm_hidden",
    "lstm_cell",
    "decoder",
    "action",
)
ACTUATOR_KINDS = ("torque", "position", "as_declared")


def _docval_args(base, **defaults):
    """The docval arguments of ``base.__init__``, with the given arguments made optional."""
    args = []
    for arg in get_docval(base.__init__):
        arg = dict(arg)
        if arg["name"] in defaults:
            arg["default"] = defaults[arg["name"]]
        args.append(arg)
    # docval wants required arguments before optional ones
    return [a for a in args if "default" not in a] + [a for a in args if "default" in a]


def _problem(container, message):
    """Raise for a constructor call; only warn when reading a file (pynwb's construct mode)."""
    message = f"{type(container).__name__} '{container.name}': {message}"
    if getattr(container, "_in_construct_mode", False):
        warnings.warn(message, stacklevel=3)
    else:
        raise ValueError(message)


def _num_rows(data):
    shape = get_data_shape(data)
    return None if shape is None else shape[0]


def _names(values):
    """A name list as a Python list of str (also for h5py datasets of bytes)."""
    if values is None:
        return None
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values[:]]


# --------------------------------------------------------------------------------------------
# Series with named columns


def column_problem(series):
    """What is wrong with a named-column series' names and units against its data (one line), or
    None: the one check behind the constructors' errors and the nwbinspector check."""
    shape = get_data_shape(series.data)
    if shape is None or len(shape) != 2:
        return f"data must be 2-D (time x columns), got shape {shape}"
    num_columns = shape[1]
    if len(series.column_names) != num_columns:
        return f"column_names has {len(series.column_names)} names but data has {num_columns} columns"
    if series.column_units is not None and len(series.column_units) != num_columns:
        return f"column_units has {len(series.column_units)} units but data has {num_columns} columns"
    if not series.unit:
        return "unit is empty: give the SI unit of the columns, or 'mixed' with column_units"
    if series.unit == "mixed" and series.column_units is None:
        return "unit is 'mixed' but column_units is missing"
    return None


_NamedColumnSeriesBase = get_class("NamedColumnSeries", NAMESPACE)


@register_class("NamedColumnSeries", NAMESPACE)
class NamedColumnSeries(_NamedColumnSeriesBase):
    """A T x N TimeSeries whose columns carry names and, when they differ ('mixed'), units."""

    @docval(*_docval_args(_NamedColumnSeriesBase))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._check_columns()

    def _check_columns(self):
        problem = column_problem(self)
        if problem is not None:
            return _problem(self, problem)

    def unit_of(self, column):
        """SI unit of one column, by name."""
        index = _names(self.column_names).index(column)
        return self.unit if self.column_units is None else _names(self.column_units)[index]

    def to_dataframe(self):
        """The series as a pandas DataFrame: one column per name, indexed by time in seconds."""
        import pandas as pd

        index = pd.Index(self.get_timestamps(), name="time")
        return pd.DataFrame(np.asarray(self.data[:]), index=index, columns=_names(self.column_names))


# --------------------------------------------------------------------------------------------
# Body model


_BodyModelBase = get_class("BodyModel", NAMESPACE)


@register_class("BodyModel", NAMESPACE)
class BodyModel(_BodyModelBase):
    """The MuJoCo model used: MJCF text, its assets, names of its coordinates, actuators and bodies.

    ``mjcf_sha256`` is computed from ``mjcf`` when not given. Compile it with
    ``mujoco.MjModel.from_xml_string(body_model.mjcf, body_model.assets)``.
    """

    @docval(*_docval_args(_BodyModelBase, mjcf_sha256=None))
    def __init__(self, **kwargs):
        digest = hashlib.sha256(kwargs["mjcf"].encode("utf-8")).hexdigest()
        if kwargs["mjcf_sha256"] is None:
            kwargs["mjcf_sha256"] = digest
        super().__init__(**kwargs)
        if self.mjcf_sha256 != digest:
            _problem(self, f"mjcf_sha256 {self.mjcf_sha256} does not match the mjcf text (sha256 {digest})")
        if self.actuator_kind not in ACTUATOR_KINDS:
            _problem(self, f"actuator_kind must be one of {ACTUATOR_KINDS}, got {self.actuator_kind!r}")
        if self.scale <= 0:
            _problem(self, f"scale must be positive, got {self.scale}")

    @property
    def assets(self):
        """The stored assets as ``{file name: bytes}``, as ``mujoco.MjModel.from_xml_string`` takes them."""
        return {name: np.asarray(asset.data[:], dtype=np.uint8).tobytes() for name, asset in self.model_assets.items()}

    def names(self, kind):
        """Names of 'qpos', 'qvel', 'actuator' or 'body' as a list of str."""
        return _names(getattr(self, f"{kind}_names"))


# --------------------------------------------------------------------------------------------
# Joint states


_JointStateSeriesBase = get_class("JointStateSeries", NAMESPACE)


@register_class("JointStateSeries", NAMESPACE)
class JointStateSeries(_JointStateSeriesBase):
    """A joint-space quantity (qpos, qvel, forces, actuator controls...) with columns named as in its body model.

    The column names must equal the body model's qpos, qvel or actuator names.
    """

    @docval(*_docval_args(_JointStateSeriesBase))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        columns = _names(self.column_names)
        model = self.body_model
        if model is not None and columns not in (model.names("qpos"), model.names("qvel"), model.names("actuator")):
            _problem(
                self,
                f"its {len(columns)} column_names are not the qpos ({len(model.qpos_names)}), qvel "
                f"({len(model.qvel_names)}) or actuator ({len(model.actuator_names)}) names of body model "
                f"'{model.name}'",
            )


# --------------------------------------------------------------------------------------------
# STAC registration


def pose_as_array(pose_estimation, keypoints=None):
    """Positions of an ndx-pose PoseEstimation as an array (T, K, D), keypoints in the given order.

    ``keypoints`` defaults to the Skeleton's node order when there is a skeleton, else the order of
    the series in the file.
    """
    series = pose_estimation.pose_estimation_series
    if keypoints is None:
        skeleton = pose_estimation.skeleton
        keypoints = _names(skeleton.nodes) if skeleton is not None else list(series)
    missing = [k for k in keypoints if k not in series]
    if missing:
        raise KeyError(f"PoseEstimation '{pose_estimation.name}' has no series for keypoints {missing}")
    return np.stack([np.asarray(series[k].data[:]) for k in keypoints], axis=1)


_StacRegistrationBase = get_class("StacRegistration", NAMESPACE)


@register_class("StacRegistration", NAMESPACE)
class StacRegistration(_StacRegistrationBase):
    """STAC result: qpos per keypoint frame, keypoint sites, model keypoints, per-keypoint errors."""

    @docval(*_docval_args(_StacRegistrationBase))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        num_frames = _num_rows(self.qpos.data)
        num_keypoints = len(self.keypoint_sites)
        for field, rows in [
            ("frame_valid", _num_rows(self.frame_valid)),
            ("keypoint_errors", _num_rows(self.keypoint_errors.data)),
            ("penetration", _num_rows(self.penetration.data) if self.penetration is not None else num_frames),
            (
                "self_contact_depth",
                _num_rows(self.self_contact_depth.data) if self.self_contact_depth is not None else num_frames,
            ),
        ]:
            if rows != num_frames:
                _problem(self, f"{field} has {rows} frames but qpos has {num_frames}")
        if len(self.keypoint_errors.column_names) != num_keypoints:
            _problem(
                self,
                f"keypoint_errors has {len(self.keypoint_errors.column_names)} columns but keypoint_sites has "
                f"{num_keypoints} keypoints",
            )
        num_model_keypoints = len(self.model_keypoints.pose_estimation_series)
        if num_model_keypoints != num_keypoints:
            _problem(
                self,
                f"model_keypoints has {num_model_keypoints} series but keypoint_sites has {num_keypoints} keypoints",
            )

    @property
    def keypoint_names(self):
        return _names(self.keypoint_sites["keypoint"].data)

    def model_keypoints_array(self):
        """Model keypoint positions (T, K, 3) in meters, keypoints in keypoint_sites order."""
        return pose_as_array(self.model_keypoints, self.keypoint_names)


# --------------------------------------------------------------------------------------------
# Simulation rollouts and network activations


_SimulationRolloutBase = get_class("SimulationRollout", NAMESPACE)

ROLLOUT_SERIES = (
    "qpos",
    "qvel",
    "qacc",
    "actuator_controls",
    "actuator_activations",
    "actuator_forces",
    "generalized_forces",
    "residual_forces",
    "reward",
    "reward_terms",
    "tracking_errors",
)


@register_class("SimulationRollout", NAMESPACE)
class SimulationRollout(_SimulationRolloutBase):
    """Simulated joint states of one rollout ('closed_loop', 'open_loop', 'inverse_dynamics' or 'expert')."""

    @docval(*_docval_args(_SimulationRolloutBase))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.mode not in ROLLOUT_MODES:
            _problem(self, f"mode must be one of {ROLLOUT_MODES}, got {self.mode!r}")
        lengths = {name: _num_rows(s.data) for name in ROLLOUT_SERIES if (s := getattr(self, name)) is not None}
        if len(set(lengths.values())) > 1:
            _problem(self, f"its series differ in length: {lengths}")

    @property
    def num_steps(self):
        """Number of control steps (rows of its series)."""
        for name in ROLLOUT_SERIES:
            series = getattr(self, name)
            if series is not None:
                return _num_rows(series.data)
        return 0


_LayerActivationsBase = get_class("LayerActivations", NAMESPACE)


@register_class("LayerActivations", NAMESPACE)
class LayerActivations(_LayerActivationsBase):
    """Activations of one layer, T x units; ``layer_kind`` is one of ``LAYER_KINDS``; unit 'a.u.'."""

    @docval(*_docval_args(_LayerActivationsBase, unit="a.u."))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.layer_kind not in LAYER_KINDS:
            _problem(self, f"layer_kind must be one of {LAYER_KINDS}, got {self.layer_kind!r}")
        shape = get_data_shape(self.data)
        if shape is None or len(shape) != 2:
            _problem(self, f"data must be 2-D (time x units), got shape {shape}")


_NetworkActivationsBase = get_class("NetworkActivations", NAMESPACE)


@register_class("NetworkActivations", NAMESPACE)
class NetworkActivations(_NetworkActivationsBase):
    """Every recorded layer of a controller during one rollout; each layer has one row per rollout step."""

    @docval(*_docval_args(_NetworkActivationsBase))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        steps = self.rollout.num_steps
        for name, layer in self.layer_activations.items():
            if _num_rows(layer.data) != steps:
                _problem(self, f"layer '{name}' has {_num_rows(layer.data)} steps but rollout has {steps}")

    def layer_kinds(self):
        """``{layer name: layer kind}`` in storage order."""
        return {name: layer.layer_kind for name, layer in self.layer_activations.items()}


# --------------------------------------------------------------------------------------------
# Neural data and analyses


_BinnedSpikeCountsBase = get_class("BinnedSpikeCounts", NAMESPACE)


@register_class("BinnedSpikeCounts", NAMESPACE)
class BinnedSpikeCounts(_BinnedSpikeCountsBase):
    """Spike counts in regular bins, T x units; columns are unit names; unit 'spikes'."""

    @docval(*_docval_args(_BinnedSpikeCountsBase, unit="spikes"))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        num_units = len(self.column_names)
        for field in ("brain_region", "active"):
            values = getattr(self, field)
            if values is not None and len(values) != num_units:
                _problem(self, f"{field} has {len(values)} entries but there are {num_units} units")
        if self.bin_size <= 0:
            _problem(self, f"bin_size must be positive, got {self.bin_size}")


_RepresentationalSimilarityBase = get_class("RepresentationalSimilarity", NAMESPACE)


@register_class("RepresentationalSimilarity", NAMESPACE)
class RepresentationalSimilarity(_RepresentationalSimilarityBase):
    """RDMs (n x C x C) over behaviour conditions, with names, measures, labels, and their comparisons."""

    @docval(*_docval_args(_RepresentationalSimilarityBase))
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        shape = get_data_shape(self.rdms)
        if shape is None or len(shape) != 3 or shape[1] != shape[2]:
            return _problem(self, f"rdms must have shape (n, C, C), got {shape}")
        for field, expected in [
            ("rdm_names", shape[0]),
            ("dissimilarity_measures", shape[0]),
            ("condition_labels", shape[1]),
        ]:
            if len(getattr(self, field)) != expected:
                _problem(self, f"{field} has {len(getattr(self, field))} entries, rdms needs {expected}")

    def rdm(self, name):
        """One RDM (C x C) by name."""
        return np.asarray(self.rdms[_names(self.rdm_names).index(name)])


# Types whose generated class needs nothing more.
ModelAsset = get_class("ModelAsset", NAMESPACE)
KeypointSites = get_class("KeypointSites", NAMESPACE)
RolloutEpisodes = get_class("RolloutEpisodes", NAMESPACE)
NetworkParameter = get_class("NetworkParameter", NAMESPACE)
NetworkWeights = get_class("NetworkWeights", NAMESPACE)
ControllerNetwork = get_class("ControllerNetwork", NAMESPACE)
LatentResampling = get_class("LatentResampling", NAMESPACE)
EncodingResults = get_class("EncodingResults", NAMESPACE)
RdmComparisons = get_class("RdmComparisons", NAMESPACE)

"""ndx-mimic: NWB types for MIMIC virtual-animal sessions.

Importing this package loads the ``ndx-mimic`` namespace (and ``ndx-pose``, which it includes)
into pynwb and exposes a Python class for every type. It imports nothing heavier than pynwb:
the nwbinspector checks live in :mod:`ndx_mimic.inspector_checks`, loaded only on request.
"""

import os
from importlib.resources import files

import ndx_pose  # noqa: F401  (the namespace includes ndx-pose: load it first)
from pynwb import load_namespaces

# Installed: the YAML ships inside the package; editable install: read it from the spec/ folder.
_spec_path = files(__name__) / "spec" / "ndx-mimic.namespace.yaml"
if not os.path.exists(str(_spec_path)):
    _spec_path = files(__name__).parent / "spec" / "ndx-mimic.namespace.yaml"
NAMESPACE_PATH = str(_spec_path)
load_namespaces(NAMESPACE_PATH)

from .mimic import (  # noqa: E402
    LAYER_KINDS,
    ROLLOUT_MODES,
    BinnedSpikeCounts,
    BodyModel,
    ControllerNetwork,
    EncodingResults,
    JointStateSeries,
    KeypointSites,
    LatentResampling,
    LayerActivations,
    ModelAsset,
    NamedColumnSeries,
    NetworkActivations,
    NetworkParameter,
    NetworkWeights,
    RdmComparisons,
    RepresentationalSimilarity,
    RolloutEpisodes,
    SimulationRollout,
    StacRegistration,
)

__version__ = "0.2.0"

__all__ = [
    "NAMESPACE_PATH",
    "LAYER_KINDS",
    "ROLLOUT_MODES",
    "BinnedSpikeCounts",
    "BodyModel",
    "ControllerNetwork",
    "EncodingResults",
    "JointStateSeries",
    "KeypointSites",
    "LatentResampling",
    "LayerActivations",
    "ModelAsset",
    "NamedColumnSeries",
    "NetworkActivations",
    "NetworkParameter",
    "NetworkWeights",
    "RdmComparisons",
    "RepresentationalSimilarity",
    "RolloutEpisodes",
    "SimulationRollout",
    "StacRegistration",
]

"""Poisson GLM encoding models: which feature set, at which lag, predicts each unit.

The pure core (arrays in, result objects out). See `mimic_nwb.encoding.core` for the method
and `mimic_nwb.encoding.glm` for the solver's objective and penalty.
"""

from .binning import bin_centers, bin_edges, bin_spike_times, lag_features, resample_features
from .core import (
    DEFAULT_LAGS,
    ConvergenceWarning,
    EncodingConfig,
    EncodingResult,
    FeatureTransform,
    benjamini_hochberg,
    blocked_folds,
    fit_encoding_models,
)
from .glm import PoissonGLMFit, fit_poisson_glm

__all__ = [
    "DEFAULT_LAGS",
    "ConvergenceWarning",
    "EncodingConfig",
    "EncodingResult",
    "FeatureTransform",
    "PoissonGLMFit",
    "benjamini_hochberg",
    "bin_centers",
    "bin_edges",
    "bin_spike_times",
    "blocked_folds",
    "fit_encoding_models",
    "fit_poisson_glm",
    "lag_features",
    "resample_features",
]

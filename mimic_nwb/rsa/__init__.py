"""Representational similarity analysis of neural activity, features and network layers
over behaviour categories. The pure core (arrays in, result objects out); see
`mimic_nwb.rsa.core` for the method."""

from .core import RSAResult, compare_rdms, compute_rdms, condition_means, noise_precision

__all__ = ["RSAResult", "compare_rdms", "compute_rdms", "condition_means", "noise_precision"]

"""Put spikes and features on one grid of time bins (seconds on the session clock).

Bins are half-open, ``[t_start + k * bin_size, t_start + (k + 1) * bin_size)`` for
``k = 0 .. n_bins - 1``, with ``n_bins = floor((t_stop - t_start) / bin_size)`` (a last partial
bin is dropped). Features are sampled at the bin centres.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bin_edges", "bin_centers", "bin_spike_times", "resample_features", "lag_features"]

# Tolerance, in bins, for durations and lags that should be whole numbers of bins
# (0.3 / 0.02 is 14.999999999999998 in floating point).
_BIN_TOL = 1e-6


def bin_edges(t_start: float, t_stop: float, bin_size: float = 0.02) -> np.ndarray:
    """Edges of the bins covering [t_start, t_stop), shape (n_bins + 1,), seconds."""
    if not bin_size > 0:
        raise ValueError(f"bin_size must be positive; got {bin_size}")
    if not t_stop > t_start:
        raise ValueError(f"t_stop ({t_stop}) must be after t_start ({t_start})")
    n_bins = int(np.floor((t_stop - t_start) / bin_size + _BIN_TOL))
    if n_bins < 1:
        raise ValueError(f"[{t_start}, {t_stop}) is shorter than one bin of {bin_size} s")
    return t_start + bin_size * np.arange(n_bins + 1)


def bin_centers(t_start: float, t_stop: float, bin_size: float = 0.02) -> np.ndarray:
    """Centres of the bins covering [t_start, t_stop), shape (n_bins,), seconds."""
    edges = bin_edges(t_start, t_stop, bin_size)
    return 0.5 * (edges[:-1] + edges[1:])


def bin_spike_times(
    spike_times: Sequence[np.ndarray],
    t_start: float,
    t_stop: float,
    bin_size: float = 0.02,
) -> np.ndarray:
    """Count spikes per bin and unit.

    Parameters
    ----------
    spike_times : sequence of arrays
        One array of spike times (seconds) per unit; spikes outside [t_start, t_stop) or in
        the dropped last partial bin are ignored.
    t_start, t_stop : float
        Time range, seconds.
    bin_size : float, default 0.02
        Bin width, seconds.

    Returns
    -------
    counts : ndarray of int64, shape (n_bins, n_units)
    """
    edges = bin_edges(t_start, t_stop, bin_size)
    n_bins = edges.size - 1
    counts = np.zeros((n_bins, len(spike_times)), dtype=np.int64)
    for u, times in enumerate(spike_times):
        times = np.asarray(times, dtype=np.float64).ravel()
        if not np.all(np.isfinite(times)):
            raise ValueError(f"spike_times[{u}]: spike times must be finite")
        # searchsorted against the same edges that are reported, so a spike exactly on an
        # edge always goes to the bin that starts there.
        idx = np.searchsorted(edges, times, side="right") - 1
        idx = idx[(idx >= 0) & (idx < n_bins)]
        counts[:, u] = np.bincount(idx, minlength=n_bins)
    return counts


# Bins interpolated at a time by resample_features (float64 temporaries of this many rows).
_RESAMPLE_BLOCK_ROWS = 65536


def resample_features(
    values: np.ndarray,
    target_times: np.ndarray,
    timestamps: np.ndarray | None = None,
    *,
    rate: float | None = None,
    starting_time: float = 0.0,
    dtype=np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate a feature matrix at the bin centres.

    The feature's time base is either ``timestamps`` or ``rate`` + ``starting_time`` (as in an
    NWB TimeSeries). Bin centres outside the feature's time range are not extrapolated: they
    are NaN and reported in the returned mask. A NaN sample makes the bins that interpolate
    from it NaN. No anti-alias filter is applied: when the features are sampled much faster
    than the bins, smooth them first.

    Parameters
    ----------
    values : array, shape (n_samples, n_features) or (n_samples,)
    target_times : array, shape (n_bins,)
        Times to sample at, seconds (normally `bin_centers`).
    timestamps : array, shape (n_samples,), optional
        Strictly increasing sample times, seconds.
    rate : float, optional
        Sampling rate, Hz (instead of ``timestamps``).
    starting_time : float, default 0
        Time of the first sample when ``rate`` is given, seconds.
    dtype : numpy dtype, default float64
        Of the result. The interpolation is float64 whatever the dtype, in blocks of
        ``_RESAMPLE_BLOCK_ROWS`` bins, so that a long session's float32 features are resampled
        without a float64 copy of them all.

    Returns
    -------
    resampled : ndarray, shape (n_bins, n_features), ``dtype``
        NaN where the bin centre is outside the feature's time range.
    inside : ndarray of bool, shape (n_bins,)
        Whether each bin centre lies inside the feature's time range.
    """
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[0] < 2:
        raise ValueError(f"values must be (n_samples >= 2, n_features); got shape {values.shape}")
    n_samples = values.shape[0]
    if (timestamps is None) == (rate is None):
        raise ValueError("give exactly one of timestamps and rate")
    if timestamps is None:
        if not rate > 0:
            raise ValueError(f"rate must be positive; got {rate}")
        timestamps = starting_time + np.arange(n_samples) / rate
    timestamps = np.asarray(timestamps, dtype=np.float64).ravel()
    if timestamps.size != n_samples:
        raise ValueError(f"timestamps has {timestamps.size} entries but values has {n_samples} samples")
    if not np.all(np.diff(timestamps) > 0):
        raise ValueError("timestamps must be strictly increasing")
    target_times = np.asarray(target_times, dtype=np.float64).ravel()
    inside = (target_times >= timestamps[0]) & (target_times <= timestamps[-1])
    # Interval index and weight once for all columns.
    i = np.clip(np.searchsorted(timestamps, target_times, side="right") - 1, 0, n_samples - 2)
    w = (target_times - timestamps[i]) / (timestamps[i + 1] - timestamps[i])
    resampled = np.empty((target_times.size, values.shape[1]), dtype=dtype)
    for start in range(0, target_times.size, _RESAMPLE_BLOCK_ROWS):
        rows = slice(start, start + _RESAMPLE_BLOCK_ROWS)
        i_rows, w_rows = i[rows], w[rows][:, None]
        block = values[i_rows] * (1.0 - w_rows) + values[i_rows + 1] * w_rows  # float64
        # The sample itself at an exact hit (w == 0), so a NaN in the next sample does not leak in.
        exact = w[rows] == 0
        block[exact] = values[i_rows[exact]]
        resampled[rows] = block
    resampled[~inside] = np.nan
    return resampled, inside


def lag_features(features: np.ndarray, lag: float, bin_size: float = 0.02) -> np.ndarray:
    """Pair each neural bin with the features ``lag`` seconds earlier.

    ``out[t] = features[t - lag / bin_size]``: the neural activity in bin t is paired with the
    features at time t - lag. A negative lag pairs activity with *later* features (activity
    leads movement: premotor); a positive lag with earlier ones (sensory / feedback). This is
    the sign convention of Aldarondo et al. (2024). Bins whose partner lies outside the
    recording are NaN.

    Parameters
    ----------
    features : array, shape (n_bins, n_features)
    lag : float
        Seconds; must be a whole number of bins.
    bin_size : float, default 0.02
        Seconds.

    Returns
    -------
    ndarray, shape (n_bins, n_features), float64
    """
    features = np.asarray(features, dtype=np.float64)
    shift = lag_in_bins(lag, bin_size)
    out = np.full(features.shape, np.nan)
    n = features.shape[0]
    # out[t] = features[t - shift], for 0 <= t - shift < n.
    if shift >= 0:
        out[shift:] = features[: n - shift] if shift < n else out[shift:]
    else:
        out[: n + shift] = features[-shift:]
    return out


def lag_in_bins(lag: float, bin_size: float) -> int:
    """``lag / bin_size`` as an int; ValueError if the lag is not a whole number of bins."""
    shift = lag / bin_size
    rounded = int(round(shift))
    if abs(shift - rounded) > _BIN_TOL:
        raise ValueError(f"lag {lag} s is not a whole number of bins of {bin_size} s")
    return rounded

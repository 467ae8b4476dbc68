"""Simulated units and behaviour labels with a known ground truth, for the demo and for tests.

No real spikes ship with this repository, so the demo makes units whose rates depend on one
known feature set of the session at one known lag (a log-linear Poisson model of a random
direction in that feature set's standardised principal components), and behaviour labels
derived from the registered movement. The units are marked as simulated in the Units table,
with their feature set, lag and rate parameters beside them.
"""

from dataclasses import dataclass

import numpy as np

from ndx_mimic import StacRegistration

from .encoding.binning import bin_centers
from .errors import InputError
from .features import read_feature_set, resample_to_bins
from .session import RESULTS_MODULE, find_result

GROUND_TRUTH_COLUMNS = {
    "simulated": "True for units simulated from a known ground truth (mimic_nwb.groundtruth), not recorded.",
    "ground_truth_feature_set": "Feature set that drives the simulated unit's rate ('' for recorded units).",
    "ground_truth_lag": "Lag (s) at which the feature set drives the unit: rate at t depends on features at t - lag.",
    "ground_truth_gain": "Gain of the log-rate on the unit-variance driving signal.",
    "ground_truth_base_rate": "Rate (Hz) of the simulated unit when the driving signal is zero.",
}


@dataclass
class SimulatedUnits:
    names: list[str]
    spike_times: list[np.ndarray]
    feature_sets: list[str]
    lags: list[float]
    gains: list[float]
    base_rates: list[float]
    brain_regions: list[str]


def principal_components(values, n_components=5):
    """The top ``n_components`` principal component scores of the standardised ``values``.

    ``values`` is (T, F) on the spike bins; returns (T, n) float64, rows with NaN left NaN.
    """
    finite = np.all(np.isfinite(values), axis=1)
    x = np.asarray(values[finite], dtype=np.float64)
    scale = x.std(axis=0)
    x = (x[:, scale > 0] - x[:, scale > 0].mean(axis=0)) / scale[scale > 0]
    # principal axes from the (F, F) Gram matrix: no (T, F) factor besides x
    eigenvalues, axes = np.linalg.eigh(x.T @ x)
    top = axes[:, np.argsort(eigenvalues)[::-1][:n_components]]
    components = np.full((len(values), top.shape[1]), np.nan)
    components[finite] = x @ top
    return components


def driving_signal(components, rng=None):
    """A unit-variance signal: a random direction in ``components`` (`principal_components`).

    Rows with NaN stay NaN.
    """
    rng = rng or np.random.default_rng()
    finite = np.all(np.isfinite(components), axis=1)
    signal = components[finite] @ rng.standard_normal(components.shape[1])
    out = np.full(len(components), np.nan)
    out[finite] = (signal - signal.mean()) / signal.std()
    return out


def simulate_units(nwbfile, plan, t_start, t_stop, bin_size=0.02, seed=0, path="session"):
    """Poisson units driven by feature sets: ``plan`` is a list of (feature set, lag s, brain region).

    Returns SimulatedUnits with spike times in [t_start, t_stop).
    """
    rng = np.random.default_rng(seed)
    centers = bin_centers(t_start, t_stop, bin_size)
    result = SimulatedUnits([], [], [], [], [], [], [])
    components = {}  # per feature set: its top principal components on the bins, not its values
    for index, (feature_set, lag, region) in enumerate(plan):
        if feature_set not in components:
            values = resample_to_bins(read_feature_set(nwbfile, feature_set, path), centers)
            components[feature_set] = principal_components(values)
            del values
        shift = int(round(lag / bin_size))
        signal = driving_signal(components[feature_set], rng=rng)
        # rate at bin t depends on the features at t - lag
        driven = np.full(len(centers), np.nan)
        if shift >= 0:
            driven[shift:] = signal[: len(signal) - shift]
        else:
            driven[:shift] = signal[-shift:]
        gain, base_rate = rng.uniform(0.6, 1.0), rng.uniform(8.0, 20.0)
        rate = base_rate * np.exp(gain * np.nan_to_num(driven) - gain**2 / 2)
        counts = rng.poisson(rate * bin_size)
        if counts.sum() == 0:
            raise InputError(f"{path}: simulated unit {index} has no spikes; use a longer session")
        spikes = np.repeat(centers - bin_size / 2, counts) + rng.uniform(0, bin_size, counts.sum())
        result.names.append(f"sim{index:02d}_{feature_set.split('/')[-1]}")
        result.spike_times.append(np.sort(spikes))
        result.feature_sets.append(feature_set)
        result.lags.append(float(lag))
        result.gains.append(float(gain))
        result.base_rates.append(float(base_rate))
        result.brain_regions.append(region)
    return result


def movement_labels(nwbfile, min_bout=0.2, registration=None, path="session"):
    """Per-frame behaviour labels from the registered movement: 'Rear', 'Walk' or 'Still'.

    'Rear' where the head keypoints are high (top 15 % of the session), 'Walk' where the root
    moves fast (top 30 % of horizontal speed), else 'Still'; bouts shorter than ``min_bout``
    seconds are merged into their neighbour. ``registration`` names the StacRegistration (default:
    the session's only one; several: an error naming them). Returns (labels (T,), frame times (T,) s).
    """
    stac = find_result(nwbfile, StacRegistration, registration, RESULTS_MODULE, path=path)
    kinematics = read_feature_set(nwbfile, f"{stac.name}/kinematics", path)
    times = kinematics.times
    columns = kinematics.columns
    head = [columns.index(f"{k}_z") for k in ("Snout", "EarL", "EarR") if f"{k}_z" in columns]
    if not head:
        head = [i for i, c in enumerate(columns) if c.endswith("_z") and "velocity" not in c][:1]
    height = np.nanmean(kinematics.values[:, head], axis=1)
    names = [str(n) for n in stac.qpos.column_names[:]]
    xy = np.asarray(stac.qpos.data[:])[:, [names.index("root_x"), names.index("root_y")]]
    speed = np.linalg.norm(np.gradient(xy, times, axis=0), axis=1)
    labels = np.full(len(times), "Still", dtype=object)
    labels[speed > np.nanquantile(speed, 0.7)] = "Walk"
    labels[height > np.nanquantile(height, 0.85)] = "Rear"
    return _merge_short_bouts(labels, int(round(min_bout / np.median(np.diff(times))))), times


def _merge_short_bouts(labels, min_frames):
    labels = labels.copy()
    changed = True
    while changed:
        changed = False
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        stops = np.r_[starts[1:], len(labels)]
        for start, stop in zip(starts, stops):
            if stop - start < min_frames and len(starts) > 1:
                labels[start:stop] = labels[start - 1] if start > 0 else labels[stop]
                changed = True
                break
    return labels

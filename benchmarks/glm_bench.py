"""Benchmark: batched Poisson GLM encoding models vs a loop of statsmodels GLM fits.

Simulated session: 1 hour of 20 ms bins (180,000), 100 units, 5 feature sets whose PCA keeps
about 50 components each (90 % of the variance), 5 folds of 4 s chunks, one lag (0 s).
Both sides fit the same unpenalised models on the same designs (the per-fold standardisation
and PCA of `mimic_nwb.encoding.FeatureTransform`) and compute the same cross-validated
log-likelihood ratio. statsmodels runs on a random subset of the units (default 10) and its
time is scaled to all units. Then a full default analysis (all lags, default penalty) of the
same hour is timed.

Run by hand (not part of the tests), e.g.::

    python benchmarks/glm_bench.py --threads 1
"""

from __future__ import annotations

import argparse
import gc
import os
import sys


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for both solvers (default 1)")
    parser.add_argument("--bins", type=int, default=180_000, help="20 ms bins (default 180000 = 1 h)")
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--feature-sets", type=int, default=5)
    parser.add_argument("--raw-features", type=int, default=84, help="columns per feature set before PCA")
    parser.add_argument("--statsmodels-units", type=int, default=10, help="units fitted with statsmodels")
    parser.add_argument("--skip-full", action="store_true", help="skip the full default analysis")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


ARGS = parse_args()
# Set before numpy is imported, in case threadpoolctl is missing; threadpoolctl (below) also
# limits BLAS libraries that were loaded already.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import math  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import statsmodels.api as sm  # noqa: E402
from scipy.ndimage import gaussian_filter1d  # noqa: E402

from mimic_nwb.encoding import EncodingConfig, FeatureTransform, fit_encoding_models  # noqa: E402

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = threadpool_info = None

BIN = 0.02


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is KiB on Linux


def simulate(rng, n_bins, n_units, n_sets, n_raw):
    """Feature sets of smooth (100 ms) signals with ~50 strong directions each, and units whose
    log rate depends on one feature set each (20 per set), rates 1-20 Hz."""
    n_latent = int(0.75 * n_raw)
    sets, latents = {}, []
    for s in range(n_sets):
        latent = gaussian_filter1d(rng.standard_normal((n_bins, n_latent)), 5, axis=0)
        latent /= latent.std(axis=0)
        mixing = rng.standard_normal((n_latent, n_raw))
        noise = gaussian_filter1d(rng.standard_normal((n_bins, n_raw)), 5, axis=0)
        sets[f"set{s}"] = latent @ mixing + 0.5 * np.sqrt(n_latent) * noise / noise.std(axis=0)
        latents.append(latent)
    counts = np.empty((n_bins, n_units), dtype=np.int64)
    for u in range(n_units):
        weights = rng.standard_normal(n_latent)
        drive = latents[u % n_sets] @ (0.6 * weights / np.linalg.norm(weights))
        rate = rng.uniform(1.0, 20.0) * BIN
        counts[:, u] = rng.poisson(rate * np.exp(drive - drive.var() / 2))
    return counts, sets


def statsmodels_cv_llr(counts, sets, fold_of_bin, n_folds, units):
    """CV-LLR (bits/spike) of ``units`` with a loop of statsmodels GLM(Poisson).fit() calls on
    the same folds and designs; returns (cv_llr (n_sets, len(units)), fit seconds, design seconds)."""
    cv_llr = np.zeros((len(sets), len(units)))
    fit_seconds = design_seconds = 0.0
    n_spikes = counts[fold_of_bin >= 0].sum(axis=0)
    for s, F in enumerate(sets.values()):
        for f in range(n_folds):
            t0 = time.perf_counter()
            train = (fold_of_bin >= 0) & (fold_of_bin != f)
            test = fold_of_bin == f
            transform = FeatureTransform.fit(F[train], 0.9)
            X_train = sm.add_constant(transform.transform(F[train]), has_constant="add")
            X_test = sm.add_constant(transform.transform(F[test]), has_constant="add")
            design_seconds += time.perf_counter() - t0
            for j, u in enumerate(units):
                t0 = time.perf_counter()
                y_train, y_test = counts[train, u], counts[test, u]
                params = sm.GLM(y_train, X_train, family=sm.families.Poisson()).fit().params
                # statsmodels' model/results objects form reference cycles that hold ~90 MB of
                # arrays each; without collecting them the loop grows to tens of GB.
                gc.collect()
                eta = X_test @ params
                rate = y_train.mean()
                gain = np.sum(y_test * eta - np.exp(eta)) - np.sum(y_test * np.log(rate) - rate)
                cv_llr[s, j] += gain / (n_spikes[u] * math.log(2))
                fit_seconds += time.perf_counter() - t0
    return cv_llr, fit_seconds, design_seconds


def main():
    limiter = threadpool_limits(limits=ARGS.threads) if threadpool_limits else None
    blas = (
        ", ".join(f"{i['internal_api']} {i['num_threads']} thread(s)" for i in threadpool_info())
        if threadpool_info
        else f"env vars = {ARGS.threads}"
    )
    print(f"BLAS: {blas}; python {sys.version.split()[0]}, numpy {np.__version__}, statsmodels {sm.__version__}")
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at start")
    rng = np.random.default_rng(ARGS.seed)
    t0 = time.perf_counter()
    counts, sets = simulate(rng, ARGS.bins, ARGS.units, ARGS.feature_sets, ARGS.raw_features)
    print(
        f"data: {ARGS.bins} bins of 20 ms ({ARGS.bins * BIN / 3600:.2f} h), {ARGS.units} units "
        f"({counts.sum() / (ARGS.bins * BIN * ARGS.units):.1f} Hz mean), {ARGS.feature_sets} feature sets x "
        f"{ARGS.raw_features} columns; simulated in {time.perf_counter() - t0:.1f} s"
    )

    # --- one lag, unpenalised: ours vs statsmodels --------------------------------------------
    config = EncodingConfig(lags=(0.0,), alpha=0.0)
    t0 = time.perf_counter()
    ours = fit_encoding_models(counts, sets, config)
    ours_seconds = time.perf_counter() - t0
    print(
        f"\nours, 1 lag, {ARGS.units} units x {ARGS.feature_sets} sets x {config.n_folds} folds "
        f"(components per fit {ours.n_components.min()}-{ours.n_components.max()}, "
        f"mean {ours.n_components.mean():.1f}): {ours_seconds:.1f} s; all converged: {bool(ours.converged.all())}; "
        f"peak RSS {peak_rss_mb():.0f} MB"
    )

    units = np.sort(rng.choice(ARGS.units, size=min(ARGS.statsmodels_units, ARGS.units), replace=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm_llr, fit_seconds, design_seconds = statsmodels_cv_llr(counts, sets, ours.fold_of_bin, config.n_folds, units)
    scale = ARGS.units / len(units)
    sm_seconds = fit_seconds * scale + design_seconds
    print(
        f"statsmodels GLM(Poisson).fit() loop on {len(units)} random units {units.tolist()}: fits "
        f"{fit_seconds:.1f} s, designs {design_seconds:.1f} s; scaled to {ARGS.units} units "
        f"(fits x {scale:g}): {sm_seconds:.1f} s"
    )
    print(f"speed-up: {sm_seconds / ours_seconds:.1f}x (target >= 30x)")
    diff = np.abs(ours.cv_llr[:, 0, units] - sm_llr)
    print(
        f"max |CV-LLR ours - statsmodels| over {diff.size} unit x set pairs: {diff.max():.2e} bits/spike "
        f"(CV-LLR range {sm_llr.min():.3f} .. {sm_llr.max():.3f})"
    )
    print(f"peak RSS {peak_rss_mb():.0f} MB")

    # --- full default analysis -------------------------------------------------------------------
    if not ARGS.skip_full:
        default = EncodingConfig()

        def progress(done, total, description):
            if done % 25 == 0 or done == total:
                print(f"  {done}/{total} fits ({description}), {time.perf_counter() - t0:.0f} s", flush=True)

        print(
            f"\nfull default analysis: {len(default.lags)} lags {default.lags[0]} .. {default.lags[-1]} s, "
            f"alpha {default.alpha}, l1_wt {default.l1_wt}, PCA {default.pca_variance}"
        )
        t0 = time.perf_counter()
        full = fit_encoding_models(counts, sets, default, progress=progress)
        full_seconds = time.perf_counter() - t0
        best = full.best_lags()
        winners = best.loc[best.groupby("unit")["cv_llr"].idxmax()]
        truth = np.array([f"set{int(u) % ARGS.feature_sets}" for u in winners["unit"]])
        print(
            f"full default analysis ({ARGS.units} units x {ARGS.feature_sets} sets x {len(default.lags)} lags x "
            f"{default.n_folds} folds = {ARGS.units * ARGS.feature_sets * len(default.lags) * default.n_folds} fits): "
            f"{full_seconds:.1f} s ({full_seconds / 60:.1f} min); all converged: {bool(full.converged.all())}; "
            f"units whose true feature set wins: {np.mean(winners['feature_set'].to_numpy() == truth):.0%}"
        )
        print(f"peak RSS {peak_rss_mb():.0f} MB")
    if limiter is not None:
        limiter.restore_original_limits()


if __name__ == "__main__":
    main()

"""Tests of the encoding core: binning, lags, folds, the batched Poisson GLM and the CV metrics.

Reference values come from a known ground truth (simulated units) and from statsmodels'
GLM(Poisson) fitted on the same designs.
"""

import math
import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.ndimage import gaussian_filter1d
from statsmodels.stats.multitest import multipletests

from mimic_nwb.encoding import (
    ConvergenceWarning,
    EncodingConfig,
    FeatureTransform,
    benjamini_hochberg,
    bin_centers,
    bin_spike_times,
    binning,
    blocked_folds,
    fit_encoding_models,
    fit_poisson_glm,
    lag_features,
    resample_features,
)

BIN = 0.02
# Tolerance of the statsmodels comparisons, bits per spike (the requirement).
TOL_BITS = 1e-6


def smooth_features(rng, n_bins, n_features, sigma_bins=5):
    """Smooth, unit-variance random features (behaviour-like autocorrelation of ~100 ms)."""
    F = gaussian_filter1d(rng.standard_normal((n_bins, n_features)), sigma_bins, axis=0)
    return F / F.std(axis=0)


def simulate_units(rng, features, lag, n_units, rate_per_bin=0.1, gain=0.8):
    """Poisson counts whose log rate is linear in ``features`` paired at ``lag`` (s)."""
    W = rng.standard_normal((features.shape[1], n_units))
    W /= np.linalg.norm(W, axis=0)
    drive = lag_features(features, lag, BIN) @ W
    counts = np.zeros(drive.shape, dtype=np.int64)
    ok = np.isfinite(drive[:, 0])
    counts[ok] = rng.poisson(rate_per_bin * np.exp(gain * drive[ok]))
    return counts


# -- binning ---------------------------------------------------------------------------------


def test_bin_spike_times_counts_half_open_bins():
    spikes = [np.array([0.0, 0.019, 0.02, 0.06, 0.0999, 0.1, 5.0, -1.0]), np.array([])]
    counts = bin_spike_times(spikes, 0.0, 0.1, bin_size=0.02)
    assert counts.shape == (5, 2)
    # 0.06 is exactly on an edge (0.06 / 0.02 is 2.9999999999999996 in floating point) and
    # still goes to the bin that starts there; 0.1 is t_stop and excluded.
    np.testing.assert_array_equal(counts[:, 0], [2, 1, 0, 1, 1])
    np.testing.assert_array_equal(counts[:, 1], 0)
    np.testing.assert_allclose(bin_centers(0.0, 0.1, 0.02), [0.01, 0.03, 0.05, 0.07, 0.09])


def test_resample_features_interpolates_and_excludes_outside():
    # 50 Hz samples of a linear function from t = 0.1 s: interpolation is exact inside.
    rate, start = 50.0, 0.1
    t = start + np.arange(100) / rate
    values = np.c_[2.0 * t + 1.0, -t]
    centres = bin_centers(0.0, 2.5, 0.02)
    resampled, inside = resample_features(values, centres, rate=rate, starting_time=start)
    expected_inside = (centres >= t[0]) & (centres <= t[-1])
    np.testing.assert_array_equal(inside, expected_inside)
    np.testing.assert_allclose(resampled[inside, 0], 2.0 * centres[inside] + 1.0, atol=1e-12)
    np.testing.assert_allclose(resampled[inside, 1], -centres[inside], atol=1e-12)
    assert np.all(np.isnan(resampled[~inside]))  # not extrapolated
    same, _ = resample_features(values, centres, timestamps=t)
    np.testing.assert_array_equal(np.isnan(same), np.isnan(resampled))
    np.testing.assert_allclose(same[inside], resampled[inside])


def test_resample_features_in_blocks_matches_interp_in_the_requested_dtype(monkeypatch):
    # Blocks of 7 bins over 100 bins: the interpolation across block edges, the exact hits and a
    # NaN sample (which makes only the bins next to it NaN) are those of one float64 pass.
    monkeypatch.setattr(binning, "_RESAMPLE_BLOCK_ROWS", 7)
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.uniform(0.01, 0.03, 150))
    values = rng.normal(size=(150, 3)).astype(np.float32)
    values[40, 1] = np.nan
    centres = np.r_[t[5], np.linspace(t[0] - 0.1, t[-1] + 0.1, 98), t[41]]
    resampled, inside = resample_features(values, centres, timestamps=t, dtype=np.float32)
    assert resampled.dtype == np.float32 and resampled.shape == (100, 3)
    for column in range(3):
        expected = np.interp(centres, t, values[:, column].astype(np.float64))
        expected[~inside] = np.nan
        np.testing.assert_allclose(resampled[:, column], expected, rtol=1e-6, atol=1e-6)
    assert resampled[0, 0] == values[5, 0] and resampled[-1, 1] == values[41, 1]  # exact hits, even after a NaN
    assert np.isnan(resampled[:, 1]).sum() == (~inside).sum() + np.sum((centres > t[39]) & (centres < t[41]))


def test_resample_features_bad_timestamps():
    with pytest.raises(ValueError, match="strictly increasing"):
        resample_features(np.zeros((3, 1)), np.zeros(2), timestamps=np.array([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="exactly one of"):
        resample_features(np.zeros((3, 1)), np.zeros(2))


def test_lag_sign_convention():
    features = np.arange(10.0)[:, None]
    # Negative lag: activity at t paired with the feature 2 bins LATER (premotor).
    premotor = lag_features(features, -0.04, BIN)
    np.testing.assert_array_equal(premotor[:8, 0], np.arange(2.0, 10.0))
    assert np.all(np.isnan(premotor[8:]))
    # Positive lag: paired with the feature 2 bins earlier.
    feedback = lag_features(features, 0.04, BIN)
    np.testing.assert_array_equal(feedback[2:, 0], np.arange(0.0, 8.0))
    assert np.all(np.isnan(feedback[:2]))
    with pytest.raises(ValueError, match="whole number of bins"):
        lag_features(features, 0.03, BIN)


def test_lag_sign_recovered_by_fit():
    """A unit driven by movement 200 ms later is best fit at lag -0.2 s, one driven by
    movement 200 ms earlier at +0.2 s."""
    rng = np.random.default_rng(3)
    F = smooth_features(rng, 4000, 3)
    counts = np.hstack([simulate_units(rng, F, -0.2, 1, gain=1.0), simulate_units(rng, F, 0.2, 1, gain=1.0)])
    result = fit_encoding_models(counts, {"kinematics": F}, EncodingConfig(lags=(-0.2, 0.0, 0.2)))
    best = result.lags[np.argmax(result.cv_llr[0], axis=0)]
    np.testing.assert_allclose(best, [-0.2, 0.2])


# -- folds and q-values -----------------------------------------------------------------------


def test_blocked_folds_round_robin_over_session():
    usable = np.ones(1000, dtype=bool)
    usable[400:600] = False  # a gap: chunk 2 (bins 400-599) has no usable bin
    chunk, fold = blocked_folds(1000, 0.02, 4.0, n_folds=2, usable=usable)
    # chunks of 200 bins; usable chunks are grid chunks 0, 1, 3, 4 -> numbered 0..3
    np.testing.assert_array_equal(chunk[[0, 199, 200, 399, 600, 999]], [0, 0, 1, 1, 2, 3])
    np.testing.assert_array_equal(fold[[0, 200, 600, 800]], [0, 1, 0, 1])
    assert np.all(chunk[~usable] == -1) and np.all(fold[~usable] == -1)
    with pytest.raises(ValueError, match="too few chunks"):
        blocked_folds(1000, 0.02, 4.0, n_folds=5, usable=usable)


def test_benjamini_hochberg_matches_statsmodels():
    rng = np.random.default_rng(0)
    p = np.r_[rng.uniform(size=40), rng.uniform(0, 1e-3, size=10), [0.5, 0.5]]
    np.testing.assert_allclose(benjamini_hochberg(p), multipletests(p, method="fdr_bh")[1], rtol=1e-12)
    with_nan = p.copy()
    with_nan[[3, 7]] = np.nan
    q = benjamini_hochberg(with_nan.reshape(4, 13))
    ok = ~np.isnan(with_nan)
    np.testing.assert_allclose(q.ravel()[ok], multipletests(with_nan[ok], method="fdr_bh")[1], rtol=1e-12)
    assert np.all(np.isnan(q.ravel()[~ok]))


# -- ground truth -------------------------------------------------------------------------------


def test_ground_truth_feature_set_and_lag():
    """Units driven by feature set 'joint_angles' at lag -0.2 s: that set must win at that lag."""
    rng = np.random.default_rng(0)
    n_bins, n_units = 6000, 12
    sets = {
        "kinematics": smooth_features(rng, n_bins, 4),
        "joint_angles": smooth_features(rng, n_bins, 4),
        "lstm_hidden": smooth_features(rng, n_bins, 6),
    }
    counts = simulate_units(rng, sets["joint_angles"], -0.2, n_units)
    calls = []
    config = EncodingConfig(lags=(-0.4, -0.2, 0.0, 0.2))
    result = fit_encoding_models(counts, sets, config, progress=lambda *args: calls.append(args))

    assert len(calls) == 3 * 5 * 4 and calls[-1][:2] == (60, 60)
    best = result.best_lags()
    winner = best.loc[best.groupby("unit")["cv_llr"].idxmax()]
    assert np.mean(winner["feature_set"] == "joint_angles") >= 0.9
    assert np.mean(np.isclose(winner["lag"], -0.2)) >= 0.9
    truth = best[best["feature_set"] == "joint_angles"]
    assert np.all(truth["cv_llr"] > 0.1) and np.all(truth["p_value_lags"] < 1e-3)
    q = benjamini_hochberg(best["p_value_lags"].to_numpy())
    assert np.all(q[best["feature_set"].to_numpy() == "joint_angles"] < 0.01)
    # Unrelated sets carry no information: CV-LLR near 0, mostly not significant.
    unrelated = best[best["feature_set"] != "joint_angles"]
    assert np.all(unrelated["cv_llr"] < 0.05)
    assert np.mean(unrelated["p_value_lags"] < 0.05) <= 0.2

    table = result.to_dataframe()
    assert len(table) == 3 * 4 * n_units
    assert list(table.columns) == [
        "unit",
        "feature_set",
        "lag",
        "cv_llr",
        "pseudo_r2",
        "p_value",
        "n_spikes",
        "n_components",
        "converged",
    ]
    assert table["converged"].all()
    assert np.all(result.fold_of_bin[-10:] == -1)  # the last 10 bins have no partner at lag -0.2


# -- agreement with statsmodels ---------------------------------------------------------------------


def _statsmodels_cv(result, counts, features, lag, fit):
    """CV-LLR (bits/spike), pseudo-R^2 and training log-likelihoods recomputed with statsmodels
    on the folds and designs of ``result``; ``fit(model) -> params``."""
    k_lagged = lag_features(features, lag, BIN)
    fold = result.fold_of_bin
    n_units = counts.shape[1]
    gain = np.zeros(n_units)
    ll_sat = np.zeros(n_units)
    ll_null = np.zeros(n_units)
    train_ll = []
    for f in range(result.config.n_folds):
        train = (fold >= 0) & (fold != f)
        test = fold == f
        transform = FeatureTransform.fit(k_lagged[train], result.config.pca_variance)
        X_train = sm.add_constant(transform.transform(k_lagged[train]), has_constant="add")
        X_test = sm.add_constant(transform.transform(k_lagged[test]), has_constant="add")
        for u in range(n_units):
            y_train, y_test = counts[train, u], counts[test, u]
            model = sm.GLM(y_train, X_train, family=sm.families.Poisson())
            params = fit(model)
            train_ll.append((model.loglike(params), transform, X_train, y_train, u, f))
            eta = X_test @ params
            rate = y_train.mean()
            gain[u] += np.sum(y_test * eta - np.exp(eta)) - np.sum(y_test * np.log(rate) - rate)
            ll_null[u] += np.sum(y_test * np.log(rate) - rate)
            ll_sat[u] += np.sum(np.where(y_test > 0, y_test * np.log(np.maximum(y_test, 1)), 0) - y_test)
    n_spikes = counts[fold >= 0].sum(axis=0)
    return gain / (n_spikes * math.log(2)), gain / (ll_sat - ll_null), train_ll


@pytest.fixture(scope="module")
def small_session():
    rng = np.random.default_rng(7)
    n_bins = 2000  # 40 s: 10 chunks, 2 per fold
    latent = smooth_features(rng, n_bins, 3)
    # 5 correlated features, so PCA keeps fewer components than features
    features = latent @ rng.standard_normal((3, 5)) + 0.3 * smooth_features(rng, n_bins, 5)
    counts = simulate_units(rng, latent, -0.1, 3, rate_per_bin=0.15, gain=0.7)
    return counts, features


@pytest.mark.parametrize("lag", [-0.1, 0.0])
def test_unpenalised_matches_statsmodels(small_session, lag):
    counts, features = small_session
    config = EncodingConfig(lags=(-0.1, 0.0), alpha=0.0)
    result = fit_encoding_models(counts, {"kinematics": features}, config)
    i = result.lags.tolist().index(lag)
    assert 0 < result.n_components[0, i].min() < features.shape[1]
    cv_llr, pseudo_r2, train = _statsmodels_cv(result, counts, features, lag, lambda m: m.fit(tol=1e-12).params)
    np.testing.assert_allclose(result.cv_llr[0, i], cv_llr, rtol=0, atol=TOL_BITS)
    np.testing.assert_allclose(result.pseudo_r2[0, i], pseudo_r2, rtol=0, atol=1e-6)
    # Training log-likelihood of our solver on the same design, in bits per spike.
    for ll_sm, _transform, X_train, y_train, _u, _f in train[:6]:
        fit = fit_poisson_glm(X_train[:, 1:], y_train)
        model = sm.GLM(y_train, X_train, family=sm.families.Poisson())
        ll_ours = model.loglike(np.r_[fit.intercept[0], fit.coef[:, 0]])
        assert abs(ll_ours - ll_sm) / (y_train.sum() * math.log(2)) < TOL_BITS


def test_ridge_matches_statsmodels_fit_regularized(small_session):
    counts, features = small_session
    alpha = 2e-3  # strong enough to change the fit visibly
    config = EncodingConfig(lags=(0.0,), alpha=alpha, l1_wt=0.0)
    result = fit_encoding_models(counts, {"kinematics": features}, config)
    unpenalised = fit_encoding_models(counts, {"kinematics": features}, EncodingConfig(lags=(0.0,), alpha=0.0))
    assert np.max(np.abs(result.cv_llr - unpenalised.cv_llr)) > 1e-4

    def ridge(model):
        # Same penalty, intercept unpenalised. statsmodels' ridge path is scipy BFGS; its default
        # gtol (1e-5) stops short of 1e-6 bits/spike, so ask for Newton-CG, which converges
        # further on this smooth problem.
        alphas = np.r_[0.0, np.full(model.exog.shape[1] - 1, alpha)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return model.fit_regularized(alpha=alphas, L1_wt=0.0, opt_method="Newton-CG").params

    cv_llr, _, _ = _statsmodels_cv(result, counts, features, 0.0, ridge)
    np.testing.assert_allclose(result.cv_llr[0, 0], cv_llr, rtol=0, atol=TOL_BITS)


def test_elastic_net_matches_statsmodels_fit_regularized(small_session):
    counts, features = small_session
    alpha, l1_wt = 4e-3, 0.5
    config = EncodingConfig(lags=(0.0,), alpha=alpha, l1_wt=l1_wt, keep_coefficients=True)
    result = fit_encoding_models(counts, {"kinematics": features}, config)

    def elastic_net(model):
        # statsmodels' coordinate descent never revisits a coefficient once it has hit zero
        # after the first sweep (its "active set" heuristic, statsmodels/base/elastic_net.py),
        # which can leave it short of the optimum; restarting once from its own solution
        # revisits every coefficient and reaches the optimum.
        alphas = np.r_[0.0, np.full(model.exog.shape[1] - 1, alpha)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params = model.fit_regularized(alpha=alphas, L1_wt=l1_wt, maxiter=500).params
            return model.fit_regularized(alpha=alphas, L1_wt=l1_wt, maxiter=500, start_params=params).params

    cv_llr, _, train = _statsmodels_cv(result, counts, features, 0.0, elastic_net)
    np.testing.assert_allclose(result.cv_llr[0, 0], cv_llr, rtol=0, atol=TOL_BITS)
    # Same sparsity pattern as statsmodels' coordinate descent, coefficient by coefficient.
    for _, _transform, X_train, y_train, _u, _f in train:
        ours = fit_poisson_glm(X_train[:, 1:], y_train, alpha=alpha, l1_wt=l1_wt)
        theirs = elastic_net(sm.GLM(y_train, X_train, family=sm.families.Poisson()))
        np.testing.assert_allclose(np.r_[ours.intercept, ours.coef[:, 0]], theirs, atol=1e-6)
        np.testing.assert_array_equal(ours.coef[:, 0] == 0, theirs[1:] == 0)


def test_subsampled_hessian_converges_to_same_solution():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((20000, 8))
    B = 0.3 * rng.standard_normal((8, 5))
    Y = rng.poisson(np.exp(-2.0 + X @ B))
    exact = fit_poisson_glm(X, Y, alpha=1e-4)
    sub = fit_poisson_glm(X, Y, alpha=1e-4, hessian_rows=1000)
    assert exact.converged.all() and sub.converged.all()
    assert sub.n_iter.max() > exact.n_iter.max()  # linear, not quadratic, convergence
    np.testing.assert_allclose(sub.coef, exact.coef, atol=1e-6)
    np.testing.assert_allclose(sub.objective, exact.objective, rtol=1e-13)


def test_subsampled_hessian_of_heavy_tailed_features_converges():
    # A feature that is zero but in a few bins (forces at contacts): a Hessian subset that misses
    # them has no curvature in its direction, its steps there are far too long, and the
    # sub-sampled iteration crawls. After the float32 iterations the Hessian uses every bin.
    rng = np.random.default_rng(12)
    n = 50000
    X = rng.standard_normal((n, 4))
    X[:, 3] = 0.0
    X[rng.choice(n, 40, replace=False), 3] = rng.uniform(20, 40, 40)
    Y = rng.poisson(np.exp(-1.0 + 0.2 * X[:, :3] @ rng.standard_normal((3, 3)) + 0.05 * X[:, 3:]))
    exact = fit_poisson_glm(X, Y, alpha=1e-4)
    sub = fit_poisson_glm(X, Y, alpha=1e-4, hessian_rows=500, random_state=1)
    assert exact.converged.all() and sub.converged.all()
    np.testing.assert_allclose(sub.coef, exact.coef, rtol=0, atol=1e-7)
    np.testing.assert_allclose(sub.objective, exact.objective, rtol=1e-13)


def test_kept_coefficients_reproduce_predictions(small_session):
    counts, features = small_session
    config = EncodingConfig(lags=(-0.1, 0.0), keep_coefficients=True, keep_predictions=True)
    result = fit_encoding_models(counts, {"kinematics": features}, config)
    coef = result.coefficients["kinematics"]
    predicted = result.predicted_counts["kinematics"]
    assert coef.shape == (2, 5, 1 + features.shape[1], counts.shape[1])
    assert predicted.shape == (2, counts.shape[0], counts.shape[1])
    for i, lag in enumerate(result.lags):
        lagged = lag_features(features, lag, BIN)
        for f in range(5):
            test = result.fold_of_bin == f
            eta = coef[i, f, 0] + lagged[test] @ coef[i, f, 1:]
            np.testing.assert_allclose(predicted[i, test], np.exp(eta), rtol=1e-5)
        assert np.all(np.isnan(predicted[i, result.fold_of_bin < 0]))


# -- bad inputs -----------------------------------------------------------------------------------


def _good_inputs():
    rng = np.random.default_rng(1)
    features = smooth_features(rng, 1500, 3)
    counts = rng.poisson(0.2, size=(1500, 3))
    return counts, features


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c, f: (np.c_[c, np.zeros(len(c), int)], {"kin": f}), r"unit\(s\) \['3'\] have no spikes"),
        (lambda c, f: (c[:, 0], {"kin": f}), "counts must be a 2-D array"),
        (lambda c, f: (c - 1, {"kin": f}), "non-negative integers"),
        (lambda c, f: (c + 0.5, {"kin": f}), "non-negative integers"),
        (lambda c, f: (c, {"kin": f[:-1]}), "feature set 'kin' has 1499 bins but counts has 1500"),
        (lambda c, f: (c, {"kin": np.full_like(f, np.nan)}), "feature set 'kin' has no bins with finite values"),
        (lambda c, f: (c, {}), "non-empty mapping"),
        (lambda c, f: (c[:200], {"kin": f[:200]}), "too few chunks"),
    ],
)
def test_bad_inputs_raise(mutate, message):
    counts, features = _good_inputs()
    counts, sets = mutate(counts, features)
    with pytest.raises(ValueError, match=message):
        fit_encoding_models(counts, sets, EncodingConfig(lags=(0.0,)))


def test_unknown_feature_set_name():
    counts, features = _good_inputs()
    with pytest.raises(ValueError, match="unknown feature set 'joints' \\(known: kin\\)"):
        fit_encoding_models(counts, {"kin": features}, EncodingConfig(lags=(0.0,)), feature_set_names=["joints"])


def test_unit_without_training_spikes_in_a_fold():
    counts, features = _good_inputs()
    counts[:, 0] = 0
    counts[0, 0] = 3  # only spike: held out in fold 0, so fold 0 has nothing to train on
    with pytest.raises(ValueError, match="no spikes in the training bins of fold 0"):
        fit_encoding_models(counts, {"kin": features}, EncodingConfig(lags=(0.0,)))


def test_nan_bins_are_dropped_not_extrapolated():
    counts, features = _good_inputs()
    features[700:720] = np.nan  # a tracking gap
    result = fit_encoding_models(counts, {"kin": features}, EncodingConfig(lags=(-0.1, 0.0)))
    # Bins 695..719 pair with a NaN row at lag -0.1 (t + 5) or lag 0; they are not used.
    assert np.all(result.fold_of_bin[695:720] == -1)
    assert result.fold_of_bin[694] >= 0 and result.fold_of_bin[720] >= 0
    assert np.all(np.isfinite(result.cv_llr))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lags=(0.03,)), "not a whole number of bins"),
        (dict(chunk_duration=4.01), "chunk_duration"),
        (dict(n_folds=1), "n_folds"),
        (dict(pca_variance=1.5), "pca_variance"),
        (dict(l1_wt=2.0), "l1_wt"),
        (dict(bin_size=float("nan")), "bin_size must be a finite number"),
        (dict(bin_size=float("inf")), "bin_size must be a finite number"),
        (dict(alpha=float("inf")), "alpha must be a finite number"),
        (dict(lags=(0.0, float("nan"))), "lags must be finite"),
        (dict(pca_variance=float("nan")), "pca_variance must be a finite number"),
        (dict(max_iter=0), "max_iter must be an integer >= 1"),
    ],
)
def test_bad_config_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EncodingConfig(**kwargs)


def test_significance_is_benjamini_hochberg_within_each_family(small_session):
    counts, features = small_session
    rng = np.random.default_rng(3)
    noise = smooth_features(rng, counts.shape[0], 2)
    # Units 0-2 driven, 3 constant rate; two families that split the driven units.
    counts = np.c_[counts, rng.poisson(0.15, counts.shape[0])]
    result = fit_encoding_models(counts, {"driver": features, "noise": noise}, EncodingConfig(lags=(-0.1, 0.0)))
    families = {"0": "DLS", "1": "DLS", "2": "MC", "3": "MC"}
    table = result.significance(0.05, families=families)
    assert len(table) == 4 * 2 and set(table["family"]) == {"DLS", "MC"}
    for _, rows in table.groupby("family"):
        expected = multipletests(rows["p_value_lags"], method="fdr_bh")[1]
        np.testing.assert_allclose(rows["q_value"], expected)
    np.testing.assert_array_equal(table["significant"], table["q_value"] < 0.05)
    driven = table[(table["feature_set"] == "driver") & (table["unit"] != "3")]
    assert driven["significant"].all() and driven["converged"].all()
    assert not table[table["unit"] == "3"]["significant"].any()
    one_family = result.significance(0.05)
    np.testing.assert_allclose(one_family["q_value"], multipletests(one_family["p_value_lags"], method="fdr_bh")[1])
    with pytest.raises(ValueError, match="no family for unit"):
        result.significance(0.05, families={"0": "DLS"})
    with pytest.raises(ValueError, match="q_threshold"):
        result.significance(float("nan"))


def test_fits_that_do_not_converge_are_flagged_and_warned(small_session):
    counts, features = small_session
    config = EncodingConfig(lags=(0.0,), max_iter=1, alpha=0.0)
    with pytest.warns(
        ConvergenceWarning, match=r"of 3 unit x feature set x lag fits did not converge within max_iter=1"
    ):
        result = fit_encoding_models(counts, {"f": features}, config)
    assert not result.converged.all()
    table = result.significance()
    assert not table["converged"].all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert fit_encoding_models(counts, {"f": features}, EncodingConfig(lags=(0.0,))).converged.all()

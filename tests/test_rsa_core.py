"""Tests of the RSA core: condition means, crossnobis / correlation RDMs, WUC comparisons."""

import numpy as np
import pytest
from rsatoolbox.data.noise import prec_from_residuals

from mimic_nwb.encoding import blocked_folds
from mimic_nwb.rsa import compare_rdms, compute_rdms, condition_means, noise_precision

BEHAVIOURS = np.array(["Walk", "Rear", "FaceGroom", "Idle", "Run", "Turn"])


def simulate(rng, n_bins=12000, bout_bins=25):
    """Bouts of behaviours (0.5 s each), an unlabelled start, condition patterns, 5 folds."""
    codes = rng.integers(0, BEHAVIOURS.size, n_bins // bout_bins).repeat(bout_bins)
    labels = BEHAVIOURS[codes].astype(object)
    labels[:150] = None
    patterns = rng.standard_normal((BEHAVIOURS.size, 8))
    _, folds = blocked_folds(n_bins, 0.02, 4.0, 5)
    return codes, labels, patterns, folds


def representation(rng, codes, patterns, n_channels, noise=3.0):
    """Channels = random mixture of the condition patterns + independent noise."""
    return patterns[codes] @ rng.standard_normal((patterns.shape[1], n_channels)) + noise * rng.standard_normal(
        (codes.size, n_channels)
    )


def test_identical_and_related_and_unrelated_representations():
    rng = np.random.default_rng(0)
    codes, labels, patterns, folds = simulate(rng)
    population = representation(rng, codes, patterns, 40)
    activities = {
        "population": population,
        "population_copy": population.copy(),
        # Same condition structure, other channels, independent noise.
        "layer": representation(rng, codes, patterns, 30),
    }
    # No condition structure at all. With 15 dissimilarities one WUC of noise varies by about
    # +-0.25 around 0, so look at the mean of several.
    for i in range(8):
        activities[f"unrelated_{i}"] = rng.standard_normal((codes.size, 25))
    result = compute_rdms(activities, labels, folds, reference="population")
    assert result.measure == "crossnobis" and result.partitions == [0, 1, 2, 3, 4]
    assert result.conditions == sorted(BEHAVIOURS.tolist())
    table = result.comparisons.set_index("candidate")
    assert set(table["method"]) == {"cosine_cov"}
    assert table.loc["population_copy", "similarity"] == pytest.approx(1.0, abs=1e-12)
    assert table.loc["layer", "similarity"] > 0.9
    unrelated = table.loc[[f"unrelated_{i}" for i in range(8)]]
    assert abs(unrelated["similarity"].mean()) < 0.2  # ~2 standard errors of the mean of 8
    # 6 conditions: 720 permutations <= 1000, so the test is exact; the identity is the only
    # permutation that reproduces this RDM.
    assert (table["n_permutations"] == 720).all()
    assert table.loc["population_copy", "p_value"] == pytest.approx(1 / 720)
    assert table.loc["layer", "p_value"] < 0.01
    assert np.median(unrelated["p_value"]) > 0.2
    assert result.rdms.shape == (11, 6, 6)
    np.testing.assert_allclose(result.rdms, np.swapaxes(result.rdms, 1, 2))
    assert len(result.to_dataframe()) == 11 * 15
    assert result.to_rsatoolbox(["layer"]).n_rdm == 1


def test_crossnobis_values_match_direct_formula():
    """Leave-one-partition-out crossnobis with identity noise, computed by hand."""
    rng = np.random.default_rng(1)
    codes, labels, patterns, folds = simulate(rng, n_bins=6000)
    X = representation(rng, codes, patterns, 5, noise=1.0)
    result = compute_rdms({"x": X}, labels, folds, standardize=False, noise=None)
    cond = [np.flatnonzero(BEHAVIOURS == c)[0] for c in result.conditions]
    used = np.array([label is not None for label in labels])
    means = np.array(
        [[X[used & (folds == p) & (codes == c)].mean(axis=0) for c in cond] for p in range(5)]
    )  # (partition, condition, channel)
    expected = np.zeros((6, 6))
    for p in range(5):
        train = np.mean(np.delete(means, p, axis=0), axis=0)
        test = means[p]
        dtrain = train[:, None] - train[None]
        dtest = test[:, None] - test[None]
        expected += np.einsum("ijk,ijk->ij", dtrain, dtest) / X.shape[1] / 5
    np.testing.assert_allclose(result.rdms[0], expected, atol=1e-10)


def test_correlation_distance_without_partitions():
    rng = np.random.default_rng(2)
    codes, labels, patterns, _ = simulate(rng, n_bins=6000)
    X = representation(rng, codes, patterns, 12)
    result = compute_rdms({"x": X, "y": X[:, ::-1]}, labels, None, standardize=False)
    assert result.measure == "correlation" and result.partitions == []
    cond = [np.flatnonzero(BEHAVIOURS == c)[0] for c in result.conditions]
    used = np.array([label is not None for label in labels])
    means = np.array([X[used & (codes == c)].mean(axis=0) for c in cond])
    np.testing.assert_allclose(result.rdms[0], 1 - np.corrcoef(means), atol=1e-12)
    # Reordering channels does not change a correlation-distance RDM.
    table = compare_rdms(result, "x", method="cosine_cov", n_permutations=0)
    assert table["similarity"].iloc[0] == pytest.approx(1.0) and np.isnan(table["p_value"].iloc[0])


def test_partition_missing_a_condition_is_not_used():
    rng = np.random.default_rng(3)
    codes, labels, patterns, folds = simulate(rng, n_bins=6000)
    labels = labels.copy()
    labels[(folds == 2) & (codes == 0)] = None  # partition 2 never sees "Walk"
    result = compute_rdms({"x": representation(rng, codes, patterns, 10)}, labels, folds)
    assert result.measure == "crossnobis" and result.partitions == [0, 1, 3, 4]
    # Only one partition with every condition: falls back to correlation distance.
    only_one = np.where(np.isin(folds, [0]), folds, 1)
    labels[(only_one == 1) & (codes == 1)] = None
    result = compute_rdms({"x": representation(rng, codes, patterns, 10)}, labels, only_one)
    assert result.measure == "correlation"


def test_condition_means_and_noise_precision_match_references():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((500, 4))
    labels = np.array(["Walk", "Rear", "Idle", None], dtype=object)[rng.integers(0, 4, 500)]
    part = rng.integers(-1, 2, 500)
    X[7] = np.nan  # a bin without finite activity is not used
    means, n_bins, conditions, partition_ids = condition_means(X, labels, part)
    assert conditions == ["Idle", "Rear", "Walk"] and partition_ids.tolist() == [0, 1]
    for p in range(2):
        for c, name in enumerate(conditions):
            rows = (labels == name) & (part == p) & np.isfinite(X[:, 0])
            assert n_bins[p, c] == rows.sum()
            np.testing.assert_allclose(means[p, c], X[rows].mean(axis=0))
    R = rng.standard_normal((400, 6)) @ rng.standard_normal((6, 6))
    R -= R.mean(axis=0)
    for method in ["shrinkage_diag", "shrinkage_eye", "diag", "full"]:
        ours = noise_precision(R, 390, method)
        np.testing.assert_allclose(ours, prec_from_residuals(R, 390, method), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, lab, p: (a, [None] * len(lab), p), "labels do not overlap the data"),
        (lambda a, lab, p: (a, lab[:-5], p), "activity 'population' has 6000 bins but labels has 5995"),
        (lambda a, lab, p: ({"population": np.full_like(a["population"], np.nan)}, lab, p), "labels do not overlap"),
        (lambda a, lab, p: (a, np.where(np.isin(lab, ["Walk", "Rear"]), lab, None), p), "at least 3 conditions"),
        (lambda a, lab, p: (a, lab, p[:-1]), "partitions must be integers"),
        (lambda a, lab, p: ({}, lab, p), "non-empty mapping"),
    ],
)
def test_bad_inputs_raise(change, message):
    rng = np.random.default_rng(5)
    codes, labels, patterns, folds = simulate(rng, n_bins=6000)
    activities = {"population": representation(rng, codes, patterns, 8)}
    activities, labels, folds = change(activities, labels, folds)
    with pytest.raises(ValueError, match=message):
        compute_rdms(activities, labels, folds)


def test_unknown_names_raise():
    rng = np.random.default_rng(6)
    codes, labels, patterns, folds = simulate(rng, n_bins=6000)
    activities = {"population": representation(rng, codes, patterns, 8)}
    with pytest.raises(ValueError, match="unknown RDM 'MC' \\(known: population\\)"):
        compute_rdms(activities, labels, folds, reference="MC")
    with pytest.raises(ValueError, match="conditions: 'Fly' has no labelled bin"):
        compute_rdms(activities, labels, folds, conditions=["Walk", "Rear", "Fly"])


@pytest.mark.parametrize("n_permutations", [-1, 2.5, True])
def test_permutation_count_must_be_a_non_negative_integer(n_permutations):
    rng = np.random.default_rng(7)
    codes, labels, patterns, folds = simulate(rng, n_bins=6000)
    activities = {
        "population": representation(rng, codes, patterns, 8),
        "layer": representation(rng, codes, patterns, 5),
    }
    result = compute_rdms(activities, labels, folds, n_permutations=0)
    with pytest.raises(ValueError, match="n_permutations must be an integer >= 0"):
        compare_rdms(result, "population", n_permutations=n_permutations)
    table = compare_rdms(result, "population", n_permutations=0)
    assert np.isnan(table["p_value"]).all() and (table["n_permutations"] == 0).all()  # documented: no p-value

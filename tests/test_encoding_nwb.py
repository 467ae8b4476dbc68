"""Encoding models on a session file: units or binned counts x feature sets, appended as a table."""

import numpy as np
import pytest
from pynwb import validate

from mimic_nwb.cli import main
from mimic_nwb.encoding import EncodingConfig
from mimic_nwb.encoding import nwb as encoding_nwb
from mimic_nwb.encoding.nwb import EncodeResult, encode
from mimic_nwb.errors import InputError
from mimic_nwb.features import available_feature_sets, read_feature_set, resample_to_bins
from mimic_nwb.importers.units import UnitImportConfig, import_units
from mimic_nwb.session import append, read_session
from ndx_mimic import BinnedSpikeCounts

from helpers import digest, registered_toy_session

FRAMES = 2000  # 40 s at 50 Hz
RATE = 50.0
CONFIG = EncodingConfig(lags=(-0.2, 0.0, 0.2), chunk_duration=2.0, n_folds=5)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    path, t, qpos = registered_toy_session(tmp_path_factory.mktemp("encode"))
    rng = np.random.default_rng(0)
    # Units driven by the hip angle (a joint angle) at lag 0; one unit with a flat rate.
    rate_hz = {f"u{i}": 10 * np.exp(0.8 * qpos[:, 7] * (1 if i % 2 else -1)) for i in range(4)}
    rate_hz["flat"] = np.full(FRAMES, 8.0)
    spikes = {}
    for name, r in rate_hz.items():
        counts = rng.poisson(r / RATE)
        spikes[name] = np.sort(np.repeat(t, counts) + rng.uniform(0, 1 / RATE, counts.sum()))
    import_units(
        path,
        spikes,
        UnitImportConfig(
            sampling_rate=30000.0,
            session_end=FRAMES / RATE,
            unit_table={name: {"electrode_group": "drive0_tetrode_0"} for name in spikes},
        ),
    )
    return path


def test_feature_sets_of_the_session(session):
    with read_session(session) as nwbfile:
        assert available_feature_sets(nwbfile) == ["kinematics", "joint_angles", "joint_velocities"]
        angles = read_feature_set(nwbfile, "joint_angles")
        assert angles.columns == ["hip", "knee"] and angles.values.shape == (FRAMES, 2)
        centers = np.arange(10) * 0.02 + 0.01
        np.testing.assert_allclose(
            resample_to_bins(angles, centers)[:, 0], np.interp(centers, angles.times, angles.values[:, 0])
        )
        with pytest.raises(InputError, match="unknown feature set 'gait'"):
            read_feature_set(nwbfile, "gait")


def test_encode_appends_a_valid_table_matching_the_fit(session):
    encoded = encode(session, ["joint_angles", "kinematics"], CONFIG)
    assert isinstance(encoded, EncodeResult) and encoded.name == "processing/mimic/EncodingResults"
    assert encoded.path == session and encoded.feature_sets == ("joint_angles", "kinematics")
    result = encoded.result
    assert "5 units x 2 feature sets x 3 lags" in encoded.summary() and "\n" not in encoded.summary()
    assert len(encoded.best) == 5 * 2 and encoded.not_converged == 0
    with read_session(session) as nwbfile:
        table = nwbfile.processing["mimic"]["EncodingResults"]
        frame = table.to_dataframe(index=True)
        assert len(frame) == 5 * 2 * 3
        assert table.bin_size == 0.02 and table.num_folds == 5 and table.regularization == "l2"
        np.testing.assert_allclose(np.sort(frame["cv_llr"]), np.sort(result.cv_llr.ravel()))
        driven = frame[(frame["feature_set"] == "joint_angles") & (frame["lag"] == 0.0)]
        flat_row = list(nwbfile.units["unit_name"][:]).index("flat")
        assert driven[driven["unit"] != flat_row]["significant"].all()
        assert not frame[frame["unit"] == flat_row]["significant"].any()
        np.testing.assert_array_equal(np.sort(frame["converged"]), np.sort(result.converged.ravel()))
        assert frame["converged"].dtype == bool and frame["converged"].all()
        # The stored decision is the core's: BH per brain region at the best lag.
        decided = result.significance(0.05, families={u: "DLS" for u in result.unit_names})
        stored = frame.groupby(["unit", "feature_set"])["significant"].first()
        names = list(nwbfile.units["unit_name"][:])
        for row in decided.itertuples():
            assert stored[(names.index(row.unit), row.feature_set)] == row.significant
        assert '"feature_sets": ["joint_angles", "kinematics"]' in table.parameters
    assert validate(path=str(session)) == []


def test_encode_errors_write_nothing(session, capsys):
    before = digest(session)
    assert main(["encode", str(session), "--feature-set", "gait", "--no-progress"]) == 2
    assert "unknown feature set 'gait'" in capsys.readouterr().err
    assert main(["encode", str(session), "--no-progress"]) == 2  # EncodingResults exists
    assert "already exists" in capsys.readouterr().err
    assert digest(session) == before


def test_units_without_spikes_and_no_neural_data(tmp_path):
    path, t, _ = registered_toy_session(tmp_path)
    with pytest.raises(InputError, match="no units and no BinnedSpikeCounts"):
        encode(path, ["joint_angles"], CONFIG)
    import_units(
        path,
        {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([39.99])},
        UnitImportConfig(
            sampling_rate=30000.0,
            session_end=40.0,
            unit_table={"a": {"brain_region": "DLS"}, "b": {"brain_region": "DLS"}},
        ),
    )
    before = digest(path)
    with pytest.raises(InputError, match="units without spikes in 0.00-39.98 s: b"):
        encode(path, ["joint_angles"], EncodingConfig(lags=(0.0,), chunk_duration=2.0))
    assert digest(path) == before


def test_binned_counts_are_used_when_there_are_no_spike_times(tmp_path):
    path, t, qpos = registered_toy_session(tmp_path)
    rng = np.random.default_rng(1)
    rates = 0.2 * np.exp(np.c_[qpos[:, 7], -qpos[:, 7], np.zeros(FRAMES)])
    with append(path) as s:
        s.add(
            BinnedSpikeCounts(
                name="BinnedSpikeCounts",
                data=rng.poisson(rates).astype("uint16"),
                column_names=["a", "b", "c"],
                bin_size=0.02,
                rate=50.0,
                starting_time=0.0,
                brain_region=["DLS", "DLS", "MC"],
                active=np.array([True, True, True]),
                description="toy counts",
            )
        )
    encode(path, ["joint_angles"], CONFIG)
    with read_session(path) as nwbfile:
        table = nwbfile.processing["mimic"]["EncodingResults"]
        assert table.spike_counts is nwbfile.processing["mimic"]["BinnedSpikeCounts"]
        frame = table.to_dataframe()
        assert sorted(frame["count_column"].unique()) == [0, 1, 2]
        assert set(frame["brain_region"]) == {"DLS", "MC"}
    assert validate(path=str(path)) == []


def test_units_replaced_while_the_models_fit_are_never_linked(tmp_path, monkeypatch):
    """Another writer replaces the units between the stage's read and its append: the append is
    refused (the table would link units it was not fitted on) and the session keeps the new units."""
    path, t, qpos = registered_toy_session(tmp_path)
    rng = np.random.default_rng(2)
    spikes = {f"u{i}": np.sort(rng.uniform(0, FRAMES / RATE, 400)) for i in range(2)}
    config = UnitImportConfig(
        sampling_rate=30000.0, session_end=FRAMES / RATE, unit_table={n: {"brain_region": "DLS"} for n in spikes}
    )
    import_units(path, spikes, config)
    fit = encoding_nwb.fit_encoding_models

    def fit_while_another_writer_replaces_the_units(*args, **kwargs):
        import_units(path, {n: times[::2] for n, times in spikes.items()}, config, replace=True)
        return fit(*args, **kwargs)

    monkeypatch.setattr(encoding_nwb, "fit_encoding_models", fit_while_another_writer_replaces_the_units)
    with pytest.raises(InputError, match=r"input units changed since it was read: rerun$"):
        encode(path, ["joint_angles"], EncodingConfig(lags=(0.0,), chunk_duration=2.0))
    with read_session(path) as nwbfile:
        assert "mimic" not in nwbfile.processing or "EncodingResults" not in nwbfile.processing["mimic"].data_interfaces
        assert len(nwbfile.units.get_unit_spike_times(0)) == 200
    monkeypatch.undo()
    encode(path, ["joint_angles"], EncodingConfig(lags=(0.0,), chunk_duration=2.0))  # a rerun reads the new units


def test_replacing_a_feature_source_takes_or_refuses_the_encoding(session, tmp_path):
    """Issue 15: a result computed from a replaced one is never kept silently."""
    import shutil

    copy = tmp_path / "copy.nwb"
    shutil.copy(session, copy)
    encode(copy, ["joint_angles"], CONFIG, name="EncodingAngles")
    with read_session(copy) as nwbfile:
        assert "processing/mimic/StacRegistration" in nwbfile.processing["mimic"]["EncodingAngles"].parameters
    before = digest(copy)
    with pytest.raises(InputError, match="EncodingAngles"):
        with append(copy, replace=["StacRegistration"]):
            pass
    assert digest(copy) == before
    with append(copy, replace=["StacRegistration"], replace_dependents=True) as s:
        assert "EncodingAngles" in " ".join(s.replaced)
    with read_session(copy) as nwbfile:
        assert "EncodingAngles" not in nwbfile.processing["mimic"].data_interfaces

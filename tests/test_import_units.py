"""Sorted units into a session: arrays, .npz, phy folders, SpikeInterface sortings, replace, bad input."""

import importlib.util
import re
import shutil
import sys

import numpy as np
import pytest
from pynwb import NWBHDF5IO

from mimic_nwb.cli import main
from mimic_nwb.errors import InputError
from mimic_nwb.importers.units import UnitImportConfig, import_units
from mimic_nwb.session import append

from helpers import digest, session_templates

RATE = 30000.0
# electrodes 0-7: drive0_tetrode_0/1 in DLS; electrodes 8-11: drive1_tetrode_0 in MC
DRIVES = [
    dict(name="drive0", brain_region="DLS", num_tetrodes=2),
    dict(name="drive1", brain_region="MC", num_tetrodes=1),
]
KEYPOINTS_END = 10.0  # 500 frames at 50 Hz


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """A plain session and one with 10 s of keypoints, copied by each test."""
    return session_templates(tmp_path_factory.mktemp("templates"), 500, drives=DRIVES)


@pytest.fixture
def session(templates, tmp_path):
    path = tmp_path / "session.nwb"
    shutil.copy(templates["plain"], path)
    return path


@pytest.fixture
def session_with_keypoints(templates, tmp_path):
    path = tmp_path / "session.nwb"
    shutil.copy(templates["keypoints"], path)
    return path


def read_units(path):
    with NWBHDF5IO(str(path), "r") as io:
        units = io.read().units
        rows = {
            name: dict(
                spike_times=np.asarray(units["spike_times"][i]),
                electrode_group=units["electrode_group"][i].name if "electrode_group" in units.colnames else None,
                brain_region=units["brain_region"][i],
                cell_type=units["cell_type"][i],
                quality=units["quality"][i],
            )
            for i, name in enumerate(units["unit_name"][:])
        }
        return rows, units.resolution


def spikes(seed, count, end=9.0):
    return np.sort(np.random.default_rng(seed).uniform(0.0, end, count))


def write_phy(folder, clusters_per_spike, samples, *, group_tsv=None, info_rows=None, params=True):
    """A phy folder in phy's own layout (Kilosort 2 shapes and dtypes)."""
    folder.mkdir()
    np.save(folder / "spike_times.npy", np.asarray(samples, dtype=np.uint64).reshape(-1, 1))
    np.save(folder / "spike_clusters.npy", np.asarray(clusters_per_spike, dtype=np.int32))
    np.save(folder / "spike_templates.npy", np.asarray(clusters_per_spike, dtype=np.uint32).reshape(-1, 1))
    if params:
        (folder / "params.py").write_text(
            "dat_path = 'recording.dat'\nn_channels_dat = 12\ndtype = 'int16'\noffset = 0\n"
            "sample_rate = 30000.\nhp_filtered = False\n"
        )
    if group_tsv is not None:
        (folder / "cluster_group.tsv").write_text(
            "cluster_id\tgroup\n" + "".join(f"{c}\t{g}\n" for c, g in group_tsv.items())
        )
    if info_rows is not None:
        header = "cluster_id\tAmplitude\tContamPct\tKSLabel\tamp\tch\tdepth\tfr\tgroup\tn_spikes\tsh\n"
        lines = [
            f"{c}\t1200.5\t3.2\t{ks}\t85.1\t{ch}\t{20 * ch}\t4.2\t{group}\t100\t0\n"
            for c, (ks, ch, group) in info_rows.items()
        ]
        (folder / "cluster_info.tsv").write_text(header + "".join(lines))
    return folder


@pytest.fixture
def phy_folder(tmp_path):
    rng = np.random.default_rng(0)
    samples = np.sort(rng.integers(0, int(9 * RATE), 400))
    # clusters 0 good, 1 mua, 2 noise, 3 unlabelled (unsorted); cluster 7 is labelled but was merged away
    clusters = rng.choice([0, 1, 2, 3], size=samples.size)
    folder = write_phy(
        tmp_path / "phy",
        clusters,
        samples,
        group_tsv={0: "good", 1: "mua", 2: "noise", 7: "good"},
        info_rows={0: ("good", 1, "good"), 1: ("mua", 9, "mua"), 2: ("good", 4, "noise"), 3: ("mua", 5, "")},
    )
    return folder, samples, clusters


class FakeSorting:
    """The SpikeInterface BaseSorting methods the importer uses, nothing else."""

    def __init__(self, trains, fs, properties):
        self.trains, self.fs, self.properties = trains, fs, properties

    def get_unit_ids(self):
        return np.array(list(self.trains))

    def get_sampling_frequency(self):
        return self.fs

    def get_num_segments(self):
        return 1

    def get_unit_spike_train(self, unit_id, segment_index=None, start_frame=None, end_frame=None, return_times=False):
        assert segment_index == 0 and not return_times
        return self.trains[unit_id]

    def get_property_keys(self):
        return list(self.properties)

    def get_property(self, key):
        return np.asarray(self.properties[key])


# ----------------------------------------------------------------------------------------------
# Round trips


def test_arrays_round_trip_with_unit_table(session):
    trains = {"tt0_u1": spikes(1, 50), "tt0_u2": spikes(2, 80), "mc_u1": spikes(3, 30)}
    table = {
        "tt0_u1": {"electrode_group": "drive0_tetrode_0", "cell_type": "SPN", "quality": "good"},
        "tt0_u2": {"electrode_group": "drive0_tetrode_1", "cell_type": "FSI"},
        "mc_u1": {"electrode_group": "drive1_tetrode_0", "brain_region": "MC-L5"},
    }
    result = import_units(session, trains, UnitImportConfig(sampling_rate=RATE, unit_table=table))
    summary = result.summary()
    assert "\n" not in summary and "3 units, 160 spikes" in summary
    assert (result.path, result.name, result.units.names) == (session, "units", list(trains))
    rows, resolution = read_units(session)
    assert resolution == pytest.approx(1 / RATE)
    assert list(rows) == list(trains)
    for name, times in trains.items():
        np.testing.assert_array_equal(rows[name]["spike_times"], times)
    assert rows["tt0_u1"] == dict(
        rows["tt0_u1"], electrode_group="drive0_tetrode_0", brain_region="DLS", cell_type="SPN", quality="good"
    )
    assert (rows["tt0_u2"]["brain_region"], rows["tt0_u2"]["cell_type"], rows["tt0_u2"]["quality"]) == (
        "DLS",
        "FSI",
        "unknown",
    )
    assert (rows["mc_u1"]["electrode_group"], rows["mc_u1"]["brain_region"]) == ("drive1_tetrode_0", "MC-L5")


def test_npz_and_tsv_unit_table_through_cli(session, tmp_path, capsys):
    trains = {"a": spikes(4, 20), "b": spikes(5, 25), "c": np.array([])}
    np.savez(tmp_path / "spikes.npz", **trains)
    (tmp_path / "units.tsv").write_text(
        "unit\telectrode_group\tcell_type\na\tdrive0_tetrode_0\tSPN\nb\tdrive1_tetrode_0\t\nc\tdrive0_tetrode_1\tSPN\n"
    )
    argv = [
        "import-units",
        str(session),
        str(tmp_path / "spikes.npz"),
        "--sampling-rate",
        "30000",
        "--unit-table",
        str(tmp_path / "units.tsv"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 units" in out and "left out: 1 without spikes" in out
    rows, _ = read_units(session)
    assert sorted(rows) == ["a", "b"]  # c has no spikes: left out, counted
    np.testing.assert_array_equal(rows["b"]["spike_times"], trains["b"])
    assert (rows["a"]["brain_region"], rows["a"]["cell_type"]) == ("DLS", "SPN")
    assert (rows["b"]["brain_region"], rows["b"]["cell_type"]) == ("MC", "unknown")


def test_phy_folder_keeps_good_and_mua(session, phy_folder):
    folder, samples, clusters = phy_folder
    summary = import_units(session, folder).summary()
    assert "left out: " in summary and "1 noise" in summary and "1 unsorted" in summary
    rows, resolution = read_units(session)
    assert resolution == pytest.approx(1 / RATE)
    assert sorted(rows) == ["0", "1"]
    for cluster in (0, 1):
        np.testing.assert_allclose(
            rows[str(cluster)]["spike_times"], samples[clusters == cluster] / RATE, rtol=0, atol=1e-12
        )
    # ch 1 -> electrode 1 (drive0_tetrode_0, DLS); ch 9 -> electrode 9 (drive1_tetrode_0, MC)
    assert (rows["0"]["quality"], rows["0"]["electrode_group"], rows["0"]["brain_region"]) == (
        "good",
        "drive0_tetrode_0",
        "DLS",
    )
    assert (rows["1"]["quality"], rows["1"]["electrode_group"], rows["1"]["brain_region"]) == (
        "mua",
        "drive1_tetrode_0",
        "MC",
    )


def test_units_pass_nwbinspector_units_checks(session, phy_folder):
    checks = pytest.importorskip("nwbinspector.checks")
    import_units(session, phy_folder[0])
    with NWBHDF5IO(str(session), "r") as io:
        units = io.read().units
        for check in (
            checks.check_units_resolution_is_set,
            checks.check_units_resolution_is_valid,
            checks.check_spike_times_not_in_samples,
            checks.check_ascending_spike_times,
            checks.check_negative_spike_times,
            checks.check_units_table_duration,
        ):
            assert check(units) is None, check.__name__


def test_phy_keep_and_labels_from_cluster_info(session, tmp_path, capsys):
    rng = np.random.default_rng(1)
    samples = np.sort(rng.integers(0, int(9 * RATE), 300))
    clusters = rng.choice([4, 5, 6], size=samples.size)
    # no cluster_group.tsv: the curator's labels are cluster_info's 'group' (5 has none: unsorted)
    folder = write_phy(
        tmp_path / "phy",
        clusters,
        samples,
        info_rows={4: ("mua", 0, "good"), 5: ("mua", 2, ""), 6: ("good", 8, "noise")},
    )
    assert main(["import-units", str(session), str(folder), "--keep", "good"]) == 0
    assert "left out: 1 unsorted, 1 noise" in capsys.readouterr().out
    rows, _ = read_units(session)
    assert list(rows) == ["4"] and rows["4"]["quality"] == "good"


def test_phy_uncurated_uses_kilosort_labels(session, tmp_path):
    samples = np.arange(0, 270000, 900)
    clusters = np.arange(samples.size) % 3
    folder = write_phy(tmp_path / "phy", clusters, samples, group_tsv=None)
    (folder / "cluster_KSLabel.tsv").write_text("cluster_id\tKSLabel\n0\tgood\n1\tmua\n2\tgood\n")
    import_units(
        session, folder, UnitImportConfig(keep=["mua"], unit_table={"1": {"electrode_group": "drive0_tetrode_1"}})
    )
    rows, _ = read_units(session)
    assert list(rows) == ["1"] and (rows["1"]["quality"], rows["1"]["brain_region"]) == ("mua", "DLS")
    np.testing.assert_allclose(rows["1"]["spike_times"], samples[1::3] / RATE)


def test_spikeinterface_sorting_duck_typed(session, monkeypatch):
    # an object is read through its methods: spikeinterface (optional) is never imported for it;
    # None in sys.modules makes any import of it fail, whatever other tests imported before
    monkeypatch.setitem(sys.modules, "spikeinterface", None)
    fs = 20000.0
    trains = {
        "u0": np.array([100, 2500, 90000], dtype=np.int64),
        "u1": np.array([7, 8, 150000], dtype=np.int64),
    }
    sorting = FakeSorting(
        trains,
        fs,
        {
            "electrode_group": ["drive0_tetrode_1", "drive1_tetrode_0"],
            "brain_area": ["DLS", "M1"],
            "quality": ["good", "mua"],
        },
    )
    import_units(session, sorting)
    rows, resolution = read_units(session)
    assert resolution == pytest.approx(1 / fs)
    for name, frames in trains.items():
        np.testing.assert_allclose(rows[name]["spike_times"], frames / fs)
    assert (rows["u1"]["electrode_group"], rows["u1"]["brain_region"], rows["u1"]["quality"]) == (
        "drive1_tetrode_0",
        "M1",
        "mua",
    )


def test_spikes_within_keypoints_or_given_session_end(session_with_keypoints):
    late = {"u": np.array([1.0, 2.0, KEYPOINTS_END + 5.0])}
    with pytest.raises(InputError, match="spike at 15 s is after the end of the keypoints"):
        import_units(
            session_with_keypoints,
            late,
            UnitImportConfig(sampling_rate=RATE, unit_table={"u": {"brain_region": "DLS"}}),
        )
    import_units(
        session_with_keypoints,
        late,
        UnitImportConfig(sampling_rate=RATE, unit_table={"u": {"brain_region": "DLS"}}, session_end=60.0),
    )
    rows, _ = read_units(session_with_keypoints)
    assert rows["u"]["electrode_group"] is None and rows["u"]["brain_region"] == "DLS"


def test_replace_units_and_their_dependents(session):
    from ndx_mimic.testing.mock import mock_EncodingResults

    table = {name: {"electrode_group": "drive0_tetrode_0"} for name in ("a", "b", "c")}
    import_units(
        session, {n: spikes(i, 10) for i, n in enumerate("abc")}, UnitImportConfig(sampling_rate=RATE, unit_table=table)
    )
    second = {n: spikes(10 + i, 12) for i, n in enumerate("abc")}
    import_units(session, second, UnitImportConfig(sampling_rate=RATE, unit_table=table), replace=True)
    rows, _ = read_units(session)
    np.testing.assert_array_equal(rows["b"]["spike_times"], second["b"])

    with append(session) as s:  # a result that links the units rows
        s.add(mock_EncodingResults(units_table=s.nwbfile.units))
    before = digest(session)
    with pytest.raises(InputError, match="cannot replace units: mimic/EncodingResults links units"):
        import_units(session, second, UnitImportConfig(sampling_rate=RATE, unit_table=table), replace=True)
    assert digest(session) == before
    with append(session, replace=["units"], replace_dependents=True) as s:
        assert set(s.replaced) == {"units", "EncodingResults"}
        assert s.nwbfile.units is None
    with NWBHDF5IO(str(session), "r") as io:
        nwbfile = io.read()
        assert nwbfile.units is None and "EncodingResults" not in nwbfile.processing["mimic"].data_interfaces


@pytest.mark.skipif(importlib.util.find_spec("spikeinterface") is not None, reason="spikeinterface is installed")
def test_saved_spikeinterface_folder_needs_spikeinterface(session, tmp_path):
    (tmp_path / "sorting_saved").mkdir()
    with pytest.raises(InputError, match="needs spikeinterface"):
        import_units(session, tmp_path / "sorting_saved")


# ----------------------------------------------------------------------------------------------
# Bad input: one line naming the input, exit code 2, the session untouched


def _npz(tmp_path, **trains):
    np.savez(tmp_path / "bad.npz", **trains)
    return str(tmp_path / "bad.npz")


def _table(tmp_path, text):
    (tmp_path / "units.csv").write_text(text)
    return str(tmp_path / "units.csv")


def _phy(tmp_path, **kwargs):
    samples = np.arange(0, 300000, 3000)
    clusters = np.zeros(samples.size, dtype=np.int32)
    folder = write_phy(tmp_path / "phy", clusters, samples, group_tsv={0: "good"}, **kwargs)
    return folder, samples, clusters


def _phy_short_clusters(tmp_path):
    folder, samples, clusters = _phy(tmp_path)
    np.save(folder / "spike_clusters.npy", clusters[:-3])
    return [str(folder)], str(folder)


def _phy_without_params(tmp_path):
    folder, _, _ = _phy(tmp_path, params=False)
    return [str(folder)], "params.py"


def _phy_channel_outside(tmp_path):
    folder, _, _ = _phy(tmp_path, info_rows={0: ("good", 40, "good")})
    return [str(folder)], "channel 40"


GOOD = {"u1": [0.5, 1.25, 2.5]}
TABLE = "unit,electrode_group\nu1,drive0_tetrode_0\nu2,drive0_tetrode_0\n"

# name -> function(tmp_path) returning (CLI arguments after the session, text the error must name)
CLI_CASES = {
    "no unit has spikes": lambda p: (
        [_npz(p, u1=np.array([]), u2=np.array([])), "--sampling-rate", "30000"],
        "bad.npz",
    ),
    "negative spike time": lambda p: ([_npz(p, u1=[-0.1, 0.5]), "--sampling-rate", "30000"], "'u1'"),
    "NaN spike time": lambda p: ([_npz(p, u1=[0.1, np.nan, 0.5]), "--sampling-rate", "30000"], "'u1'"),
    "spike times not sorted": lambda p: ([_npz(p, u1=[0.1, 0.7, 0.5]), "--sampling-rate", "30000"], "'u1'"),
    "spike after session end": lambda p: (
        [
            _npz(p, u1=[0.1, 99.5]),
            "--sampling-rate",
            "30000",
            "--session-end",
            "60",
            "--unit-table",
            _table(p, "unit,brain_region\nu1,DLS\n"),
        ],
        "'u1'",
    ),
    "integer spike times (samples)": lambda p: (
        [_npz(p, u1=np.array([3000, 6000])), "--sampling-rate", "30000"],
        "'u1'",
    ),
    "whole-number spike times (samples)": lambda p: (
        [_npz(p, u1=np.arange(3000.0, 60000.0, 3000.0)), "--sampling-rate", "30000"],
        "bad.npz",
    ),
    "no sampling rate for arrays": lambda p: ([_npz(p, u1=[0.5, 0.7])], "bad.npz"),
    "unknown electrode group": lambda p: (
        [
            _npz(p, u1=[0.5]),
            "--sampling-rate",
            "30000",
            "--unit-table",
            _table(p, "unit,electrode_group\nu1,tetrode_99\n"),
        ],
        "'tetrode_99'",
    ),
    "unknown unit table column": lambda p: (
        [_npz(p, u1=[0.5]), "--sampling-rate", "30000", "--unit-table", _table(p, "unit,brain_area\nu1,DLS\n")],
        "units.csv",
    ),
    "unit table names a unit not sorted": lambda p: (
        [_npz(p, u1=[0.5]), "--sampling-rate", "30000", "--unit-table", _table(p, TABLE)],
        "u2",
    ),
    "no electrode group nor brain region": lambda p: ([_npz(p, u1=[0.5]), "--sampling-rate", "30000"], "u1"),
    "phy arrays of different lengths": _phy_short_clusters,
    "phy folder without params.py": _phy_without_params,
    "phy channel not an electrode": _phy_channel_outside,
    "phy keep of an unknown label": lambda p: ([str(_phy(p)[0]), "--keep", "good,excellent"], "excellent"),
    "missing source": lambda p: ([str(p / "nowhere.npz"), "--sampling-rate", "30000"], "nowhere.npz"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_input_cli(case, session, tmp_path, capsys):
    arguments, named = CLI_CASES[case](tmp_path)
    before = digest(session)
    assert main(["import-units", str(session), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mimic-nwb: error: ") and err.count("\n") == 1, err
    assert named in err, err
    assert digest(session) == before
    assert not list(tmp_path.glob(".session.nwb.*"))  # no working copy or lock left behind


def test_bad_input_session_already_has_units(session, capsys):
    import_units(session, GOOD, UnitImportConfig(sampling_rate=RATE, unit_table={"u1": {"brain_region": "DLS"}}))
    before = digest(session)
    with pytest.raises(InputError, match="units already exists; pass replace") as error:
        import_units(session, GOOD, UnitImportConfig(sampling_rate=RATE, unit_table={"u1": {"brain_region": "DLS"}}))
    assert "\n" not in str(error.value) and str(session) in str(error.value)
    assert digest(session) == before


def test_bad_input_fake_sorting_property_length(session):
    sorting = FakeSorting({"u0": np.array([10, 20])}, RATE, {"quality": ["good", "mua"]})
    before = digest(session)
    with pytest.raises(
        InputError, match=r"^SpikeInterface sorting FakeSorting: property 'quality' has 2 values for 1 units$"
    ):
        import_units(session, sorting)
    assert digest(session) == before


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("sampling_rate", 0, "sampling_rate: 0.0 Hz must be a positive number"),
        ("sampling_rate", "fast", "sampling_rate: 'fast' is not a sampling rate in Hz"),
        ("keep", ("good", "excellent"), "keep excellent: phy labels are"),
        ("segment_index", -1, "segment_index: -1 must be an integer >= 0"),
        ("segment_index", True, "segment_index: True must be an integer >= 0"),
        ("session_end", float("nan"), "session_end: nan must be a finite positive number of seconds"),
    ],
)
def test_config_refuses_bad_values_naming_the_field(field, value, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        UnitImportConfig(**{field: value})
    assert UnitImportConfig(keep="mua").keep == ("mua",)

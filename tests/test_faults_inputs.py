"""Bad inputs and damaged files at the door of import-units, import-labels, encode, rsa and inspect.

Each row of issue 15 that these commands own gets the contract: one line naming the input and
the problem, exit code 2 from the CLI (1 from ``inspect`` for a damaged file, as it documents),
and the session byte-identical; or, for legal odd input, the documented result.
"""

import h5py
import numpy as np
import pytest
from pynwb import NWBHDF5IO, TimeSeries

from mimic_nwb.cli import main
from mimic_nwb.importers.units import UnitImportConfig, import_units
from mimic_nwb.storage import compressed, verify_datasets

from helpers import digest, new_session, registered_toy_session, toy_registration


def corrupt_chunk(path, dataset, chunk=1, n_bytes=16):
    """Flip ``n_bytes`` bytes in the middle of chunk number ``chunk`` of ``dataset`` on disk."""
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(chunk)
    offset = info.byte_offset + info.size // 2
    with open(path, "r+b") as f:
        f.seek(offset)
        original = f.read(n_bytes)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in original))


def one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A registered toy session (40 s) with two units and behaviour labels."""
    path, t, qpos = registered_toy_session(tmp_path_factory.mktemp("faults"))
    rng = np.random.default_rng(0)
    spikes = {name: np.sort(rng.uniform(0, 39.9, 300)) for name in ("a", "b")}
    import_units(
        path, spikes, UnitImportConfig(sampling_rate=30000.0, unit_table={n: {"brain_region": "DLS"} for n in spikes})
    )
    labels = path.parent / "bouts.csv"
    labels.write_text(
        "start,stop,label\n" + "".join(f"{i * 2.0},{i * 2.0 + 2.0},{'Walk' if i % 2 else 'Rear'}\n" for i in range(19))
    )
    assert main(["import-labels", str(path), str(labels)]) == 0
    return path


# ---- numbers at the door ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, message",
    [
        ("-1", "n_permutations: -1 must be an integer >= 1"),
        ("0", "n_permutations: 0 must be an integer >= 1"),
        ("1000000000", "n_permutations: 1000000000 is more than 100000"),
    ],
)
def test_rsa_refuses_permutations_below_one(toy, capsys, value, message):
    before = digest(toy)
    assert main(["rsa", str(toy), "--feature-set", "joint_angles", "--permutations", value]) == 2
    assert message in one_line_error(capsys)
    assert digest(toy) == before


def test_rsa_refuses_a_non_integer_permutation_count(toy, capsys):
    with pytest.raises(SystemExit) as caught:  # argparse: usage and one error line, exit 2
        main(["rsa", str(toy), "--permutations", "1.5"])
    assert caught.value.code == 2
    assert "invalid int value: '1.5'" in capsys.readouterr().err
    from mimic_nwb.rsa.nwb import RsaConfig

    with pytest.raises(ValueError, match="n_permutations: 1.5 must be an integer"):
        RsaConfig(n_permutations=1.5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["rsa", "--bin-size", "nan"], "bin_size: nan s must be a finite positive number"),
        (["rsa", "--chunk-duration", "inf"], "chunk_duration: inf s must be a finite positive number"),
        (["rsa", "--folds", "1"], "n_folds: 1 must be an integer >= 2"),
        (["encode", "--bin-size", "nan"], "bin_size must be a finite number; got nan"),
        (["encode", "--bin-size", "inf"], "bin_size must be a finite number; got inf"),
        (["encode", "--alpha", "inf"], "alpha must be a finite number; got inf"),
        (["encode", "--lags", "0,nan"], "lags must be finite"),
        (["encode", "--pca-variance", "nan"], "pca_variance must be a finite number or None"),
        (["encode", "--q-threshold", "nan"], "q_threshold: nan must be a number in (0, 1]"),
        (["encode", "--q-threshold", "0"], "q_threshold: 0.0 must be a number in (0, 1]"),
    ],
)
def test_encode_and_rsa_numbers_must_be_finite_and_in_range(toy, capsys, argv, message):
    before = digest(toy)
    command, *options = argv
    assert (
        main(
            [
                command,
                str(toy),
                "--feature-set",
                "joint_angles",
                *options,
                *(["--no-progress"] if command == "encode" else []),
            ]
        )
        == 2
    )
    assert message in one_line_error(capsys)
    assert digest(toy) == before


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--session-end", "nan", "session_end: nan must be a finite positive number of seconds"),
        ("--session-end", "-5", "session_end: -5.0 must be a finite positive number of seconds"),
        ("--sampling-rate", "inf", "sampling_rate: inf Hz must be a positive number"),
        ("--segment-index", "-1", "segment_index: -1 must be an integer >= 0"),
    ],
)
def test_import_units_numbers_at_the_door(tmp_path, capsys, option, value, message):
    session = new_session(tmp_path)
    source = tmp_path / "spikes.npz"
    np.savez(source, a=np.array([0.1, 0.2]))
    before = digest(session)
    extra = [] if option == "--sampling-rate" else ["--sampling-rate", "30000"]
    assert main(["import-units", str(session), str(source), option, value, *extra]) == 2
    assert message in one_line_error(capsys)
    assert digest(session) == before


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--starting-time", "nan", "starting_time: nan is not a finite number"),
        ("--rate", "inf", "rate: inf is not a finite number"),
        ("--session-end", "nan", "session_end: nan is not a finite number"),
    ],
)
def test_import_labels_numbers_at_the_door(tmp_path, capsys, option, value, message):
    session = new_session(tmp_path)
    labels = tmp_path / "labels.npy"
    np.save(labels, np.array(["Walk"] * 10 + ["Rear"] * 10))
    before = digest(session)
    extra = [] if option == "--rate" else ["--rate", "50"]
    assert main(["import-labels", str(session), str(labels), option, value, *extra]) == 2
    assert message in one_line_error(capsys)
    assert digest(session) == before


# ---- spike times and tables ---------------------------------------------------------------------


def test_duplicate_spike_times_are_refused_naming_the_unit_and_count(tmp_path, capsys):
    session = new_session(tmp_path)
    source = tmp_path / "spikes.npz"
    np.savez(source, good=np.array([0.1, 0.2, 0.3]), twice=np.array([0.1, 0.2, 0.2, 0.5, 0.5, 0.7]))
    before = digest(session)
    assert main(["import-units", str(session), str(source), "--sampling-rate", "30000"]) == 2
    err = one_line_error(capsys)
    assert "unit 'twice': 2 duplicate spike time(s) (first at 0.2 s)" in err
    assert digest(session) == before


def test_unit_table_with_a_byte_order_mark_is_read(tmp_path):
    session = new_session(tmp_path)
    table = tmp_path / "units.csv"
    # What spreadsheet programs write for "CSV UTF-8": a BOM before the header.
    table.write_bytes("unit,brain_region,cell_type\na,DLS,MSN\nb,MC,\n".encode("utf-8-sig"))
    assert table.read_bytes().startswith(b"\xef\xbb\xbf")
    source = tmp_path / "spikes.npz"
    np.savez(source, a=np.array([0.1, 0.2]), b=np.array([0.3]))
    assert (
        main(["import-units", str(session), str(source), "--sampling-rate", "30000", "--unit-table", str(table)]) == 0
    )
    with NWBHDF5IO(session, "r") as nwb_io:
        units = nwb_io.read().units
        assert list(units["brain_region"][:]) == ["DLS", "MC"]
        assert list(units["cell_type"][:]) == ["MSN", "unknown"]


def test_bouts_table_with_a_byte_order_mark_is_read(tmp_path):
    session = new_session(tmp_path)
    table = tmp_path / "bouts.csv"
    table.write_bytes("start,stop,label\n0,1.5,Walk\n1.5,3,Rear\n".encode("utf-8-sig"))
    assert main(["import-labels", str(session), str(table), "--session-end", "3"]) == 0
    with NWBHDF5IO(session, "r") as nwb_io:
        assert list(nwb_io.read().intervals["behavior_labels"]["label"][:]) == ["Walk", "Rear"]


# ---- corrupted data ------------------------------------------------------------------------------


@pytest.fixture
def damaged(tmp_path):
    """A session with a large compressed (checksummed) series, and a copy with one chunk flipped."""
    path = new_session(tmp_path, "intact.nwb")
    data = np.random.default_rng(1).standard_normal((60000, 10))
    with NWBHDF5IO(path, "a") as nwb_io:
        nwbfile = nwb_io.read()
        module = nwbfile.create_processing_module("mimic", "results")
        module.add(TimeSeries(name="big", data=compressed(data), unit="m", rate=50.0))
        nwb_io.write(nwbfile)
    with h5py.File(path, "r") as f:
        dataset = f["processing/mimic/big/data"]
        assert dataset.fletcher32 and dataset.compression == "gzip" and dataset.id.get_num_chunks() > 2
    bad = tmp_path / "damaged.nwb"
    bad.write_bytes(path.read_bytes())
    corrupt_chunk(bad, "processing/mimic/big/data", chunk=2)
    return path, bad


def test_verify_datasets_names_the_damaged_dataset_and_chunk(damaged):
    intact, bad = damaged
    assert verify_datasets(intact) == []
    problems = verify_datasets(bad)
    assert len(problems) == 1
    assert problems[0].startswith("dataset /processing/mimic/big/data: cannot be read (chunk at rows ")


def test_inspect_reports_a_corrupted_chunk(damaged, capsys):
    intact, bad = damaged
    assert main(["inspect", str(intact), "--no-inspector"]) == 0
    capsys.readouterr()
    before = digest(bad)
    assert main(["inspect", str(bad)]) == 1
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].startswith("CORRUPT dataset /processing/mimic/big/data: cannot be read (chunk at rows")
    assert "integrity: 1 dataset(s)" in lines[1] and len(lines) == 2
    assert digest(bad) == before


@pytest.fixture
def damaged_registration(tmp_path):
    """A registration whose qpos (compressed, 3 chunks) has one damaged chunk."""
    from ndx_pose import Skeletons

    from mimic_nwb.session import append
    from ndx_mimic.testing import mock

    frames = 30000
    rng = np.random.default_rng(2)
    qpos = np.zeros((frames, 9))
    qpos[:, 2], qpos[:, 3] = 0.05, 1.0
    qpos[:, 7:] = 0.3 * rng.standard_normal((frames, 2))
    positions = 0.01 * rng.standard_normal((frames, 3, 3))
    path = new_session(tmp_path)
    timing = dict(rate=50.0, starting_time=0.0)
    with append(path) as s:
        behavior = s.module("behavior", "keypoints")
        skeleton = mock.mock_Skeleton()
        behavior.add(Skeletons(skeletons=[skeleton]))
        pose = mock.mock_PoseEstimation(skeleton=skeleton, positions=positions)
        behavior.add(pose)
        body_model = s.add(mock.mock_BodyModel())
        s.add(toy_registration(compressed(qpos), positions, body_model, skeleton, pose, timing))
    import_units(
        path,
        {"a": np.sort(rng.uniform(0, 590, 3000))},
        UnitImportConfig(sampling_rate=30000.0, session_end=600.0, unit_table={"a": {"brain_region": "DLS"}}),
    )
    corrupt_chunk(path, "processing/mimic/StacRegistration/qpos/data", chunk=1)
    return path


@pytest.mark.parametrize(
    "argv",
    [["encode", "--feature-set", "joint_angles", "--no-progress"], ["simulate", "--mode", "inverse_dynamics"]],
    ids=["encode", "simulate"],
)
def test_stages_on_a_damaged_file_give_one_line(damaged_registration, capsys, argv):
    capsys.readouterr()
    before = digest(damaged_registration)
    command, *options = argv
    assert main([command, str(damaged_registration), *options]) == 2
    err = one_line_error(capsys)
    assert "the file is damaged, data cannot be read: dataset /processing/mimic/StacRegistration/qpos/data" in err
    assert digest(damaged_registration) == before


def test_other_os_errors_are_not_called_damage(tmp_path):
    from mimic_nwb.storage import damaged_file_message

    path = new_session(tmp_path)
    assert damaged_file_message(path, OSError(28, "No space left on device")) is None
    assert damaged_file_message(tmp_path / "absent.nwb", OSError("Can't synchronously read data")) is None

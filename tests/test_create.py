"""Creating sessions: metadata from YAML or flags; what DANDI would reject is refused by field."""

import pytest
import yaml
from pynwb import TimeSeries, validate

from mimic_nwb.cli import main
from mimic_nwb.create import SessionMetadata, create_session
from mimic_nwb.errors import InputError
from mimic_nwb.session import append, read_session

from helpers import METADATA, new_session


def test_create_from_yaml_writes_subject_and_drives(tmp_path):
    meta = tmp_path / "meta.yaml"
    meta.write_text(yaml.safe_dump({**METADATA, "lab": "Olveczky", "experimenter": "Doe, Jane"}))
    path = tmp_path / "s.nwb"
    assert main(["create", str(path), "--metadata", str(meta)]) == 0
    with read_session(path) as nwbfile:
        assert nwbfile.subject.subject_id == "rat-01"
        assert nwbfile.subject.species == "Rattus norvegicus"
        assert nwbfile.lab == "Olveczky"
        assert list(nwbfile.experimenter) == ["Doe, Jane"]
        assert len(nwbfile.electrode_groups) == 2
        assert set(nwbfile.electrodes["location"][:]) == {"DLS"}
        assert len(nwbfile.electrodes) == 8
        assert nwbfile.session_start_time.utcoffset().total_seconds() == 0
    assert validate(path=str(path)) == []


def test_create_returns_what_it_wrote(tmp_path, capsys):
    metadata = SessionMetadata.from_dict(METADATA)
    result = create_session(tmp_path / "s.nwb", metadata)
    assert result.path == tmp_path / "s.nwb" and result.metadata is metadata and result.num_electrodes == 8
    with read_session(result.path) as nwbfile:
        assert nwbfile.identifier == result.identifier and len(nwbfile.electrodes) == result.num_electrodes
    assert result.summary().startswith(f"created {tmp_path / 's.nwb'}: subject rat-01 (Rattus norvegicus), session ")
    assert result.summary().endswith("8 electrodes on 1 drive(s)")
    # metadata built directly (not through from_dict) are checked too, before anything is written
    unchecked = SessionMetadata(**{**vars(metadata), "sex": "male"})
    with pytest.raises(InputError, match="metadata: sex 'male' must be one of"):
        create_session(tmp_path / "t.nwb", unchecked)
    assert not (tmp_path / "t.nwb").exists()
    assert main(["create", str(tmp_path / "u.nwb"), "--metadata", str(_yaml(tmp_path))]) == 0
    assert capsys.readouterr().out.startswith(f"created {tmp_path / 'u.nwb'}: subject rat-01")


def _yaml(folder):
    path = folder / "meta.yaml"
    path.write_text(yaml.safe_dump(METADATA))
    return path


def test_create_from_flags(tmp_path):
    path = tmp_path / "s.nwb"
    argv = [
        "create",
        str(path),
        "--subject-id",
        "rat-2",
        "--species",
        "http://purl.obolibrary.org/obo/NCBITaxon_10116",
        "--sex",
        "F",
        "--date-of-birth",
        "2024-01-01T00:00:00+01:00",
        "--session-id",
        "day-3",
        "--start-time",
        "2024-04-01T09:30:00+01:00",
        "--drive",
        "d1:MC:4",
        "--drive",
        "d2:DLS:4",
    ]
    assert main(argv) == 0
    with read_session(path) as nwbfile:
        assert nwbfile.subject.date_of_birth.year == 2024
        assert sorted({g.location for g in nwbfile.electrode_groups.values()}) == ["DLS", "MC"]


@pytest.mark.parametrize(
    "override, message",
    [
        (dict(species="rat"), "species 'rat' must be a Latin binomial"),
        (dict(sex="male"), "sex 'male' must be one of M, F, U, O"),
        (dict(age="90 days"), "age '90 days' is not an ISO 8601 duration"),
        (dict(age=None), "give age .* or date_of_birth"),
        (dict(subject_id="rat 01"), "subject_id 'rat 01' must be letters, digits and hyphens"),
        (dict(session_id="s_1"), "session_id 's_1' must be letters, digits and hyphens"),
        (dict(session_start_time="2024-03-01T10:00:00"), "session_start_time .* has no time zone"),
        (dict(session_start_time="yesterday"), "session_start_time: 'yesterday' is not an ISO 8601"),
        (dict(subject_id=None), "missing required field\\(s\\) subject_id"),
        (dict(colour="brown"), "unknown metadata field\\(s\\) colour"),
    ],
)
def test_metadata_dandi_would_reject_is_refused(override, message):
    values = {**METADATA, **override}
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(InputError, match=message):
        SessionMetadata.from_dict(values)


def test_cli_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys):
    path = tmp_path / "s.nwb"
    assert (
        main(
            [
                "create",
                str(path),
                "--subject-id",
                "r1",
                "--species",
                "Rattus norvegicus",
                "--sex",
                "X",
                "--age",
                "P1D",
                "--session-id",
                "s",
                "--start-time",
                "2024-01-01T00:00:00+00:00",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("mimic-nwb: error: flags: sex 'X'") and "\n" not in err
    assert not path.exists()
    existing = new_session(tmp_path, "x.nwb")
    before = existing.read_bytes()
    meta = tmp_path / "m.yaml"
    meta.write_text(yaml.safe_dump(METADATA))
    assert main(["create", str(existing), "--metadata", str(meta)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert existing.read_bytes() == before
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("subject_id: [unclosed")
    assert main(["create", str(tmp_path / "n.nwb"), "--metadata", str(bad_yaml)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_create_a_session_whose_name_is_near_the_file_name_limit(tmp_path):
    # The file written before the rename is named from a digest of the name, not the name itself:
    # a session name of 250 bytes (the limit is 255) must not overflow it.
    name = "s" * 246 + ".nwb"
    assert len(name.encode()) == 250
    result = create_session(tmp_path / name, SessionMetadata.from_dict(METADATA))
    with read_session(result.path) as nwbfile:
        assert nwbfile.subject.subject_id == "rat-01"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no working copy left behind
    # an append to it (the session layer's own working copy and lock) works too
    with append(result.path) as session:
        session.add(TimeSeries(name="x", data=[1.0, 2.0], unit="m", rate=1.0))
    with read_session(result.path) as nwbfile:
        assert list(nwbfile.processing["mimic"]["x"].data[:]) == [1.0, 2.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]

"""Create a session file from metadata (a YAML file or flags), refusing what DANDI would reject.

``create_session(path, metadata)`` is the one stage that does not take a session: the session
does not exist yet. It follows the other stages' shape otherwise: the metadata
(:class:`SessionMetadata`) play the role of the config, ``overwrite`` that of ``replace`` (for a
whole file), and it returns a typed :class:`CreateResult` whose ``summary()`` the command prints.
"""

import os
import re
import tempfile
import uuid
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from pathlib import Path

import yaml
from pynwb import NWBHDF5IO, NWBFile
from pynwb.file import Subject

from .errors import InputError
from .session import work_prefix

SEXES = ("M", "F", "U", "O")
# DANDI accepts a Latin binomial (optionally with a subspecies) or an NCBI Taxonomy URL.
LATIN_BINOMIAL = re.compile(r"^[A-Z][a-z]+ [a-z]+( [a-z]+)?$")
NCBI_TAXON_URL = re.compile(r"^https?://purl\.obolibrary\.org/obo/NCBITaxon_\d+$")
# ISO 8601 durations as DANDI reads them, optionally a range ("P90D/P95D") or a reference ("P90D/B").
ISO_DURATION = r"P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?"
ISO_AGE = re.compile(rf"^{ISO_DURATION}(/({ISO_DURATION}|B|Birth))?$")
# DANDI file names are built from subject and session ids: letters, digits and hyphens only.
DANDI_ID = re.compile(r"^[A-Za-z0-9-]+$")


@dataclass
class TetrodeDrive:
    """A tetrode drive (one NWB Device) with its tetrodes (one ElectrodeGroup each) in one brain region."""

    name: str
    brain_region: str
    num_tetrodes: int = 16
    channels_per_tetrode: int = 4
    description: str = "tetrode drive"
    manufacturer: str | None = None


@dataclass
class SessionMetadata:
    """What a new session file records about the subject and the session.

    ``age`` is an ISO 8601 duration (e.g. 'P90D'); give it or ``date_of_birth``.
    ``session_start_time`` must carry a time zone (it is the session's clock origin).
    """

    subject_id: str
    species: str
    sex: str
    session_id: str
    session_start_time: datetime
    age: str | None = None
    date_of_birth: datetime | None = None
    session_description: str = "MIMIC session: freely moving rat, 3D keypoints and tetrode recordings"
    identifier: str | None = None
    lab: str | None = None
    institution: str | None = None
    experimenter: list[str] = field(default_factory=list)
    experiment_description: str | None = None
    keywords: list[str] = field(default_factory=list)
    subject_description: str | None = None
    strain: str | None = None
    weight: str | None = None
    drives: list[TetrodeDrive] = field(default_factory=list)

    @classmethod
    def from_dict(cls, values, source="metadata"):
        """Build from a plain dict (e.g. parsed YAML); ``source`` names the input in errors."""
        if not isinstance(values, dict):
            raise InputError(f"{source}: expected a mapping of metadata fields, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"{source}: unknown metadata field(s) {', '.join(unknown)}")
        values = dict(values)
        for key in ("session_start_time", "date_of_birth"):
            if values.get(key) is not None:
                values[key] = _datetime(values[key], f"{source}: {key}")
        drives = values.get("drives") or []
        try:
            values["drives"] = [d if isinstance(d, TetrodeDrive) else TetrodeDrive(**d) for d in drives]
        except TypeError as error:
            raise InputError(f"{source}: drives: {error}") from None
        for key in ("experimenter", "keywords"):
            if isinstance(values.get(key), str):
                values[key] = [values[key]]
        required = ("subject_id", "species", "sex", "session_id", "session_start_time")
        missing = [name for name in required if values.get(name) is None]
        if missing:
            raise InputError(f"{source}: missing required field(s) {', '.join(missing)}")
        metadata = cls(**values)
        metadata.validate(source)
        return metadata

    @classmethod
    def from_yaml(cls, path):
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise InputError(f"{path}: no such metadata file") from None
        except yaml.YAMLError as error:
            raise InputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
        return cls.from_dict(values, source=str(path))

    def validate(self, source="metadata"):
        """Raise InputError naming the first field DANDI would reject, and why."""
        if not DANDI_ID.match(str(self.subject_id)):
            raise InputError(
                f"{source}: subject_id {self.subject_id!r} must be letters, digits and hyphens (DANDI file names)"
            )
        if not DANDI_ID.match(str(self.session_id)):
            raise InputError(
                f"{source}: session_id {self.session_id!r} must be letters, digits and hyphens (DANDI file names)"
            )
        if not (LATIN_BINOMIAL.match(self.species) or NCBI_TAXON_URL.match(self.species)):
            raise InputError(
                f"{source}: species {self.species!r} must be a Latin binomial ('Rattus norvegicus') or an NCBI "
                "Taxonomy URL (http://purl.obolibrary.org/obo/NCBITaxon_10116)"
            )
        if self.sex not in SEXES:
            raise InputError(f"{source}: sex {self.sex!r} must be one of {', '.join(SEXES)}")
        if self.age is None and self.date_of_birth is None:
            raise InputError(f"{source}: give age (ISO 8601 duration, e.g. 'P90D') or date_of_birth")
        if self.age is not None and not ISO_AGE.match(str(self.age)):
            raise InputError(f"{source}: age {self.age!r} is not an ISO 8601 duration such as 'P90D' or 'P12W'")
        for key in ("session_start_time", "date_of_birth"):
            value = getattr(self, key)
            if value is not None and value.tzinfo is None:
                raise InputError(f"{source}: {key} {value.isoformat()} has no time zone (e.g. add +00:00)")
        if self.date_of_birth is not None and self.date_of_birth > self.session_start_time:
            raise InputError(f"{source}: date_of_birth is after session_start_time")
        for drive in self.drives:
            if drive.num_tetrodes < 1 or drive.channels_per_tetrode < 1:
                raise InputError(f"{source}: drive {drive.name!r} needs at least one tetrode and one channel")


def _datetime(value, what):
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        raise InputError(f"{what}: {value} is a date without a time and time zone")
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"{what}: {value!r} is not an ISO 8601 date-time") from None


def build_nwbfile(metadata: SessionMetadata) -> NWBFile:
    """An in-memory NWBFile with the subject, the session ids and the tetrode drives."""
    nwbfile = NWBFile(
        session_description=metadata.session_description,
        identifier=metadata.identifier or str(uuid.uuid4()),
        session_start_time=metadata.session_start_time,
        session_id=metadata.session_id,
        lab=metadata.lab,
        institution=metadata.institution,
        experimenter=metadata.experimenter or None,
        experiment_description=metadata.experiment_description,
        keywords=metadata.keywords or None,
        subject=Subject(
            subject_id=metadata.subject_id,
            species=metadata.species,
            sex=metadata.sex,
            age=metadata.age,
            date_of_birth=metadata.date_of_birth,
            description=metadata.subject_description,
            strain=metadata.strain,
            weight=metadata.weight,
        ),
    )
    for drive in metadata.drives:
        device = nwbfile.create_device(name=drive.name, description=drive.description, manufacturer=drive.manufacturer)
        for index in range(drive.num_tetrodes):
            group = nwbfile.create_electrode_group(
                name=f"{drive.name}_tetrode_{index}",
                description=f"tetrode {index} of {drive.name}",
                location=drive.brain_region,
                device=device,
            )
            for _ in range(drive.channels_per_tetrode):
                nwbfile.add_electrode(group=group, location=drive.brain_region)
    return nwbfile


@dataclass(frozen=True)
class CreateResult:
    """A session file written by :func:`create_session`: its ``path``, the ``metadata`` it
    records, its NWB ``identifier`` and the number of electrodes of its tetrode drives."""

    path: Path
    metadata: SessionMetadata
    identifier: str
    num_electrodes: int

    def summary(self):
        """One line: the file, subject, session and electrodes."""
        meta = self.metadata
        return (
            f"created {self.path}: subject {meta.subject_id} ({meta.species}), session {meta.session_id} "
            f"starting {meta.session_start_time.isoformat()}, {self.num_electrodes} electrodes on "
            f"{len(meta.drives)} drive(s)"
        )


def create_session(path, metadata: SessionMetadata, *, overwrite=False) -> CreateResult:
    """Write a new session file (atomically: a crash leaves no half-written file).

    ``metadata`` is validated (:meth:`SessionMetadata.validate`) before anything is written; an
    existing file is refused unless ``overwrite``. Returns a :class:`CreateResult`.
    """
    path = Path(path)
    metadata.validate("metadata")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: already exists (pass overwrite / --overwrite to replace it)")
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    nwbfile = build_nwbfile(metadata)
    # Named like an append's working copy (fixed length, so a session name near the file system's
    # 255-byte limit still fits; a crashed create's leftover is removed by the next append).
    fd, work = tempfile.mkstemp(prefix=work_prefix(path), suffix=".tmp.nwb", dir=path.parent)
    os.close(fd)
    try:
        with NWBHDF5IO(work, "w") as io:
            io.write(nwbfile)
        os.chmod(work, 0o644)
        os.replace(work, path)
    finally:
        if os.path.exists(work):
            os.unlink(work)
    return CreateResult(
        path=path,
        metadata=metadata,
        identifier=nwbfile.identifier,
        num_electrodes=len(nwbfile.electrodes) if nwbfile.electrodes is not None else 0,
    )

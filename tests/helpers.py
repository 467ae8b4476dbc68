"""Shared test helpers: sessions to append to, and checks that a file did not change."""

import hashlib
from pathlib import Path

from mimic_nwb.create import SessionMetadata, create_session

METADATA = dict(
    subject_id="rat-01",
    species="Rattus norvegicus",
    sex="M",
    age="P90D",
    session_id="s1",
    session_start_time="2024-03-01T10:00:00+00:00",
    drives=[dict(name="drive0", brain_region="DLS", num_tetrodes=2)],
)


def new_session(folder, name="session.nwb", **overrides) -> Path:
    path = Path(folder) / name
    create_session(path, SessionMetadata.from_dict({**METADATA, **overrides}))
    return path


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()

"""Reference data shipped with the package (see README.md in this folder for sources and licences)."""

from importlib.resources import files
from pathlib import Path


def data_path(name: str) -> Path:
    """Path of a shipped reference file, e.g. ``data_path("rat23_dannce_clip_1000.mat")``."""
    path = Path(str(files(__name__) / name))
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such reference file in mimic_nwb/data")
    return path

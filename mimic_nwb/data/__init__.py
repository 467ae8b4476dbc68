"""Reference data shipped with the package (see README.md in this folder for sources and licences)."""

from importlib.resources import files
from pathlib import Path

# Site maps (keypoint -> body and offset on the dm_control rodent) shipped, by skeleton name.
BUILTIN_SITE_MAPS = {"rat23": "rat23_rodent_sites.yaml"}


def data_path(name: str) -> Path:
    """Path of a shipped reference file, e.g. ``data_path("rat23_dannce_clip_1000.mat")``."""
    path = Path(str(files(__name__) / name))
    if not path.exists():
        raise FileNotFoundError(f"{name}: no such reference file in mimic_nwb/data")
    return path

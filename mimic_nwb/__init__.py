"""mimic_nwb: the MIMIC pipeline stages over ndx-mimic session files.

Each stage has a pure core (arrays in, arrays out), a thin NWB adapter that reads a session
and appends its result with provenance, and a ``mimic-nwb`` subcommand.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ndx-mimic")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.1.0"

__all__ = ["__version__"]

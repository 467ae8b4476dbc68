"""mimic_nwb: the MIMIC pipeline stages over ndx-mimic session files.

Each stage has a pure core (arrays in, arrays out), a thin NWB adapter that reads a session
and appends its result with provenance, and a ``mimic-nwb`` subcommand.
"""

from ndx_mimic import __version__  # one version for the distribution: ndx_mimic.__version__

__all__ = ["__version__"]

"""mimic_nwb: the MIMIC pipeline stages over ndx-mimic session files.

Each stage has a pure core (arrays in, arrays out), a thin NWB adapter that reads a session
and appends its result with provenance, and a ``mimic-nwb`` subcommand. ``mimic_nwb.open(path)``
opens a session for reading and typed lookups (:class:`mimic_nwb.session.Session`).
"""

from ndx_mimic import __version__  # one version for the distribution: ndx_mimic.__version__

from .session import Session, find_result, find_results, open  # noqa: A004  (mimic_nwb.open, like h5py.File)

__all__ = ["Session", "__version__", "find_result", "find_results", "open"]

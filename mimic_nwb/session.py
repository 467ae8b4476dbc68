"""Session files: one append mechanism for every stage.

Every stage opens a session with :func:`append`, adds its results, and closes. The append works
on a copy of the file next to it and atomically renames the copy over the original only when
the new results are completely written, so a crash or ``kill -9`` at any moment leaves the
session either exactly as it was or complete with the new results. A lock file beside the
session makes a second writer fail at once with "session is in use".

Replacing a result rewrites the file without it (pynwb export), so the file does not keep
growing; results that link to a replaced one are replaced with it only when asked, otherwise
the replace is refused naming them: never a dangling link. Besides the results in processing
modules, the core Units table (``units``) and tables in ``/intervals`` (``intervals/NAME``) can
be replaced.
"""

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import h5py
from pynwb import NWBHDF5IO, ProcessingModule

import ndx_mimic  # noqa: F401  (registers the types the file holds)

from . import __version__
from .errors import InputError, SessionInUseError

RESULTS_MODULE = "mimic"
RESULTS_MODULE_DESCRIPTION = (
    "Results of the MIMIC pipeline (ndx-mimic): body models, STAC registrations, simulation rollouts, "
    "controller networks, network activations, encoding models and representational similarity."
)
PROVENANCE_FIELDS = ("software_name", "software_version", "parameters", "created")


def check_session_file(path):
    """Raise InputError (one line) unless ``path`` is an existing, readable NWB (HDF5) file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such session file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an NWB session file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an NWB file (not HDF5)")
    try:
        with h5py.File(path, "r") as f:
            if "nwb_version" not in f.attrs:
                raise InputError(f"{path}: an HDF5 file but not NWB (no nwb_version attribute)")
    except OSError as error:
        raise InputError(f"{path}: cannot be read as HDF5 ({error})") from None


@contextlib.contextmanager
def read_session(path):
    """Open a session for reading: ``with read_session(path) as nwbfile: ...``."""
    check_session_file(path)
    with NWBHDF5IO(str(path), "r") as io:
        yield io.read()


@contextlib.contextmanager
def session_lock(path):
    """Hold the writer lock of a session (a hidden lock file beside it); fail at once if held."""
    path = Path(path)
    lock_path = path.with_name(f".{path.name}.lock")
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            raise InputError(f"{path}: cannot create the lock file in {path.parent} (folder not writable)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SessionInUseError(f"{path}: session is in use by another writer (lock {lock_path.name})") from None
        # The previous holder may have unlinked the lock file between our open and flock: retry.
        try:
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


def _remove_stale_copies(path):
    """Working copies left by writers that crashed (only called while holding the lock)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp.nwb"):
        stale.unlink()


def dependents_of(nwbfile, targets):
    """Objects outside ``targets`` (and their children) that link to any of them or their children.

    Returns ``{dependent: set of target names}``; a dependent is the result in a processing module
    that holds the linking object, as ``(module, name)``, or the linking object's path elsewhere.
    """
    removed = {}
    for target in targets:
        for obj in (target, *target.all_children()):
            removed[id(obj)] = target.name
    found = {}
    for obj in nwbfile.objects.values():
        if id(obj) in removed:
            continue
        for value in obj.fields.values():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
            for item in items:
                # a child is owned, not linked: owned objects go with their owner
                if id(item) in removed and getattr(item, "parent", None) is not obj:
                    found.setdefault(_result_of(obj), set()).add(removed[id(item)])
    return found


def _result_of(obj):
    """``(module, name)`` of the processing-module result holding ``obj``, else its path."""
    path = []
    while obj.parent is not None:
        if isinstance(obj.parent, ProcessingModule):
            return (obj.parent.name, obj.name)
        path.append(obj.name)
        obj = obj.parent
    return "/".join(reversed(path))


class SessionAppend:
    """The working copy of a session during :func:`append`; add results with :meth:`add`."""

    def __init__(self, nwbfile, path, replaced):
        self.nwbfile = nwbfile
        self.path = path
        self.replaced = replaced  # names of the results this append removed first

    def results_module(self):
        if RESULTS_MODULE not in self.nwbfile.processing:
            self.nwbfile.create_processing_module(RESULTS_MODULE, RESULTS_MODULE_DESCRIPTION)
        return self.nwbfile.processing[RESULTS_MODULE]

    def module(self, name, description):
        if name not in self.nwbfile.processing:
            self.nwbfile.create_processing_module(name, description)
        return self.nwbfile.processing[name]

    def check_new(self, name, module=RESULTS_MODULE):
        """Raise unless ``module/name`` is free (or was replaced by this append).

        ``module`` is a processing module, or ``"intervals"`` for a table in ``/intervals``;
        ``check_new("units", module=None)`` checks the core Units table.
        """
        where = name if module is None else f"{module}/{name}"
        if _resolve(self.nwbfile, where) is not None:
            shown = where if module in (None, "intervals") else f"processing/{where}"
            raise InputError(f"{self.path}: {shown} already exists; pass replace (--replace) to replace it")

    def add(self, obj, module=RESULTS_MODULE, parameters=None):
        """Add a result to ``processing/<module>`` with provenance (software, parameters, time)."""
        self.check_new(obj.name, module)
        set_provenance(obj, parameters)
        target = self.results_module() if module == RESULTS_MODULE else self.nwbfile.processing[module]
        target.add(obj)
        return obj


def set_provenance(obj, parameters=None):
    """Fill the provenance attributes a type declares (software, version, JSON parameters, time)."""
    values = dict(
        software_name="mimic_nwb",
        software_version=__version__,
        parameters=json.dumps(parameters, sort_keys=True, default=_json_default) if parameters is not None else None,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    for field, value in values.items():
        # every type that declares provenance has a property per attribute (tables included)
        if isinstance(getattr(type(obj), field, None), property) and value is not None and getattr(obj, field) is None:
            setattr(obj, field, value)


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@contextlib.contextmanager
def append(path, replace=(), replace_dependents=False):
    """Open a session to add results; commit them atomically when the block ends without error.

    ``replace`` names results in ``processing/mimic`` (or ``module/name`` paths, ``units`` for the
    Units table, ``intervals/NAME`` for a time-intervals table) to remove first; results linking
    to them are removed too when ``replace_dependents`` is true, otherwise the replace is refused
    naming them. Yields a :class:`SessionAppend`.
    """
    path = Path(path)
    check_session_file(path)
    # The mode bits state the owner's intent even for root, whom os.access always lets write.
    if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:
        raise InputError(f"{path}: session file is read-only")
    with session_lock(path):
        _remove_stale_copies(path)
        fd, work = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.nwb", dir=path.parent)
        os.close(fd)
        work = Path(work)
        try:
            replaced = _copy_without(path, work, replace, replace_dependents)
            with NWBHDF5IO(str(work), "a") as io:
                session = SessionAppend(io.read(), path, replaced)
                yield session
                io.write(session.nwbfile)
            with open(work, "rb") as f:
                os.fsync(f.fileno())
            shutil.copymode(path, work)
            os.replace(work, path)
            _fsync_dir(path.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                work.unlink()


def _resolve(nwbfile, name):
    """``(module, name)`` of a result present in the file, else None.

    ``module`` is a processing module's name, ``""`` for the Units table (``name == "units"``),
    or ``"intervals"`` for a table in ``/intervals``.
    """
    if name == "units":
        return ("", "units") if nwbfile.units is not None else None
    module, _, obj_name = name.rpartition("/")
    if module == "intervals":
        return (module, obj_name) if obj_name in nwbfile.intervals else None
    module = module or RESULTS_MODULE
    if module in nwbfile.processing and obj_name in nwbfile.processing[module].data_interfaces:
        return module, obj_name
    return None


def _get(nwbfile, where):
    module, name = where
    if module == "":
        return nwbfile.units
    if module == "intervals":
        return nwbfile.intervals[name]
    return nwbfile.processing[module][name]


def _remove(nwbfile, where):
    module, name = where
    if module == "":
        # Detach it as LabelledDict.pop does for the others (children, modified flags: else export
        # writes the file from its cached build), then drop the field, which hdmf sets only once.
        nwbfile.units.reset_parent()
        nwbfile.fields.pop("units")
    elif module == "intervals":
        nwbfile.intervals.pop(name)
    else:
        nwbfile.processing[module].data_interfaces.pop(name)


def _copy_without(path, work, replace, replace_dependents):
    """Copy the session to ``work``, without the results to replace (exported, so the file shrinks)."""
    with NWBHDF5IO(str(path), "r") as src:
        nwbfile = src.read()
        found = {r for name in replace if (r := _resolve(nwbfile, name))}
        if found:
            while dependents := dependents_of(nwbfile, [_get(nwbfile, where) for where in found]):
                movable = {d for d in dependents if isinstance(d, tuple)}
                if not replace_dependents or len(movable) < len(dependents):
                    listing = "; ".join(
                        f"{d if isinstance(d, str) else '/'.join(d)} links {', '.join(sorted(t))}"
                        for d, t in dependents.items()
                    )
                    names = ", ".join(sorted(n for _, n in found))
                    raise InputError(f"{path}: cannot replace {names}: {listing} (replace those too)")
                found |= movable
            for where in found:
                _remove(nwbfile, where)
            with NWBHDF5IO(str(work), "w") as dst:
                dst.export(src_io=src, nwbfile=nwbfile)
            return tuple(sorted(name for _, name in found))
    shutil.copyfile(path, work)
    return ()


def _fsync_dir(folder):
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

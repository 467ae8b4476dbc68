"""Session files: opening a session, finding results in it, and one append mechanism for every stage.

``mimic_nwb.open(path)`` returns a :class:`Session`: read access to the NWB file and typed lookups
(``session.result(StacRegistration)``: one result, an error naming the candidates when the choice
is ambiguous, never a silent first). :func:`find_result` and :func:`find_results` are the same
lookups over any pynwb ``NWBFile``.

Every stage adds its results with :func:`append`. The append works on a copy of the file next to
it (a reflink clone where the file system offers one, so the copy costs no time or space; else a
plain copy) and atomically renames the copy over the original only when the new results are
completely written, so a crash or ``kill -9`` at any moment leaves the session either exactly as
it was or complete with the new results. A lock file beside the session (``filelock``: flock on
POSIX, LockFileEx on Windows) makes a second writer fail at once with "session is in use".

A stage reads its inputs, computes without holding the lock, and passes the inputs' ``object_id``s
to the append (``inputs=``, or :meth:`SessionAppend.input`): under the lock they are checked
against the file, so a result never links to an input that another writer replaced meanwhile.

Replacing a result rewrites the file without it (pynwb export), so the file does not keep growing.
Results derived from a replaced one (linking to it, or naming it in their ``parameters``) are
replaced with it only when asked (``replace_dependents``), otherwise the replace is refused naming
them: never a dangling link, never a result describing data that are gone. Besides the results in
processing modules, the core Units table (``units``) and tables in ``/intervals``
(``intervals/NAME``) can be replaced.

The session path may be a symbolic link: the file it points to is updated and the link survives.
A session file with several hard links is refused (the atomic rename would silently split the
links into an old and a new file): copy it to a file of its own first. Running out of disk space
while copying or writing is reported in one line; the working copy is removed and the session is
left as it was.
"""

import builtins  # this module defines open(): builtins.open is the file one
import contextlib
import contextvars
import errno
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import filelock
import h5py
from hdmf.build import ConstructError
from pynwb import NWBHDF5IO, ProcessingModule

# Importing ndx_mimic registers the types the file holds; its version is the distribution's one
# (taken from there, not from mimic_nwb, whose __init__ imports this module).
from ndx_mimic import __version__

from .errors import InputError, SessionInUseError, StaleInputError

RESULTS_MODULE = "mimic"
RESULTS_MODULE_DESCRIPTION = (
    "Results of the MIMIC pipeline (ndx-mimic): body models, STAC registrations, simulation rollouts, "
    "controller networks, network activations, encoding models and representational similarity."
)
KEYPOINTS_MODULE = "behavior"  # where ndx-pose keypoints (Skeletons, PoseEstimation) live
PROVENANCE_FIELDS = ("software_name", "software_version", "parameters", "created")
# pynwb keeps, on a TimeSeries whose timestamps or data another series links to, the set of
# linking series: back-references, not dependencies (the linking series depends on this one).
BACK_REFERENCE_FIELDS = frozenset({"timestamp_link", "data_link"})
_NAME_MAX = 255  # bytes in a file name on every common file system
# Set by replacing_dependents() (the command line's --replace-dependents) for the appends of a block.
_REPLACE_DEPENDENTS = contextvars.ContextVar("replace_dependents", default=False)


# ---------------------------------------------------------------------------------------------
# Reading


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
            root_type = f.attrs.get("neurodata_type")
            if isinstance(root_type, bytes):
                root_type = root_type.decode(errors="replace")
            if root_type != "NWBFile":
                raise InputError(
                    f"{path}: not an NWB file (HDF5 with an nwb_version attribute but no NWBFile at its root)"
                )
    except OSError as error:
        raise InputError(f"{path}: cannot be read as HDF5 ({error})") from None


def _read_nwbfile(io, path):
    """``io.read()``, with any failure to build the file's objects turned into one InputError line.

    pynwb reports a file it cannot build (an object written by an incompatible version of an
    extension, a required dataset missing) with the whole builder tree in the message (kilobytes);
    the line names the object and the innermost cause instead.
    """
    try:
        return io.read()
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001  (whatever the reader raises, the file is the problem)
        raise InputError(f"{path}: cannot be read as NWB: {_describe_read_error(error)}") from None


def _describe_read_error(error):
    """``OBJECT: first line of the innermost cause`` (the object from the first ConstructError)."""
    where = None
    innermost = error
    while error is not None:
        if where is None and isinstance(error, ConstructError) and getattr(error.args[0], "path", None):
            where = error.args[0].path.removeprefix("root/")
        innermost = error
        error = error.__cause__ or error.__context__
    message = str(innermost).strip().splitlines()[0] if str(innermost).strip() else type(innermost).__name__
    if len(message) > 240:
        message = message[:237] + "..."
    return f"{where}: {message}" if where else message


@contextlib.contextmanager
def read_session(path):
    """Open a session for reading: ``with read_session(path) as nwbfile: ...``."""
    check_session_file(path)
    with NWBHDF5IO(str(path), "r") as io:
        yield _read_nwbfile(io, path)


# ---------------------------------------------------------------------------------------------
# Finding results


def _is_kind(obj, kind):
    """``obj`` is of NWB type ``kind`` (a class, or a type name matched along the class hierarchy).

    Names are compared as well as classes so that a lookup also works on files read without the
    extension installed (pynwb then generates the classes from the cached spec).
    """
    names = {cls.__name__ for cls in type(obj).__mro__}
    if isinstance(kind, str):
        return kind in names
    return isinstance(obj, kind) or kind.__name__ in names


def _kind_name(kind):
    return kind if isinstance(kind, str) else kind.__name__


def _source_of(nwbfile, path):
    return path if path is not None else (getattr(nwbfile, "container_source", None) or "session")


def find_results(nwbfile, kind, module=RESULTS_MODULE):
    """Every result of type ``kind`` (class or type name) in ``processing/<module>``, by name.

    Returns ``{name: object}`` in the module's order (empty when the module is absent).
    """
    found = nwbfile.processing.get(module)
    if found is None:
        return {}
    return {name: obj for name, obj in found.data_interfaces.items() if _is_kind(obj, kind)}


def find_result(nwbfile, kind, name=None, module=RESULTS_MODULE, path=None):
    """The one result of type ``kind`` (class or type name) in ``processing/<module>``.

    With ``name``, that result (an InputError if it is absent or of another type). Without, the
    only one of its type; none, or several, is an InputError that names the candidates: a choice
    is never made silently. ``path`` names the file in messages (default: the file read).
    """
    source = _source_of(nwbfile, path)
    kind_name = _kind_name(kind)
    candidates = find_results(nwbfile, kind, module)
    where = f"processing/{module}"
    if name is not None:
        if name in candidates:
            return candidates[name]
        container = nwbfile.processing.get(module)
        if container is not None and name in container.data_interfaces:
            other = type(container.data_interfaces[name]).__name__
            raise InputError(f"{source}: {where}/{name} is a {other}, not a {kind_name}")
        listing = f" (found: {', '.join(candidates)})" if candidates else ""
        raise InputError(f"{source}: no {kind_name} named {name!r} in {where}{listing}")
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    if not candidates:
        raise InputError(f"{source}: no {kind_name} in {where}")
    raise InputError(
        f"{source}: {len(candidates)} {kind_name} results in {where} ({', '.join(candidates)}): choose one by name"
    )


def where_of(obj):
    """The path of a result as :func:`append` takes it: ``processing/M/NAME``, ``units`` or ``intervals/NAME``."""
    parent = obj.parent
    if isinstance(parent, ProcessingModule):
        return f"processing/{parent.name}/{obj.name}"
    if parent is not None and type(parent).__name__ == "NWBFile":
        if parent.units is obj:
            return "units"
        if obj.name in parent.intervals and parent.intervals[obj.name] is obj:
            return f"intervals/{obj.name}"
    raise ValueError(f"{obj.name} is not a result of a session (not in a processing module, units or intervals)")


def input_ids(*objects):
    """``{path: object_id}`` of results read from a session, for ``append(..., inputs=...)``."""
    return {where_of(obj): obj.object_id for obj in objects}


# ---------------------------------------------------------------------------------------------
# A session object


class Session:
    """An open session file: read access, typed lookups, and appends that check their inputs.

    Use as a context manager (``with mimic_nwb.open(path) as session: ...``) or call :meth:`close`.
    ``mode`` is ``"r"`` (read only) or ``"a"`` (appends allowed, with :meth:`append`).
    """

    def __init__(self, path, mode="r"):
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', not {mode!r}")
        self.path = Path(path)
        self.mode = mode
        check_session_file(self.path)
        if mode == "a":
            _check_writable(self.path)
        self._io = None
        self.nwbfile = None
        self._open()

    def _open(self):
        io = NWBHDF5IO(str(self.path), "r")
        try:
            self.nwbfile = _read_nwbfile(io, self.path)
        except BaseException:
            io.close()
            raise
        self._io = io

    def _close_reader(self):
        if self._io is not None:
            self._io.close()
            self._io = None

    def reload(self):
        """Read the file again (another writer may have changed it); objects read before are stale."""
        self._close_reader()
        self._open()

    def close(self):
        """Close the file (objects read from it can no longer load their data)."""
        self._close_reader()
        self.nwbfile = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self._io is None else self.mode
        return f"<Session {self.path} ({state})>"

    def results(self, kind, module=RESULTS_MODULE):
        """``{name: result}`` of every result of type ``kind`` (class or type name) in ``processing/<module>``."""
        return find_results(self.nwbfile, kind, module)

    def result(self, kind, name=None, module=RESULTS_MODULE):
        """The one result of type ``kind``, or the one named ``name`` (see :func:`find_result`)."""
        return find_result(self.nwbfile, kind, name, module, path=self.path)

    def keypoints(self, name=None):
        """The ndx-pose PoseEstimation in ``processing/behavior`` (the only one, or the one named)."""
        return find_result(self.nwbfile, "PoseEstimation", name, KEYPOINTS_MODULE, path=self.path)

    def units(self):
        """The core Units table (an InputError if the session has none)."""
        if self.nwbfile.units is None:
            raise InputError(f"{self.path}: no units; import them with mimic-nwb import-units")
        return self.nwbfile.units

    def object_ids(self, *objects):
        """``{path: object_id}`` of results read from this session: the ``inputs`` of :meth:`append`."""
        return input_ids(*objects)

    @contextlib.contextmanager
    def append(self, replace=(), replace_dependents=False, inputs=None):
        """:func:`append` to this session; afterwards ``self.nwbfile`` shows the new file.

        New results must link the working copy's objects (``s.input(obj)`` gives the one matching
        an object read through this session, checked to be unchanged), never objects read through
        the session itself (hdmf would write a link to another file). The reader is closed just
        before the atomic rename (Windows cannot rename over an open file), so objects read
        earlier must not be used after the append; look them up again.
        """
        if self.mode != "a":
            raise InputError(f"{self.path}: opened read-only; open it with mode='a' to append")
        try:
            with append(self.path, replace, replace_dependents, inputs=inputs, _before_replace=self._close_reader) as s:
                yield s
        finally:
            if self._io is None:
                self._open()


@contextlib.contextmanager
def opened(session, mode="a"):
    """``session`` itself when it is a :class:`Session` (left open), else the file at that path
    opened as a Session for the block: what a stage function taking "a session or a path" uses."""
    if isinstance(session, Session):
        yield session
        return
    with Session(session, mode) as opened_session:
        yield opened_session


def open(path, mode="r"):  # noqa: A001  (mimic_nwb.open, as h5py.File / xarray.open_dataset read)
    """Open a session file: a :class:`Session` (``mode`` ``"r"``, or ``"a"`` to append)."""
    return Session(path, mode)


# ---------------------------------------------------------------------------------------------
# Locking


def _lock_path(path):
    name = f".{path.name}.lock"
    if len(name.encode()) > _NAME_MAX:
        name = f".mimic-{_name_digest(path)}.lock"
    return path.with_name(name)


def _name_digest(path):
    return hashlib.sha256(path.name.encode()).hexdigest()[:16]


@contextlib.contextmanager
def session_lock(path):
    """Hold the writer lock of a session (a hidden lock file beside it); fail at once if held.

    The lock belongs to the file a symbolic link points to, so writers through the link and
    through the real path exclude each other.
    """
    path = Path(path)
    lock_path = _lock_path(Path(os.path.realpath(path)))
    # thread_local=False: the holder may hand the work to another thread (a progress bar, Dask).
    lock = filelock.FileLock(lock_path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise SessionInUseError(f"{path}: session is in use by another writer (lock {lock_path.name})") from None
    except PermissionError:
        raise InputError(f"{path}: cannot create the lock file in {lock_path.parent} (folder not writable)") from None
    try:
        yield
    finally:
        # Removed while still held, so lock files do not pile up beside sessions; a writer that
        # opened the old file before the unlink sees it unlinked once it gets it, and fails or retries.
        # (Windows removes it on release, and cannot unlink an open file.)
        if os.name != "nt":
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
        lock.release()


# ---------------------------------------------------------------------------------------------
# Dependencies between results


def dependents_of(nwbfile, targets):
    """Results outside ``targets`` (and their children) that depend on any of them.

    A result depends on a target when one of its objects links to the target or a child of it
    (links are followed from the dependent to what it depends on only: pynwb's back-references
    ``timestamp_link`` / ``data_link`` on the linked series are not dependencies), or when its
    ``parameters`` (JSON) name the target (``NAME``, ``processing/M/NAME[/...]``,
    ``intervals/NAME``, ``NAME/layer`` feature sets).

    Returns ``{dependent: set of target names}``; a dependent is the result in a processing module
    that holds the linking object, as ``(module, name)``, or the linking object's path elsewhere
    (``units``, ``intervals/NAME``, ...).
    """
    return {dependent: set(named) for dependent, named in _dependencies(nwbfile, targets).items()}


def _dependencies(nwbfile, targets):
    """:func:`dependents_of`, with how each target is depended on: ``{dependent: {target: "links" | "names"}}``."""
    removed = {}
    for target in targets:
        for obj in (target, *target.all_children()):
            removed[id(obj)] = target.name
    references = {_reference_strings(target): target.name for target in targets}
    found = {}
    for obj in nwbfile.objects.values():
        if id(obj) in removed:
            continue
        for field, value in obj.fields.items():
            if field in BACK_REFERENCE_FIELDS:
                continue
            if isinstance(value, dict):
                value = value.values()
            for item in value if isinstance(value, (list, tuple, set, type({}.values()))) else [value]:
                # a child is owned, not linked: owned objects go with their owner
                if id(item) in removed and getattr(item, "parent", None) is not obj:
                    found.setdefault(_result_of(obj), {})[removed[id(item)]] = "links"
        parameters = obj.fields.get("parameters")
        if isinstance(parameters, str):
            for named in _named_in_parameters(parameters, references):
                found.setdefault(_result_of(obj), {}).setdefault(named, "names")
    return found


def _reference_strings(target):
    """Strings by which ``parameters`` name a result: its name, its path, or paths inside it."""
    try:
        path = where_of(target)
    except ValueError:
        path = target.name
    return (target.name, path)


def _named_in_parameters(parameters, references):
    try:
        values = list(_strings(json.loads(parameters)))
    except ValueError:
        return set()
    named = set()
    for (name, path), target_name in references.items():
        for value in values:
            if value in (name, path) or value.startswith((f"{path}/", f"{name}/")):
                named.add(target_name)
    return named


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _result_of(obj):
    """``(module, name)`` of the processing-module result holding ``obj``, else its path."""
    path = []
    while obj.parent is not None:
        if isinstance(obj.parent, ProcessingModule):
            return (obj.parent.name, obj.name)
        path.append(obj.name)
        obj = obj.parent
    return "/".join(reversed(path))


# ---------------------------------------------------------------------------------------------
# Appending


class SessionAppend:
    """The working copy of a session during :func:`append`; add results with :meth:`add`."""

    def __init__(self, nwbfile, path, replaced, copy_method=None):
        self.nwbfile = nwbfile
        self.path = path
        self.replaced = replaced  # names of the results this append removed first
        self.copy_method = copy_method  # how the working copy was made: reflink, copy_file_range, copy, export

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

    def input(self, where, object_id=None):
        """The result at ``where`` in the working copy, checked to be the one a stage read.

        ``where`` is a path (``processing/M/NAME``, ``M/NAME``, ``NAME`` in processing/mimic,
        ``units``, ``intervals/NAME``) or the object read earlier (its path and ``object_id`` are
        taken from it). Raises InputError when the result is gone or was replaced since it was read
        (``object_id`` differs): link what this returns, never an object looked up again by name.
        """
        if not isinstance(where, str):
            where, object_id = where_of(where), where.object_id
        found = _resolve(self.nwbfile, where)
        if found is None:
            raise StaleInputError(f"{self.path}: input {where} is gone since it was read: rerun")
        obj = _get(self.nwbfile, found)
        if object_id is not None and obj.object_id != object_id:
            raise StaleInputError(f"{self.path}: input {where} changed since it was read: rerun")
        return obj


# The libraries whose versions decide a result's numbers; recorded with every result's parameters.
VERSIONED_LIBRARIES = ("mujoco", "jax", "flax", "optax", "numpy", "scipy", "pynwb", "hdmf", "ndx-pose")


def library_versions():
    """``{distribution: version}`` of :data:`VERSIONED_LIBRARIES` installed (read from their metadata:
    nothing is imported)."""
    versions = {}
    for name in VERSIONED_LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def set_provenance(obj, parameters=None):
    """Fill the provenance attributes a type declares (software, version, JSON parameters, time).

    The parameters are stored with ``library_versions`` added (mujoco, jax, numpy, pynwb, ...), so
    a result says what it was computed with."""
    if parameters is not None:
        parameters = {**parameters, "library_versions": library_versions()}
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


def _check_writable(path):
    # The mode bits state the owner's intent even for root, whom os.access always lets write.
    if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:
        raise InputError(f"{path}: session file is read-only")


def _is_no_space(error):
    """An OSError (or an HDF5 error wrapping one, any class) caused by a full disk or quota."""
    if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "errno = 28," in text or "Disk quota exceeded" in text


def _no_space_error(shown, folder):
    free = shutil.disk_usage(folder).free / 1e6
    return InputError(f"{shown}: no space left on the device of {folder} ({free:.0f} MB free); session unchanged")


@contextlib.contextmanager
def replacing_dependents(enabled=True):
    """Within the block, appends that replace results also replace the results derived from them.

    What ``--replace-dependents`` does for any stage: the stage functions keep their signatures and
    the command line wraps the call (``with replacing_dependents(args.replace_dependents): ...``).
    """
    token = _REPLACE_DEPENDENTS.set(bool(enabled))
    try:
        yield
    finally:
        _REPLACE_DEPENDENTS.reset(token)


@contextlib.contextmanager
def append(path, replace=(), replace_dependents=False, inputs=None, _before_replace=None):
    """Open a session to add results; commit them atomically when the block ends without error.

    ``replace`` names results in ``processing/mimic`` (or ``module/name`` paths, ``units`` for the
    Units table, ``intervals/NAME`` for a time-intervals table) to remove first; results derived
    from them are removed too when ``replace_dependents`` is true, otherwise the replace is refused
    naming them. ``inputs`` (``{path: object_id}``, e.g. from :func:`input_ids`) are the results
    the new ones were computed from: the append is refused, changing nothing, when any of them
    changed since it was read. Yields a :class:`SessionAppend`.

    Inside a :func:`replacing_dependents` block ``replace_dependents`` is true whatever is passed.
    """
    replace_dependents = replace_dependents or _REPLACE_DEPENDENTS.get()
    shown = Path(path)
    check_session_file(shown)
    # A symbolic link: update the file it points to (the link survives).
    target = Path(os.path.realpath(shown))
    _check_writable(target)
    with session_lock(target):
        links = target.stat().st_nlink
        if links > 1:
            raise InputError(
                f"{shown}: the session file has {links} hard links (e.g. publish --files-mode hardlink); an "
                "append replaces the file and would leave the other names on the old one (copy it to a file "
                "of its own first)"
            )
        _remove_stale_copies(target)
        fd, work = tempfile.mkstemp(prefix=work_prefix(target), suffix=".tmp.nwb", dir=target.parent)
        os.close(fd)
        work = Path(work)
        try:
            try:
                replaced, copy_method = _copy_without(target, work, replace, replace_dependents, shown)
                with _working_copy(work, "a") as io:
                    session = SessionAppend(_read_nwbfile(io, shown), shown, replaced, copy_method)
                    for where, object_id in (inputs or {}).items():
                        session.input(where, object_id)
                    yield session
                    io.write(session.nwbfile)
                with builtins.open(work, "rb") as f:
                    os.fsync(f.fileno())
            except (OSError, RuntimeError) as error:  # h5py raises both for a failed write
                if _is_no_space(error):
                    raise _no_space_error(shown, target.parent) from None
                raise
            shutil.copymode(target, work)
            if _before_replace is not None:
                _before_replace()
            os.replace(work, target)
            _fsync_dir(target.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                work.unlink()


@contextlib.contextmanager
def _working_copy(work, mode):
    """An NWBHDF5IO writing the working copy, closed however the block ends.

    The file has no raw-data chunk cache: chunks are written when hdmf writes them, so a full disk
    is an error of that write, never of a flush when a dataset closes (which HDF5 cannot recover
    from: the dataset stays half open and the interpreter crashes at exit). Writers give whole
    arrays or blocks of whole chunks, so the cache would not save any work.
    """
    io = NWBHDF5IO(mode=mode, file=h5py.File(work, mode, rdcc_nbytes=0))
    try:
        yield io
        io.close()
    except BaseException as error:
        if _is_no_space(error):
            # Free the copy's blocks so that the metadata written when the file closes fits.
            os.truncate(work, 0)
        with contextlib.suppress(Exception):
            io.close()
        raise


def work_prefix(path):
    """A short prefix for a working copy's name, ``.mimic-<16 hex digits of sha256(name)>.``

    Fixed length whatever the session's name (a name near 255 bytes must not overflow it); used
    by the append and by ``create`` for the file written before it replaces ``path``.
    """
    return f".mimic-{_name_digest(path)}."


def _remove_stale_copies(path):
    """Working copies left by writers that crashed (only called while holding the lock)."""
    patterns = [f"{work_prefix(path)}*.tmp.nwb"]
    if len(path.name.encode()) < _NAME_MAX - 20:
        patterns.append(f".{path.name}.*.tmp.nwb")  # named by mimic_nwb 0.1
    for pattern in patterns:
        for stale in path.parent.glob(pattern):
            stale.unlink()


def _resolve(nwbfile, name):
    """``(module, name)`` of a result present in the file, else None.

    ``name`` is ``NAME`` (in processing/mimic), ``M/NAME`` or ``processing/M/NAME``, ``units``,
    or ``intervals/NAME``. ``module`` is a processing module's name, ``""`` for the Units table,
    or ``"intervals"`` for a table in ``/intervals``.
    """
    if name == "units":
        return ("", "units") if nwbfile.units is not None else None
    if name.startswith("processing/") and name.count("/") == 2:
        name = name.removeprefix("processing/")
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


def _describe_dependency(dependent, targets):
    shown = dependent if isinstance(dependent, str) else "/".join(dependent)
    linked = sorted(t for t, how in targets.items() if how == "links")
    named = sorted(t for t, how in targets.items() if how == "names")
    parts = [f"links {', '.join(linked)}"] if linked else []
    parts += [f"was computed from {', '.join(named)} (its parameters name it)"] if named else []
    return f"{shown} {' and '.join(parts)}"


def _copy_without(path, work, replace, replace_dependents, shown):
    """Copy the session to ``work``, without the results to replace (exported, so the file shrinks).

    Returns (names of the results removed, how the copy was made).
    """
    with NWBHDF5IO(str(path), "r") as src:
        nwbfile = _read_nwbfile(src, shown)
        found = {r for name in replace if (r := _resolve(nwbfile, name))}
        if found:
            while dependents := _dependencies(nwbfile, [_get(nwbfile, where) for where in found]):
                movable = {d for d in dependents if isinstance(d, tuple)}
                if not replace_dependents or len(movable) < len(dependents):
                    listing = "; ".join(_describe_dependency(d, t) for d, t in dependents.items())
                    names = ", ".join(sorted(n for _, n in found))
                    raise InputError(
                        f"{shown}: cannot replace {names}: {listing} "
                        "(replace those too: replace_dependents / --replace-dependents)"
                    )
                found |= movable
            for where in found:
                _remove(nwbfile, where)
            _check_space(path, work)
            with _working_copy(work, "w") as dst:
                dst.export(src_io=src, nwbfile=nwbfile)
            return tuple(sorted(name for _, name in found)), "export"
    return (), clone_or_copy(path, work)


def clone_or_copy(source, destination):
    """Copy ``source`` over ``destination``, sharing its blocks where the file system can.

    Tries, in order: a reflink clone (``FICLONE``: btrfs, XFS with reflink, bcachefs; instant and
    no extra space until either file changes), ``os.copy_file_range`` (an in-kernel copy; NFS 4.2
    and some others offload it to the server), then a plain copy. Returns the method used:
    ``"reflink"``, ``"copy_file_range"`` or ``"copy"``. A plain copy first checks that the
    folder has room for it.
    """
    source, destination = Path(source), Path(destination)
    if _reflink(source, destination):
        return "reflink"
    size = _check_space(source, destination)
    if _copy_file_range(source, destination, size):
        return "copy_file_range"
    shutil.copyfile(source, destination)
    return "copy"


def _check_space(source, destination):
    """Raise ENOSPC unless ``destination``'s folder has room for a copy of ``source``; its size."""
    size = Path(source).stat().st_size
    if shutil.disk_usage(Path(destination).parent).free < size + (1 << 20):
        raise OSError(errno.ENOSPC, f"No space left on device ({size / 1e6:.0f} MB needed)", str(destination))
    return size


_FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h


def _reflink(source, destination):
    try:
        import fcntl
    except ImportError:  # Windows
        return False
    with builtins.open(source, "rb") as src, builtins.open(destination, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
        except OSError:  # EOPNOTSUPP, EXDEV, EINVAL, ENOTTY: no clone here
            return False
    return True


def _copy_file_range(source, destination, size):
    if not hasattr(os, "copy_file_range"):
        return False
    with builtins.open(source, "rb") as src, builtins.open(destination, "wb") as dst:
        copied = 0
        try:
            while copied < size:
                done = os.copy_file_range(src.fileno(), dst.fileno(), min(size - copied, 1 << 30))
                if done == 0:
                    break
                copied += done
        except OSError as error:
            if copied == 0 and error.errno in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF):
                return False
            raise
    if copied != size:
        raise OSError(errno.EIO, f"copy_file_range copied {copied} of {size} bytes", str(destination))
    return True


def _fsync_dir(folder):
    if os.name == "nt":  # directories cannot be opened (nor need syncing) there
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

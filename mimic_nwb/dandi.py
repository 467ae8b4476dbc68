"""Publish sessions on DANDI and read them back: organize, validate, upload, download, stream.

The work is dandi-cli's: :func:`organize` runs ``dandi.organize.organize`` (DANDI names,
``sub-<subject_id>/sub-<subject_id>_ses-<session_id>_<modalities>.nwb``), :func:`validate` runs
``dandi validate`` with what dandi does not do by itself (it loads the ndx-mimic nwbinspector checks,
and checks that the spec of every namespace a file uses is cached in it), :func:`upload` runs
``dandi.upload.upload`` and :func:`download` runs ``dandi.download.download``. This module adds the
checks that make each failure one clear line (missing API key, invalid file with the validator's
findings, unreachable server, unknown or missing dandiset, path outside the dandiset, interrupted
upload), and :func:`open_remote`, which reads a remote session lazily over HTTP (fsspec): only the
byte ranges that are read are fetched.

The API key is read only from the environment variable dandi-cli uses for the instance
(``DANDI_API_KEY`` for ``dandi``, ``DANDI_SANDBOX_API_KEY`` for ``dandi-sandbox``; for an archive given
by URL, ``<HOST:PORT>_API_KEY`` upper-cased, see :func:`api_key_env_var`). It is never prompted for,
never stored in a keyring or a file, and never logged.

Instances: ``"dandi"``, ``"dandi-sandbox"``, another name dandi-cli knows, or the URL of an archive
(dandi-cli reads its API address from the server's ``/server-info``).
"""

import contextlib
import filecmp
import logging
import os
import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from .errors import InputError
from .session import check_session_file
from .storage import verify_datasets

INSTANCES = ("dandi", "dandi-sandbox")
FILES_MODES = ("copy", "hardlink", "symlink")
UPLOAD_EXISTING = ("refresh", "skip", "overwrite", "force", "error")
DOWNLOAD_EXISTING = ("error", "skip", "overwrite", "overwrite-different", "refresh")
# DANDI names files from these fields; session_id is always written, not only when sessions differ.
REQUIRED_NAME_FIELDS = ("session_id",)
DANDISET_ID = re.compile(r"^\d{6}$")
DEFAULT_BLOCK_SIZE = 256 * 1024  # bytes fetched per HTTP range request by open_remote
PROBE_TIMEOUT_S = 30
STAGING_PREFIX = ".mimic-nwb-organize-"


class DandiError(InputError):
    """A DANDI operation that cannot go on; the message says what to do (exit code 2 from the CLI)."""


class MissingApiKeyError(DandiError):
    """The environment variable holding the instance's API key is not set."""


class ApiKeyRejectedError(DandiError):
    """The archive rejected the API key."""


class UnreachableServerError(DandiError):
    """The archive does not answer."""


class MissingDandisetError(DandiError):
    """No dandiset id was given, or the archive has no dandiset with that id."""


class UploadInterruptedError(DandiError):
    """An upload stopped midway; running it again completes it."""


class InvalidFileError(DandiError):
    """Files that DANDI (or the ndx-mimic checks) would reject; ``findings`` holds the validator's findings."""

    def __init__(self, message, findings):
        super().__init__(message)
        self.findings = findings


# ---- validation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One validator finding about one file.

    ``severity`` is dandi's (ERROR, WARNING, HINT, INFO; ERROR blocks an upload); ``check`` is the id
    dandi gives it, prefixed by its origin: ``DANDI.`` (layout, metadata), ``NWBI.`` (nwbinspector:
    DANDI's checks and the ndx-mimic ones), ``pynwb.`` (schema validation), ``MIMIC.`` (this module).
    """

    path: Path
    severity: str
    check: str
    message: str
    location: str | None = None

    def __str__(self):
        where = f" at {self.location}" if self.location else ""
        return f"{self.severity} {self.check}{where}: {' '.join(self.message.split())}"


@dataclass
class ValidationReport:
    """Findings of :func:`validate`; ``ok`` when none is an error."""

    paths: list
    findings: list = field(default_factory=list)

    @property
    def errors(self):
        return [f for f in self.findings if f.severity in ("ERROR", "CRITICAL")]

    @property
    def ok(self):
        return not self.errors

    def lines(self):
        """One line per finding, errors first."""
        order = {"CRITICAL": 0, "ERROR": 1, "WARNING": 2, "HINT": 3, "INFO": 4}
        return [
            f"{f.path.name}: {f}" for f in sorted(self.findings, key=lambda f: (order.get(f.severity, 5), str(f.path)))
        ]

    def error_message(self):
        """The one-line error for a failed validation: which files, how many errors, the findings."""
        files = sorted({f.path.name for f in self.errors})
        count = len(self.errors)
        details = "; ".join(f"{f}" if len(files) == 1 else f"{f.path.name}: {f}" for f in self.errors[:8])
        more = f"; and {count - 8} more" if count > 8 else ""
        return (
            f"{', '.join(files)}: {count} validation error{'s' if count != 1 else ''}, nothing uploaded: "
            f"{details}{more}"
        )


def missing_cached_namespaces(path):
    """Namespaces that objects of the file use but whose spec is not cached in ``/specifications``.

    DANDI, and anyone reading the file without ndx-mimic installed, can read the extension types only
    from the spec cached in the file (pynwb caches it when writing with ``cache_spec=True``, the default).
    """
    used = set()

    def note(_name, obj):
        namespace = obj.attrs.get("namespace")
        if namespace is not None:
            used.add(namespace.decode() if isinstance(namespace, bytes) else str(namespace))

    with h5py.File(path, "r") as f:
        cached = set(f["specifications"].keys()) if "specifications" in f else set()
        note("/", f)
        f.visititems(note)
    return sorted(used - cached)


def cached_namespace_problems(path):
    """:func:`missing_cached_namespaces` as validation findings."""
    return [
        Finding(
            Path(path),
            "ERROR",
            "MIMIC.SPEC_NOT_CACHED",
            f"the spec of namespace '{namespace}' used by the file is not cached in /specifications: "
            "DANDI cannot read its types; write the file with pynwb's cache_spec=True (the default, "
            "as mimic-nwb does)",
            "/specifications",
        )
        for namespace in missing_cached_namespaces(path)
    ]


def validate(paths):
    """Validate NWB files inside a dandiset folder as DANDI will, with the ndx-mimic checks loaded.

    Runs, per file: the cached-spec check (:func:`cached_namespace_problems`); ``dandi validate``
    (pynwb schema validation, nwbinspector with DANDI's configuration, DANDI layout and naming) with
    the ndx-mimic nwbinspector checks registered first, so that its nwbinspector pass runs them too
    (dandi does not load extension checks by itself); and DANDI's metadata extraction, which an upload
    needs (it fails, for instance, on a species DANDI cannot map to NCBI Taxonomy). Returns a
    :class:`ValidationReport`.
    """
    from dandi.files import dandi_file
    from dandi.misctypes import DUMMY_DANDI_ETAG

    try:
        from dandi.validate._core import validate as dandi_validate  # the import path dandi 0.81 documents
    except ImportError:  # older dandi
        from dandi.validate import validate as dandi_validate

    import ndx_mimic.inspector_checks  # noqa: F401  (registers the ndx-mimic checks with nwbinspector)

    paths = [Path(p).absolute() for p in paths]
    for path in paths:
        check_session_file(path)
    findings = []
    intact = []
    for path in paths:
        findings += cached_namespace_problems(path)
        # Every byte of data read once (chunk checksums, decompression): DANDI's validators read
        # structure and samples only, and would pass a file with a damaged chunk.
        damaged = verify_datasets(path)
        findings += [Finding(path, "ERROR", "MIMIC.DATA_INTEGRITY", problem) for problem in damaged]
        if not damaged:
            intact.append(path)
    if not intact:
        return ValidationReport(paths, _unique(findings))
    for result in dandi_validate(*intact):
        location = next(iter((result.within_asset_paths or {}).values()), None)
        findings.append(
            Finding(
                Path(result.path) if result.path else paths[0],
                result.severity.name if result.severity is not None else "INFO",
                result.id,
                result.message or "",
                location,
            )
        )
    for path in intact:
        try:
            dandi_file(path).get_metadata(digest=DUMMY_DANDI_ETAG, ignore_errors=False)
        except Exception as error:  # dandi raises many kinds here; each means the upload would fail
            findings.append(Finding(path, "ERROR", "DANDI.METADATA_EXTRACTION", f"{type(error).__name__}: {error}"))
    return ValidationReport(paths, _unique(findings))


def _unique(findings):
    """Drop repeated findings (the same message from two validators)."""
    seen, kept = set(), []
    for finding in findings:
        key = (finding.path, finding.check, finding.location, finding.message)
        if key not in seen:
            seen.add(key)
            kept.append(finding)
    return kept


# ---- instances, keys, dandisets ----------------------------------------------------------------


def resolve_instance(instance):
    """The ``dandi.consts.DandiInstance`` for a name (``dandi``, ``dandi-sandbox``, ...) or an archive URL.

    Raises UnreachableServerError when the archive does not answer: one quick request first, so that
    this is reported at once (dandi-cli's own requests retry for minutes).
    """
    from dandi.consts import DandiInstance, known_instances
    from dandi.utils import get_instance

    if isinstance(instance, DandiInstance):
        dandi_instance = instance
    elif isinstance(instance, str) and instance.lower().startswith(("http://", "https://")):
        url = instance.rstrip("/")
        _probe(f"{url}/server-info", url)
        try:
            dandi_instance = get_instance(url)  # reads the API address from the server
        except Exception as error:  # dandi raises RuntimeError, ValueError or its version errors
            raise UnreachableServerError(
                f"--instance {instance}: not a DANDI archive ({_short(error)}); check the URL"
            ) from None
    elif instance in known_instances:
        _probe(known_instances[instance].api.rstrip("/") + "/info/", instance)
        dandi_instance = get_instance(instance)
    else:
        raise InputError(
            f"--instance {instance!r}: unknown DANDI instance; use {', '.join(INSTANCES)} or an archive URL "
            "(https://...)"
        )
    response = _probe(dandi_instance.api.rstrip("/") + "/info/", dandi_instance.name)
    if not response.ok:
        raise UnreachableServerError(
            f"the DANDI archive {dandi_instance.name} answered HTTP {response.status_code} at {response.url}; "
            "try again later or check --instance"
        )
    return dandi_instance


def _probe(url, name):
    import requests

    try:
        return requests.get(url, timeout=PROBE_TIMEOUT_S)
    except requests.RequestException as error:
        raise UnreachableServerError(
            f"cannot reach the DANDI archive {name} ({_reason(error)}); check the network or --instance"
        ) from None


def _client(dandi_instance):
    from dandi.dandiapi import DandiAPIClient

    return DandiAPIClient(dandi_instance=dandi_instance)


def api_key_env_var(instance):
    """The environment variable dandi-cli reads the instance's API key from, e.g. ``DANDI_API_KEY``."""
    with _client(resolve_instance(instance)) as client:
        return client.api_key_env_var


def _require_key_offline(instance):
    """Refuse a missing API key before any network access, where the variable is known offline.

    The variable's name follows from the instance's name (``DANDI_API_KEY`` for ``dandi``), which is
    known without asking the archive for the built-in instances; for an archive given by URL the
    name comes from the server, and :func:`_authenticate` checks the key after the first request.
    """
    from dandi.consts import DandiInstance, known_instances

    if isinstance(instance, DandiInstance):
        name = instance.name
    elif isinstance(instance, str) and instance in known_instances:
        name = known_instances[instance].name
    else:
        return
    variable = f"{name.upper().replace('-', '_')}_API_KEY"  # as DandiAPIClient.api_key_env_var
    if not os.environ.get(variable):
        raise MissingApiKeyError(
            f"no API key for DANDI instance {name}: set the environment variable {variable} "
            "(copy the key from your account on the archive's web site; it is read only from that variable)"
        )


def _authenticate(client):
    """Authenticate with the key from the instance's variable; never prompt, never store it."""
    import requests

    variable = client.api_key_env_var
    key = os.environ.get(variable)
    where = client.dandi_instance.gui or client.dandi_instance.api
    if not key:
        raise MissingApiKeyError(
            f"no API key for DANDI instance {client.dandi_instance.name}: set the environment variable "
            f"{variable} (copy the key from your account at {where}; it is read only from that variable)"
        )
    try:
        client.authenticate(key)  # GET /auth/token: fails at once on a bad key
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            raise ApiKeyRejectedError(
                f"the API key in {variable} was rejected by {client.dandi_instance.name} ({where}); "
                "copy a current key from your account there"
            ) from None
        raise UnreachableServerError(
            f"{client.dandi_instance.name} answered HTTP {status} to the key check: {_short(error)}"
        ) from None


def _check_dandiset_id(dandiset_id):
    if not isinstance(dandiset_id, str) or not DANDISET_ID.match(dandiset_id):
        raise InputError(f"dandiset {dandiset_id!r}: a dandiset id is 6 digits, e.g. 000123")


def _remote_dandiset(client, dandiset_id, version=None):
    from dandi.exceptions import NotFoundError

    _check_dandiset_id(dandiset_id)
    try:
        return client.get_dandiset(dandiset_id, version, lazy=False)
    except NotFoundError:
        where = client.dandi_instance.gui or client.dandi_instance.api
        what = f"dandiset {dandiset_id}" + (f" version {version}" if version else "")
        raise MissingDandisetError(
            f"{what} not found on {client.dandi_instance.name} ({where}): create it there first, or check the id"
        ) from None


def _reason(error):
    """The OS-level reason of a connection error ('Connection refused', 'timed out', ...) when there is one."""
    found = re.findall(r"\[Errno -?\d+\] ([^'\"()]+)", str(error))
    if found:
        return found[-1].strip()
    return "timed out" if "timed out" in str(error).lower() else _short(error)


def _short(error):
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


# ---- organize ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrganizedFile:
    """A session copied (or linked) into the dandiset folder under its DANDI name.

    ``status``: ``added``, ``replaced`` (the name held other content) or ``unchanged`` (already there).
    """

    source: Path
    path: Path
    asset_path: str
    status: str


def _check_source(path):
    check_session_file(path)
    with h5py.File(path, "r") as f:
        subject_id = f.get("general/subject/subject_id")
        value = subject_id[()] if subject_id is not None else None
    if isinstance(value, bytes):
        value = value.decode()
    if not value:
        raise InputError(
            f"{path}: no subject id (/general/subject/subject_id): DANDI names files and folders "
            "sub-<subject_id>; add a Subject with subject_id"
        )
    missing = missing_cached_namespaces(path)
    if missing:
        # Checked first: without the cached spec DANDI cannot read the file's types at all.
        raise InvalidFileError(
            f"{path}: the spec of {', '.join(missing)} is not cached in the file (/specifications), so DANDI "
            "cannot read its types; write it with pynwb's cache_spec=True (the default, as mimic-nwb does)",
            cached_namespace_problems(path),
        )


def _object_id(path):
    with h5py.File(path, "r") as f:
        value = f.attrs.get("object_id")
    return value.decode() if isinstance(value, bytes) else value


@contextlib.contextmanager
def _staged_organize(sessions, dandiset_dir, files_mode="copy", jobs=1):
    """Run dandi's organize into a hidden staging dandiset inside ``dandiset_dir``.

    Yields ``[(source, staged_path, asset_path)]``; the staging folder is removed on exit, so an
    organize that is not committed (bad input, failed validation) leaves the dandiset as it was.
    """
    from dandi.organize import FileOperationMode, OrganizeImpossibleError
    from dandi.organize import organize as dandi_organize

    if files_mode not in FILES_MODES:
        raise InputError(f"files mode {files_mode!r}: use one of {', '.join(FILES_MODES)}")
    sources = [Path(s).absolute() for s in sessions]
    for source in sources:
        _check_source(source)
    try:
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=dandiset_dir))
    except OSError as error:
        raise InputError(f"{dandiset_dir}: cannot write there ({error.strerror})") from None
    try:
        # dandi validate finds the dandiset root by its dandiset.yaml: the staging folder is one.
        shutil.copyfile(Path(dandiset_dir) / "dandiset.yaml", staging / "dandiset.yaml")
        try:
            dandi_organize(
                [str(s) for s in sources],
                dandiset_path=str(staging),
                files_mode=FileOperationMode(files_mode),
                required_fields=list(REQUIRED_NAME_FIELDS),
                jobs=jobs,
            )
        except (ValueError, OrganizeImpossibleError, AssertionError, OSError) as error:
            raise InputError(f"{', '.join(s.name for s in sources)}: dandi organize failed: {_short(error)}") from None
        by_object_id = {_object_id(s): s for s in sources}
        staged = []
        for path in sorted(staging.rglob("*.nwb")):
            asset_path = path.relative_to(staging).as_posix()
            staged.append((by_object_id.get(_object_id(path)), path, asset_path))
        yield staged
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _same_content(a, b):
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    return os.path.getsize(a) == os.path.getsize(b) and filecmp.cmp(a, b, shallow=False)


def _commit(staged, dandiset_dir):
    """Move staged files to their DANDI paths in the dandiset folder."""
    organized = []
    for source, staged_path, asset_path in staged:
        target = Path(dandiset_dir) / asset_path
        if target.exists() or target.is_symlink():
            if _same_content(staged_path, target):
                organized.append(OrganizedFile(source, target, asset_path, "unchanged"))
                continue
            status = "replaced"
        else:
            status = "added"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged_path, target)
        organized.append(OrganizedFile(source, target, asset_path, status))
    return organized


def _local_dandiset(dandiset_dir):
    """The dandiset id in ``dandiset_dir/dandiset.yaml`` (None when there is none)."""
    from dandi.dandiset import Dandiset

    if not (Path(dandiset_dir) / "dandiset.yaml").exists():
        return None
    try:
        return Dandiset(dandiset_dir).identifier
    except Exception as error:
        raise InputError(f"{Path(dandiset_dir) / 'dandiset.yaml'}: unreadable ({_short(error)})") from None


def organize(sessions, dandiset_dir, *, files_mode="copy", jobs=1):
    """Copy (or link) sessions into a dandiset folder under their DANDI names, with dandi's organize.

    ``dandiset_dir`` must hold a ``dandiset.yaml`` (:func:`publish` fetches it). Names are
    ``sub-<subject_id>/sub-<subject_id>_ses-<session_id>_<modalities>.nwb``. A file already in place
    with the same content is left alone. Returns a list of :class:`OrganizedFile`.
    """
    dandiset_dir = Path(dandiset_dir)
    if _local_dandiset(dandiset_dir) is None:
        raise MissingDandisetError(f"{dandiset_dir}: not a dandiset folder (no dandiset.yaml)")
    with _staged_organize(sessions, dandiset_dir, files_mode, jobs) as staged:
        return _commit(staged, dandiset_dir)


# ---- upload ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedAsset:
    """An asset of the draft version as the archive holds it after the upload.

    ``same_as_local`` is false when the archive kept another content at that path (``existing``
    ``skip``, or ``refresh`` with a newer file on the archive).
    """

    asset_path: str
    asset_id: str
    size: int
    same_as_local: bool


def _dandiset_root(paths):
    from dandi.dandiset import Dandiset

    first = paths[0]
    dandiset = Dandiset.find(first.parent)
    if dandiset is None:
        raise InputError(
            f"{first}: not inside a dandiset folder (no dandiset.yaml above it); "
            "organize it first (mimic-nwb publish does)"
        )
    root = Path(dandiset.path).absolute()
    for path in paths:
        if not path.is_relative_to(root) or any(part.startswith(".") for part in path.relative_to(root).parts):
            raise InputError(f"{path}: outside the dandiset folder {root}")
    return root, dandiset.identifier


def upload(paths, *, instance="dandi", existing="refresh", validation=True, jobs=None):
    """Upload organized files of a local dandiset folder to the draft version, with dandi-cli.

    ``existing`` is dandi's policy for assets already on the archive (``refresh``: upload when the
    content differs and the local file is newer). An interrupted upload is completed by calling this
    again: uploaded blobs are reused by the archive, nothing is duplicated. ``validation`` runs
    :func:`validate` first and refuses files with errors. Returns the archive's :class:`UploadedAsset`\\ s.
    """
    import requests
    from dandi.exceptions import UploadError
    from dandi.upload import UploadExisting, UploadValidation
    from dandi.upload import upload as dandi_upload

    if existing not in UPLOAD_EXISTING:
        raise InputError(f"existing {existing!r}: use one of {', '.join(UPLOAD_EXISTING)}")
    paths = [Path(p).absolute() for p in paths]
    if not paths:
        raise InputError("no files to upload")
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    root, dandiset_id = _dandiset_root(paths)
    _check_dandiset_id(dandiset_id)
    _require_key_offline(instance)
    dandi_instance = resolve_instance(instance)
    with _client(dandi_instance) as client:
        _authenticate(client)
        _remote_dandiset(client, dandiset_id)
    if validation:
        report = validate(paths)
        if not report.ok:
            raise InvalidFileError(report.error_message(), report.findings)
    asset_paths = [p.relative_to(root).as_posix() for p in paths]
    resume = "run the same command again to finish it (uploaded files are skipped, nothing is duplicated)"
    try:
        # Validation was just done (above or by publish): dandi's own pass would only repeat it.
        dandi_upload(
            [str(p) for p in paths],
            existing=UploadExisting(existing),
            validation=UploadValidation.SKIP,
            dandi_instance=dandi_instance,
            jobs=jobs,
        )
    except requests.ConnectionError as error:
        raise UploadInterruptedError(
            f"upload to dandiset {dandiset_id} on {dandi_instance.name} interrupted: the archive stopped "
            f"answering ({_reason(error)}); {resume}"
        ) from None
    except (requests.HTTPError, UploadError, RuntimeError, ValueError, OSError) as error:
        raise UploadInterruptedError(
            f"upload to dandiset {dandiset_id} on {dandi_instance.name} stopped: {_short(error)}; {resume}"
        ) from None
    return _assets_at(dandi_instance, dandiset_id, dict(zip(asset_paths, paths)))


def _assets_at(dandi_instance, dandiset_id, local_files):
    """What the draft version now holds at these asset paths, compared with the local files."""
    from dandi.exceptions import NotFoundError
    from dandi.support.digests import get_digest

    with _client(dandi_instance) as client:
        remote = _remote_dandiset(client, dandiset_id, "draft")
        assets = []
        for asset_path, local in local_files.items():
            try:
                asset = remote.get_asset_by_path(asset_path)
            except NotFoundError:
                raise UploadInterruptedError(
                    f"{asset_path}: not on dandiset {dandiset_id} after the upload; run it again"
                ) from None
            remote_etag = asset.get_raw_metadata().get("digest", {}).get("dandi:dandi-etag")
            same = remote_etag == get_digest(local, "dandi-etag")
            assets.append(UploadedAsset(asset.path, asset.identifier, asset.size, same))
        return assets


# ---- publish -----------------------------------------------------------------------------------


@dataclass
class PublishResult:
    dandiset_id: str
    dandiset_dir: Path
    organized: list
    report: ValidationReport
    uploaded: list

    def summary(self):
        lines = [f"dandiset {self.dandiset_id} in {self.dandiset_dir}"]
        lines += [f"  {o.source.name if o.source else '?'} -> {o.asset_path} ({o.status})" for o in self.organized]
        warnings = [line for line in self.report.lines()]
        lines.append(f"validation: no errors, {len(warnings)} other finding(s)")
        lines += [f"  {line}" for line in warnings]
        if self.uploaded:
            lines.append(f"on the draft version now: {len(self.uploaded)} asset(s)")
            lines += [
                f"  {a.asset_path} ({a.size} bytes, asset {a.asset_id})"
                + ("" if a.same_as_local else ": the archive keeps a different file there (see --existing)")
                for a in self.uploaded
            ]
        else:
            lines.append("not uploaded (validation only)")
        return "\n".join(lines)


def publish(
    sessions,
    dandiset_id=None,
    *,
    instance="dandi",
    dandiset_dir=None,
    files_mode="copy",
    existing="refresh",
    upload_files=True,
    jobs=None,
):
    """Organize sessions into a dandiset folder, validate them, and upload them to a DANDI instance.

    ``dandiset_dir`` defaults to ``./<dandiset_id>``; when it has no ``dandiset.yaml`` yet, the
    dandiset's metadata is fetched from the archive (the dandiset must exist there: create it on the
    web site). Files with validation errors stop everything before the upload, and the dandiset folder
    is left as it was. With ``upload_files=False`` it only organizes and validates (no API key needed).
    Running it again after an interruption completes the upload without duplicates.
    Returns a :class:`PublishResult`.
    """
    from dandi.dandiset import Dandiset

    sessions = [Path(s) for s in sessions]
    if not sessions:
        raise InputError("no session files given")
    for session in sessions:
        _check_source(session)
    if dandiset_id is not None:
        _check_dandiset_id(dandiset_id)
    if dandiset_dir is None:
        if dandiset_id is None:
            raise MissingDandisetError(
                "no dandiset id: pass the id of a dandiset created on the archive (--dandiset 000123), "
                "or the folder of one with its dandiset.yaml (--dandiset-dir)"
            )
        dandiset_dir = Path(dandiset_id)
    dandiset_dir = Path(dandiset_dir).absolute()
    if dandiset_dir.exists() and not dandiset_dir.is_dir():
        raise InputError(f"{dandiset_dir}: not a folder")
    local_id = _local_dandiset(dandiset_dir)
    if local_id is not None and dandiset_id is not None and local_id != dandiset_id:
        raise InputError(f"{dandiset_dir}: holds dandiset {local_id}, not {dandiset_id}")
    if local_id is None and dandiset_id is None:
        raise MissingDandisetError(
            f"{dandiset_dir}: no dandiset.yaml and no dandiset id: pass --dandiset with the id of a dandiset "
            "created on the archive"
        )
    dandiset_id = dandiset_id or local_id

    dandi_instance = None
    if upload_files:
        _require_key_offline(instance)  # a missing key is reported before the network is
    if upload_files or local_id is None:
        dandi_instance = resolve_instance(instance)
        with _client(dandi_instance) as client:
            if upload_files:
                _authenticate(client)
            remote = _remote_dandiset(client, dandiset_id)
            metadata = remote.get_raw_metadata() if local_id is None else None

    created = not dandiset_dir.exists()
    try:
        if local_id is None:
            dandiset_dir.mkdir(parents=True, exist_ok=True)
            Dandiset(dandiset_dir, allow_empty=True).update_metadata(metadata)  # dandi's dandiset.yaml
        with _staged_organize(sessions, dandiset_dir, files_mode, jobs or 1) as staged:
            report = validate([path for _, path, _ in staged])
            # Findings name the files the user gave, not the staging copies.
            sources = {path: source for source, path, _ in staged}
            report = ValidationReport(
                [sources.get(p, p) for p in report.paths],
                [_with_path(f, sources.get(f.path, f.path)) for f in report.findings],
            )
            if not report.ok:
                raise InvalidFileError(report.error_message(), report.findings)
            organized = _commit(staged, dandiset_dir)
    except BaseException:  # bad input or an interrupt: leave the disk as it was
        if created:
            shutil.rmtree(dandiset_dir, ignore_errors=True)
        elif local_id is None:
            (dandiset_dir / "dandiset.yaml").unlink(missing_ok=True)
        raise
    uploaded = []
    if upload_files:
        uploaded = upload(
            [o.path for o in organized], instance=dandi_instance, existing=existing, validation=False, jobs=jobs
        )
    return PublishResult(dandiset_id, dandiset_dir, organized, report, uploaded)


def _with_path(finding, path):
    return Finding(path, finding.severity, finding.check, finding.message, finding.location)


# ---- download ----------------------------------------------------------------------------------


def _asset_path(path):
    """A normalized asset path; InputError when it would leave the dandiset."""
    normalized = posixpath.normpath(path.replace("\\", "/")) if path else ""
    if not path or path.startswith("/") or normalized == ".." or normalized.startswith("../"):
        raise InputError(f"{path!r}: outside the dandiset (asset paths are relative, e.g. sub-rat01/<file>.nwb)")
    if any(c in normalized for c in "?#&"):
        raise InputError(f"{path!r}: asset paths cannot contain ?, # or &")
    return normalized


@contextlib.contextmanager
def _dandi_error_messages():
    """Collect the messages dandi logs at ERROR level (dandi's download reports failures only there)."""
    messages = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect(level=logging.ERROR)
    logger = logging.getLogger("dandi")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def download(dandiset_id, output_dir=".", *, path=None, instance="dandi", version=None, existing="error", jobs=1):
    """Download a dandiset, a folder of it or one asset, with dandi-cli (checksums verified by dandi).

    A whole dandiset goes to ``output_dir/<dandiset_id>/`` (with its ``dandiset.yaml``); one asset to
    ``output_dir/<file name>``; a folder (``path`` ending in ``/`` or naming a folder) to
    ``output_dir/<folder>/``. ``version`` defaults to the latest published version, else the draft.
    ``existing``: dandi's policy for files already there (``error``, ``skip``, ``overwrite``,
    ``overwrite-different``, ``refresh``). Returns the local paths of the assets.
    """
    from dandi.dandiarchive import multiasset_target
    from dandi.download import DownloadExisting
    from dandi.download import download as dandi_download
    from dandi.exceptions import NotFoundError

    _check_dandiset_id(dandiset_id)
    if existing not in DOWNLOAD_EXISTING:
        raise InputError(f"existing {existing!r}: use one of {', '.join(DOWNLOAD_EXISTING)}")
    asset_path = _asset_path(path) if path is not None else None
    output_dir = Path(output_dir).absolute()
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir}: not a folder")
    dandi_instance = resolve_instance(instance)
    with _client(dandi_instance) as client:
        remote = _remote_dandiset(client, dandiset_id, version)
        version_id = remote.version_id
        base = f"{dandi_instance.api.rstrip('/')}/dandisets/{dandiset_id}/versions/{version_id}"
        if path is None:
            url = f"{base}/"
            assets = list(remote.get_assets())
            targets = [output_dir / dandiset_id / a.path for a in assets]
        else:
            try:
                assets = [remote.get_asset_by_path(asset_path)]
            except NotFoundError:
                folder = asset_path.rstrip("/") + "/"
                assets = list(remote.get_assets_with_path_prefix(folder))
                if not assets:
                    raise InputError(
                        f"{path}: no such asset or folder in dandiset {dandiset_id} (version {version_id})"
                    ) from None
                asset_path = folder
            url = f"{base}/assets/?path={asset_path}"
            targets = [output_dir / multiasset_target(asset_path, a.path) for a in assets]
    if existing == "error":
        for target in targets:
            if target.exists():
                raise InputError(f"{target}: already exists; pass --existing skip, refresh or overwrite")
    output_dir.mkdir(parents=True, exist_ok=True)
    import requests

    try:
        with _dandi_error_messages() as errors:
            dandi_download(url, output_dir, existing=DownloadExisting(existing), jobs=jobs)
    except requests.ConnectionError as error:
        raise UnreachableServerError(
            f"download from {dandi_instance.name} interrupted ({_reason(error)}); run it again with "
            "--existing refresh to resume"
        ) from None
    except (RuntimeError, requests.HTTPError, NotFoundError, OSError) as error:
        detail = "; ".join(errors[-3:]) or str(error)
        raise DandiError(f"download of dandiset {dandiset_id} failed: {_short(detail)}") from None
    return targets


# ---- streaming ---------------------------------------------------------------------------------


def asset_url(dandiset_id, path, *, instance="dandi", version=None):
    """The URL of an asset's content (the object-store URL the archive redirects to), for streaming."""
    from dandi.exceptions import NotFoundError

    asset_path = _asset_path(path)
    dandi_instance = resolve_instance(instance)
    with _client(dandi_instance) as client:
        remote = _remote_dandiset(client, dandiset_id, version)
        try:
            asset = remote.get_asset_by_path(asset_path)
        except NotFoundError:
            raise InputError(f"{path}: no such asset in dandiset {dandiset_id} (version {remote.version_id})") from None
        return asset.get_content_url(follow_redirects=1, strip_query=True)


@contextlib.contextmanager
def open_remote(source, *, dandiset_id=None, instance="dandi", version=None, block_size=DEFAULT_BLOCK_SIZE):
    """Open a remote session lazily: ``with open_remote(url) as nwbfile: ...``.

    ``source`` is an http(s) URL of an NWB file, or an asset path of ``dandiset_id`` on ``instance``.
    Yields the same NWBFile a local read gives; data are read over HTTP range requests of
    ``block_size`` bytes (cached), only where they are accessed: ``series.data[1000:1100]`` fetches
    only the blocks holding those rows (and the file's metadata).
    """
    import fsspec
    from pynwb import NWBHDF5IO

    import ndx_mimic  # noqa: F401  (registers the types the file holds)

    if isinstance(source, str) and source.lower().startswith(("http://", "https://")):
        if dandiset_id is not None:
            raise InputError(f"{source}: give either a URL or an asset path with a dandiset id, not both")
        url = source
    else:
        if dandiset_id is None:
            raise InputError(f"{source}: not an http(s) URL; give dandiset_id to open an asset path of a dandiset")
        url = asset_url(dandiset_id, str(source), instance=instance, version=version)
    filesystem = fsspec.filesystem("http")
    try:
        remote_file = filesystem.open(url, "rb", block_size=block_size, cache_type="blockcache")
    except FileNotFoundError:
        raise InputError(f"{url}: not found (HTTP 404)") from None
    except Exception as error:  # aiohttp's connection errors are not OSErrors
        raise UnreachableServerError(f"{url}: cannot be read ({type(error).__name__}: {_short(error)})") from None
    with remote_file:
        try:
            h5file = h5py.File(remote_file, "r")
        except OSError as error:
            raise InputError(f"{url}: not an HDF5 file ({_short(error)})") from None
        with h5file:
            if "nwb_version" not in h5file.attrs:
                raise InputError(f"{url}: an HDF5 file but not NWB (no nwb_version attribute)")
            with NWBHDF5IO(file=h5file, mode="r") as io:
                yield io.read()

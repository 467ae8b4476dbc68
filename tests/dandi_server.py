"""A local stand-in for the DANDI Archive, so that the real dandi-cli runs end to end without internet.

Written against **dandi-cli 0.81.0** (``DANDI_CLI_VERSION``; ``test_dandi.py`` skips when another
version is installed) and dandischema 0.14 (schema version 0.8.0), from reading the client's source:
``dandi/utils.py`` (``get_instance``), ``dandi/dandiapi.py``, ``dandi/files/bases.py``
(``LocalFileAsset.iter_upload``), ``dandi/upload.py``, ``dandi/download.py`` and
``dandi/dandiarchive.py``. It serves only 127.0.0.1, on an ephemeral port, and keeps everything in
memory. It is a test double: no permissions beyond one API key, no asynchronous validation (versions
are always ``Valid``), no publishing, no Zarr, no embargo.

Endpoints (``API`` is ``http://127.0.0.1:PORT/api``), with the dandi-cli code that calls each:

- ``GET /server-info`` and ``GET API/info/``: ``dandi.utils.get_instance(URL)`` (how ``-i URL`` finds the
  API), ``DandiAPIClient.check_schema_version``
- ``GET API/auth/token/``: ``DandiAPIClient.authenticate`` (checks the key; 401 when wrong)
- ``GET|POST API/dandisets/``: ``get_dandisets``, ``create_dandiset``
- ``GET API/dandisets/{id}/``: ``RemoteDandiset._get_data``
- ``GET API/dandisets/{id}/versions/``: ``get_versions``
- ``GET API/dandisets/{id}/versions/{v}/``: ``get_raw_metadata`` (what ``dandiset.yaml`` holds)
- ``GET API/dandisets/{id}/versions/{v}/info/``: ``get_version``
- ``GET API/dandisets/{id}/versions/{v}/assets/?path=&glob=&order=&page=&page_size=``: ``get_assets``,
  ``get_assets_with_path_prefix``, ``get_asset_by_path`` (DRF pagination: count/next/previous/results)
- ``POST API/dandisets/{id}/versions/draft/assets/``: ``LocalFileAsset.iter_upload`` (asset from a blob;
  409 when the path is taken)
- ``GET|PUT|DELETE API/dandisets/{id}/versions/{v}/assets/{asset_id}/``: asset metadata, replace
  (``--existing force``/``overwrite``), delete (``--sync``)
- ``GET API/dandisets/{id}/versions/{v}/assets/{asset_id}/info/``: ``RemoteDandiset.get_asset``
- ``GET|HEAD API/dandisets/{id}/versions/{v}/assets/{asset_id}/download/`` and
  ``GET|HEAD API/assets/{asset_id}/download/``: downloads (302 to the blob, as the archive redirects to S3)
- ``GET API/assets/{asset_id}/`` and ``.../info/``: ``BaseRemoteAsset``
- ``POST API/uploads/initialize/``: ``iter_upload``: the parts with their presigned URLs, or 409 with
  ``Location: <blob_id>`` when a blob with that dandi-etag exists
- ``PUT /s3/uploads/{upload_id}/parts/{n}`` (the presigned part URL): ``_upload_blob_part``; answers the
  part's md5 as ``ETag``
- ``POST API/uploads/{upload_id}/complete/``: ``iter_upload``: returns ``complete_url`` and its body
- ``POST /s3/uploads/{upload_id}/complete`` (the presigned complete URL): S3's XML with the final ETag
- ``POST API/uploads/{upload_id}/validate/``: checks size and dandi-etag, returns the ``blob_id``
- ``GET|HEAD /s3/blobs/{blob_id}`` (the object store): downloads and streaming, with ``Range``

Blobs are deduplicated by dandi-etag as on the real archive, which is what makes an interrupted upload
resumable without duplicates. Reads are public; writes need ``Authorization: token <api_key>``.
``fail_next(method, path_regex, status)`` makes the next matching request fail once (a simulated
interruption). ``RangeFileServer`` serves a folder of files with ``Range`` support and counts the bytes
it sends (``http.server.SimpleHTTPRequestHandler`` has no ``Range``), for streaming tests.
"""

import hashlib
import json
import posixpath
import re
import threading
import uuid
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from dandischema.digests.dandietag import PartGenerator
from dandischema.models import get_schema_version

DANDI_CLI_VERSION = "0.81.0"
API_KEY = "mimic-test-key-0123456789abcdef"
LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 10


def _now():
    return datetime.now(timezone.utc).isoformat()


class HttpError(Exception):
    def __init__(self, status, detail, headers=None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def _byte_range(header, size):
    """(start, stop) from a ``Range: bytes=...`` header (None: whole file); HttpError 416 if unsatisfiable."""
    if not header:
        return None
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not match or match.groups() == ("", ""):
        raise HttpError(416, f"unsupported range {header!r}", {"Content-Range": f"bytes */{size}"})
    first, last = match.groups()
    if first == "":  # suffix: the last N bytes
        start, stop = max(size - int(last), 0), size
    else:
        start, stop = int(first), size if last == "" else min(int(last) + 1, size)
    if start >= size or start >= stop:
        raise HttpError(416, f"range {header!r} outside {size} bytes", {"Content-Range": f"bytes */{size}"})
    return start, stop


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as requests and aiohttp expect
    timeout = 10  # an idle or stuck connection ends instead of holding a thread forever

    def log_message(self, format, *args):  # quiet: tests read ``server.requests`` instead
        pass

    def _body(self):
        return self._request_body

    def _send(self, status, body=b"", content_type="application/json", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return len(body) if self.command != "HEAD" else 0

    def send_data(self, data, etag=None):
        """Send bytes with ``Range`` support (200, 206 or 416); returns the number of body bytes sent."""
        headers = {"Accept-Ranges": "bytes"}
        if etag:
            headers["ETag"] = f'"{etag}"'
        window = _byte_range(self.headers.get("Range"), len(data))
        if window is None:
            return self._send(200, data, "application/octet-stream", headers)
        start, stop = window
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
        return self._send(206, data[start:stop], "application/octet-stream", headers)

    def _dispatch(self):
        # Read the whole body first, so that an early error answer leaves the keep-alive connection clean.
        length = int(self.headers.get("Content-Length") or 0)
        self._request_body = self.rfile.read(length) if length else b""
        try:
            self.server.owner.handle(self)
        except HttpError as error:
            self._send(error.status, json.dumps({"detail": error.detail}).encode(), headers=error.headers)
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1:ephemeral, started in a daemon thread; a context manager."""

    def __init__(self):
        self.lock = threading.RLock()
        self.requests = []  # (method, path) of every request, in order
        self.bytes_sent = 0  # body bytes of file/blob responses
        self._httpd = None
        self._thread = None

    @property
    def root_url(self):
        return f"http://{LOOPBACK}:{self._httpd.server_address[1]}"

    def start(self):
        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), _Handler)
        self._httpd.owner = self
        started = threading.Event()

        def serve():
            started.set()
            self._httpd.serve_forever(poll_interval=0.05)

        self._thread = threading.Thread(target=serve, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not started.wait(START_TIMEOUT_S):
            raise RuntimeError(f"{type(self).__name__} did not start within {START_TIMEOUT_S} s")
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(START_TIMEOUT_S)
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def handle(self, handler):
        raise NotImplementedError


class RangeFileServer(_Server):
    """Serves the files of one folder at ``/<name>`` (GET/HEAD, ``Range``); counts the bytes sent."""

    def __init__(self, folder):
        super().__init__()
        self.folder = Path(folder)

    def url(self, name):
        return f"{self.root_url}/{name}"

    def handle(self, handler):
        path = urlsplit(handler.path).path
        with self.lock:
            self.requests.append((handler.command, path))
        name = path.lstrip("/")
        if handler.command not in ("GET", "HEAD"):
            raise HttpError(405, "read-only")
        if "/" in name or name in ("", ".", "..") or not (self.folder / name).is_file():
            raise HttpError(404, f"no file {name!r}")
        sent = handler.send_data((self.folder / name).read_bytes())
        with self.lock:
            self.bytes_sent += sent


class FakeDandiArchive(_Server):
    """The DANDI REST endpoints dandi-cli 0.81.0 uses for upload and download (see the module docstring).

    ``with FakeDandiArchive() as archive:`` starts it; ``archive.url`` is the instance URL to give
    dandi-cli (``dandi upload -i URL``, ``DandiAPIClient(api_url=archive.api_url)``);
    ``archive.create_dandiset(name)`` returns a new dandiset id; ``archive.assets(id)`` and
    ``archive.blobs`` show what was stored.
    """

    PAGE_SIZE = 100

    def __init__(self, api_key=API_KEY):
        super().__init__()
        self.api_key = api_key
        self.dandisets = {}  # id -> {"name", "metadata", "created", "modified", "assets": {asset_id: asset}}
        self.blobs = {}  # blob_id -> {"data", "etag", "sha256"}
        self.uploads = {}  # upload_id -> {"size", "etag", "dandiset", "parts": {n: bytes}, "assembled"}
        self._failures = []  # [method, compiled regex, status]
        self._next_dandiset = 1

    # ---- test helpers -------------------------------------------------------------------------

    @property
    def url(self):
        """The instance URL (what ``dandi -i`` takes); dandi-cli finds the API from /server-info."""
        return self.root_url

    @property
    def api_url(self):
        return f"{self.root_url}/api"

    @property
    def instance_name(self):
        """The instance name dandi-cli derives for this server (``host:port``): its API key variable
        is ``<NAME>_API_KEY`` upper-cased, e.g. ``127.0.0.1:8123_API_KEY``."""
        return f"{LOOPBACK}:{self._httpd.server_address[1]}"

    def create_dandiset(self, name="MIMIC test dandiset", identifier=None):
        with self.lock:
            if identifier is None:
                while f"{self._next_dandiset:06d}" in self.dandisets:
                    self._next_dandiset += 1
                identifier = f"{self._next_dandiset:06d}"
            now = _now()
            self.dandisets[identifier] = {"name": name, "created": now, "modified": now, "assets": {}}
            return identifier

    def assets(self, dandiset_id):
        """The draft assets of a dandiset: ``{path: {"asset_id", "blob", "size", "metadata"}}``."""
        with self.lock:
            return {a["path"]: dict(a) for a in self.dandisets[dandiset_id]["assets"].values()}

    def blob_bytes(self, blob_id):
        return self.blobs[blob_id]["data"]

    def fail_next(self, method, path_regex, status=400, times=1):
        """Answer the next ``times`` requests matching ``method`` and ``path_regex`` with ``status``.

        Use a status dandi-cli does not retry (not 429/500/502/503/504) to interrupt it at once.
        """
        with self.lock:
            self._failures.append([method, re.compile(path_regex), status, times])

    # ---- dispatch -----------------------------------------------------------------------------

    def handle(self, handler):
        split = urlsplit(handler.path)
        path, query = split.path, {k: v[-1] for k, v in parse_qs(split.query).items()}
        method = handler.command
        with self.lock:
            self.requests.append((method, path))
            for failure in self._failures:
                if failure[0] == method and failure[1].search(path) and failure[3] > 0:
                    failure[3] -= 1
                    raise HttpError(failure[2], f"simulated failure of {method} {path}")
        for route_method, pattern, action in self._routes():
            match = re.fullmatch(pattern, path)
            if match and method in route_method.split("|"):
                return action(handler, query, **match.groupdict())
        if any(re.fullmatch(pattern, path) for _, pattern, _ in self._routes()):
            raise HttpError(405, f"{method} not allowed on {path}")
        raise HttpError(404, f"not found: {path}")

    def _routes(self):
        ds = r"/api/dandisets/(?P<dandiset_id>\d{6})"
        version = ds + r"/versions/(?P<version>draft|\d+\.\d+\.\d+)"
        asset = version + r"/assets/(?P<asset_id>[0-9a-f-]{36})"
        return [
            ("GET", r"/server-info/?", self._server_info),
            ("GET", r"/api/info/?", self._server_info),
            ("GET", r"/api/auth/token/?", self._auth_token),
            ("GET", r"/api/dandisets/?", self._list_dandisets),
            ("POST", r"/api/dandisets/?", self._create_dandiset),
            ("GET", ds + "/", self._get_dandiset),
            ("GET", ds + "/versions/", self._list_versions),
            ("GET", version + "/", self._version_metadata),
            ("GET", version + "/info/", self._version_info),
            ("GET", version + "/assets/", self._list_assets),
            ("POST", version + "/assets/", self._create_asset),
            ("GET", asset + "/", self._asset_metadata),
            ("PUT", asset + "/", self._replace_asset),
            ("DELETE", asset + "/", self._delete_asset),
            ("GET", asset + "/info/", self._asset_info),
            ("GET|HEAD", asset + "/download/", self._asset_download),
            ("GET", r"/api/assets/(?P<asset_id>[0-9a-f-]{36})/", self._asset_metadata),
            ("GET", r"/api/assets/(?P<asset_id>[0-9a-f-]{36})/info/", self._asset_info),
            ("GET|HEAD", r"/api/assets/(?P<asset_id>[0-9a-f-]{36})/download/", self._asset_download),
            ("POST", r"/api/uploads/initialize/", self._upload_initialize),
            ("PUT", r"/s3/uploads/(?P<upload_id>[0-9a-f-]{36})/parts/(?P<part>\d+)", self._upload_part),
            ("POST", r"/api/uploads/(?P<upload_id>[0-9a-f-]{36})/complete/", self._upload_complete),
            ("POST", r"/s3/uploads/(?P<upload_id>[0-9a-f-]{36})/complete", self._s3_complete),
            ("POST", r"/api/uploads/(?P<upload_id>[0-9a-f-]{36})/validate/", self._upload_validate),
            ("GET|HEAD", r"/s3/blobs/(?P<blob_id>[0-9a-f-]{36})", self._blob),
        ]

    # ---- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _json(handler, value, status=200, headers=None):
        handler._send(status, json.dumps(value).encode(), headers=headers)

    @staticmethod
    def _payload(handler):
        body = handler._body()
        try:
            return json.loads(body or b"{}")
        except ValueError:
            raise HttpError(400, "body is not JSON") from None

    def _require_auth(self, handler):
        header = handler.headers.get("Authorization")
        if header is None:
            raise HttpError(401, "Authentication credentials were not provided.")
        if header != f"token {self.api_key}":
            raise HttpError(401, "Invalid token.")

    def _dandiset(self, dandiset_id):
        if dandiset_id not in self.dandisets:
            raise HttpError(404, "Not found.")
        return self.dandisets[dandiset_id]

    def _check_version(self, version):
        if version != "draft":  # nothing is ever published here
            raise HttpError(404, "Not found.")

    def _version_data(self, dandiset_id):
        d = self.dandisets[dandiset_id]
        assets = d["assets"].values()
        return {
            "version": "draft",
            "name": d["name"],
            "asset_count": len(assets),
            "size": sum(a["size"] for a in assets),
            "created": d["created"],
            "modified": d["modified"],
            "status": "Valid",
        }

    def _dandiset_data(self, dandiset_id):
        d = self.dandisets[dandiset_id]
        return {
            "identifier": dandiset_id,
            "created": d["created"],
            "modified": d["modified"],
            "contact_person": "Doe, Jane",
            "embargo_status": "OPEN",
            "most_recent_published_version": None,
            "draft_version": self._version_data(dandiset_id),
        }

    def _page(self, handler, query, items):
        """DRF-style page (``count``/``next``/``previous``/``results``) honouring ``page``/``page_size``."""
        page, size = int(query.get("page", 1)), int(query.get("page_size", self.PAGE_SIZE))
        results = items[(page - 1) * size : page * size]

        def link(number):
            params = {k: v for k, v in query.items() if k != "page"}
            params["page"] = str(number)
            return f"{self.root_url}{urlsplit(handler.path).path}?{urlencode(params)}"

        return {
            "count": len(items),
            "next": link(page + 1) if page * size < len(items) else None,
            "previous": link(page - 1) if page > 1 else None,
            "results": results,
        }

    def _asset_row(self, a):
        return {k: a[k] for k in ("asset_id", "blob", "zarr", "path", "size", "created", "modified")}

    def _find_asset(self, asset_id, dandiset_id=None):
        sets = [self._dandiset(dandiset_id)] if dandiset_id else self.dandisets.values()
        for d in sets:
            if asset_id in d["assets"]:
                return d["assets"][asset_id]
        raise HttpError(404, "Not found.")

    def _blob_url(self, blob_id):
        return f"{self.root_url}/s3/blobs/{blob_id}"

    # ---- server info and auth ------------------------------------------------------------------

    def _server_info(self, handler, query):
        self._json(
            handler,
            {
                "schema_version": get_schema_version(),
                "schema_url": "",
                "version": "0.0.0-fake",
                "cli-minimal-version": "0.60.0",
                "cli-bad-versions": [],
                "services": {
                    "api": {"url": self.api_url},
                    "webui": {"url": self.root_url},
                    "jupyterhub": {"url": self.root_url},
                },
            },
        )

    def _auth_token(self, handler, query):
        self._require_auth(handler)
        handler._send(200)  # empty body: the client only checks the status

    # ---- dandisets and versions ----------------------------------------------------------------

    def _list_dandisets(self, handler, query):
        with self.lock:
            rows = [self._dandiset_data(i) for i in sorted(self.dandisets)]
        self._json(handler, self._page(handler, query, rows))

    def _create_dandiset(self, handler, query):
        self._require_auth(handler)
        payload = self._payload(handler)
        identifier = self.create_dandiset(payload.get("name") or "untitled")
        with self.lock:
            self._json(handler, self._dandiset_data(identifier))

    def _get_dandiset(self, handler, query, dandiset_id):
        with self.lock:
            self._dandiset(dandiset_id)
            self._json(handler, self._dandiset_data(dandiset_id))

    def _list_versions(self, handler, query, dandiset_id):
        with self.lock:
            self._dandiset(dandiset_id)
            self._json(handler, self._page(handler, query, [self._version_data(dandiset_id)]))

    def _version_metadata(self, handler, query, dandiset_id, version):
        with self.lock:
            d = self._dandiset(dandiset_id)
            self._check_version(version)
            self._json(
                handler,
                {
                    "schemaKey": "Dandiset",
                    "schemaVersion": get_schema_version(),
                    "identifier": f"DANDI:{dandiset_id}",
                    "id": f"DANDI:{dandiset_id}/draft",
                    "name": d["name"],
                    "description": "A dandiset on the local test server of mimic-nwb.",
                    "version": "draft",
                    "url": f"{self.root_url}/dandiset/{dandiset_id}/draft",
                    "license": ["spdx:CC-BY-4.0"],
                    "contributor": [{"schemaKey": "Person", "name": "Doe, Jane", "roleName": ["dcite:ContactPerson"]}],
                },
            )

    def _version_info(self, handler, query, dandiset_id, version):
        with self.lock:
            self._dandiset(dandiset_id)
            self._check_version(version)
            info = self._version_data(dandiset_id)
            info.update(asset_validation_errors=[], version_validation_errors=[])
            self._json(handler, info)

    # ---- assets -------------------------------------------------------------------------------

    def _list_assets(self, handler, query, dandiset_id, version):
        with self.lock:
            d = self._dandiset(dandiset_id)
            self._check_version(version)
            assets = list(d["assets"].values())
        if "path" in query:
            assets = [a for a in assets if a["path"].startswith(query["path"])]
        if "glob" in query:
            assets = [a for a in assets if fnmatchcase(a["path"].lower(), query["glob"].lower())]
        order = query.get("order") or "created"
        key = order.lstrip("-")
        if key not in ("created", "modified", "path"):
            raise HttpError(400, f"cannot order by {order!r}")
        assets.sort(key=lambda a: a[key], reverse=order.startswith("-"))
        self._json(handler, self._page(handler, query, [self._asset_row(a) for a in assets]))

    def _new_asset(self, handler, dandiset_id, replacing=None):
        self._require_auth(handler)
        payload = self._payload(handler)
        metadata, blob_id = payload.get("metadata"), payload.get("blob_id")
        if not isinstance(metadata, dict) or not metadata.get("path"):
            raise HttpError(400, "metadata with a path is required")
        path = metadata["path"]
        if path.startswith("/") or posixpath.normpath(path) != path or path.split("/")[0] == "..":
            raise HttpError(400, f"invalid asset path {path!r}")
        with self.lock:
            d = self._dandiset(dandiset_id)
            if blob_id not in self.blobs:
                raise HttpError(400, f"no blob {blob_id!r}")
            others = [a for a in d["assets"].values() if a["path"] == path and a is not replacing]
            if others:
                raise HttpError(409, "An asset with this path already exists.")
            if replacing is not None:
                del d["assets"][replacing["asset_id"]]
            blob = self.blobs[blob_id]
            asset_id, now = str(uuid.uuid4()), _now()
            metadata = dict(metadata)
            metadata.update(
                id=f"dandiasset:{asset_id}",
                identifier=asset_id,
                contentSize=len(blob["data"]),
                contentUrl=[f"{self.api_url}/assets/{asset_id}/download/", self._blob_url(blob_id)],
                digest={**metadata.get("digest", {}), "dandi:sha2-256": blob["sha256"]},
                dateModified=now,
            )
            if metadata["digest"].get("dandi:dandi-etag", blob["etag"]) != blob["etag"]:
                raise HttpError(400, "metadata digest does not match the blob")
            asset = {
                "asset_id": asset_id,
                "blob": blob_id,
                "zarr": None,
                "path": path,
                "size": len(blob["data"]),
                "created": now,
                "modified": now,
                "metadata": metadata,
            }
            d["assets"][asset_id] = asset
            d["modified"] = now
            self._json(handler, {**self._asset_row(asset), "metadata": metadata})

    def _create_asset(self, handler, query, dandiset_id, version):
        if version != "draft":
            raise HttpError(405, "only the draft version can be changed")
        self._new_asset(handler, dandiset_id)

    def _replace_asset(self, handler, query, dandiset_id, version, asset_id):
        if version != "draft":
            raise HttpError(405, "only the draft version can be changed")
        with self.lock:
            old = self._find_asset(asset_id, dandiset_id)
        self._new_asset(handler, dandiset_id, replacing=old)

    def _delete_asset(self, handler, query, dandiset_id, version, asset_id):
        self._require_auth(handler)
        with self.lock:
            self._find_asset(asset_id, dandiset_id)
            del self.dandisets[dandiset_id]["assets"][asset_id]
        handler._send(204)

    def _asset_metadata(self, handler, query, asset_id, dandiset_id=None, version=None):
        with self.lock:
            self._json(handler, self._find_asset(asset_id, dandiset_id)["metadata"])

    def _asset_info(self, handler, query, asset_id, dandiset_id=None, version=None):
        with self.lock:
            a = self._find_asset(asset_id, dandiset_id)
            self._json(handler, {**self._asset_row(a), "metadata": a["metadata"]})

    def _asset_download(self, handler, query, asset_id, dandiset_id=None, version=None):
        with self.lock:
            blob_id = self._find_asset(asset_id, dandiset_id)["blob"]
        # As the archive does: redirect to the object store (dandi-cli and fsspec follow it).
        handler._send(302, headers={"Location": self._blob_url(blob_id)})

    def _blob(self, handler, query, blob_id):
        with self.lock:
            if blob_id not in self.blobs:
                raise HttpError(404, "NoSuchKey")
            blob = self.blobs[blob_id]
        sent = handler.send_data(blob["data"], etag=blob["etag"])
        with self.lock:
            self.bytes_sent += sent

    # ---- uploads (the archive's multipart protocol over a fake S3) ----------------------------

    def _upload_initialize(self, handler, query):
        self._require_auth(handler)
        payload = self._payload(handler)
        size, digest = payload.get("contentSize"), payload.get("digest") or {}
        if not isinstance(size, int) or size < 0 or digest.get("algorithm") != "dandi:dandi-etag":
            raise HttpError(400, "contentSize and a dandi:dandi-etag digest are required")
        with self.lock:
            self._dandiset(str(payload.get("dandiset")))
            for blob_id, blob in self.blobs.items():
                if blob["etag"] == digest.get("value"):
                    # the archive's deduplication: the client skips the transfer and reuses the blob
                    handler._send(409, b'"Blob already exists."', headers={"Location": blob_id})
                    return
            upload_id = str(uuid.uuid4())
            parts = list(PartGenerator.for_file_size(size))
            self.uploads[upload_id] = {
                "size": size,
                "etag": digest["value"],
                "dandiset": payload["dandiset"],
                "part_sizes": {p.number: p.size for p in parts},
                "parts": {},
                "assembled": None,
            }
        self._json(
            handler,
            {
                "upload_id": upload_id,
                "parts": [
                    {
                        "part_number": p.number,
                        "size": p.size,
                        "upload_url": f"{self.root_url}/s3/uploads/{upload_id}/parts/{p.number}",
                    }
                    for p in parts
                ],
            },
        )

    def _upload(self, upload_id):
        if upload_id not in self.uploads:
            raise HttpError(404, "NoSuchUpload")
        return self.uploads[upload_id]

    def _upload_part(self, handler, query, upload_id, part):
        data = handler._body()
        with self.lock:
            upload = self._upload(upload_id)
            expected = upload["part_sizes"].get(int(part))
            if expected is None or len(data) != expected:
                raise HttpError(400, f"part {part}: expected {expected} bytes, got {len(data)}")
            upload["parts"][int(part)] = data
        handler._send(200, headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    def _upload_complete(self, handler, query, upload_id):
        self._require_auth(handler)
        parts = self._payload(handler).get("parts") or []
        with self.lock:
            upload = self._upload(upload_id)
            if sorted(p["part_number"] for p in parts) != sorted(upload["part_sizes"]):
                raise HttpError(400, "not every part was uploaded")
            for p in parts:
                stored = upload["parts"].get(p["part_number"])
                if stored is None or hashlib.md5(stored).hexdigest() != p["etag"]:
                    raise HttpError(400, f"part {p['part_number']} is missing or its etag differs")
        body = (
            "<CompleteMultipartUpload>"
            + "".join(
                f"<Part><PartNumber>{p['part_number']}</PartNumber><ETag>{p['etag']}</ETag></Part>" for p in parts
            )
            + "</CompleteMultipartUpload>"
        )
        self._json(handler, {"complete_url": f"{self.root_url}/s3/uploads/{upload_id}/complete", "body": body})

    def _s3_complete(self, handler, query, upload_id):
        handler._body()
        with self.lock:
            upload = self._upload(upload_id)
            numbers = sorted(upload["parts"])
            data = b"".join(upload["parts"][n] for n in numbers)
            digests = b"".join(hashlib.md5(upload["parts"][n]).digest() for n in numbers)
            etag = f"{hashlib.md5(digests).hexdigest()}-{len(numbers)}"
            upload["assembled"] = (data, etag)
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Bucket>fake</Bucket><Key>{upload_id}</Key><ETag>&quot;{etag}&quot;</ETag>"
            "</CompleteMultipartUploadResult>"
        )
        handler._send(200, xml.encode(), content_type="application/xml")

    def _upload_validate(self, handler, query, upload_id):
        self._require_auth(handler)
        with self.lock:
            upload = self._upload(upload_id)
            if upload["assembled"] is None:
                raise HttpError(400, "upload not completed")
            data, etag = upload["assembled"]
            if len(data) != upload["size"] or etag != upload["etag"]:
                raise HttpError(400, f"object (size {len(data)}, etag {etag}) does not match the initialisation")
            del self.uploads[upload_id]
            # two concurrent uploads of one file: keep one blob (blob_id is the found one after break)
            for blob_id, blob in self.blobs.items():  # noqa: B007
                if blob["etag"] == etag:
                    break
            else:
                blob_id = str(uuid.uuid4())
                self.blobs[blob_id] = {"data": data, "etag": etag, "sha256": hashlib.sha256(data).hexdigest()}
            blob = self.blobs[blob_id]
        self._json(handler, {"blob_id": blob_id, "etag": etag, "sha256": blob["sha256"], "size": len(data)})

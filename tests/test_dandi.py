"""Publish to and fetch from DANDI end to end, offline: the real dandi-cli against a local fake archive.

``tests/dandi_server.FakeDandiArchive`` implements, on 127.0.0.1, the DANDI REST endpoints that
dandi-cli (the version pinned in ``DANDI_CLI_VERSION``) uses to upload and download; no other host is
reachable from these tests (a socket guard refuses it). This tests the client side and our use of it,
not the public archive.
"""

import contextlib
import io
import logging
import os
import shutil
import signal
import socket
import warnings
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from hdmf.backends.hdf5 import H5DataIO
from pynwb import NWBHDF5IO, NWBFile, TimeSeries
from pynwb.file import Subject

dandi = pytest.importorskip("dandi")

from mimic_nwb import dandi as mimic_dandi  # noqa: E402
from mimic_nwb.cli import main  # noqa: E402
from mimic_nwb.errors import InputError  # noqa: E402
from mimic_nwb.session import read_session  # noqa: E402
from ndx_mimic.testing.mock import mock_BodyModel, mock_session  # noqa: E402

from dandi_server import API_KEY, DANDI_CLI_VERSION, FakeDandiArchive, RangeFileServer  # noqa: E402

pytestmark = pytest.mark.skipif(
    dandi.__version__ != DANDI_CLI_VERSION,
    reason=f"the fake archive answers dandi-cli {DANDI_CLI_VERSION}'s requests; dandi {dandi.__version__} is installed",
)

TEST_TIMEOUT_S = 120  # no step may wait longer than this on a server
ASSET = "sub-rat01/sub-rat01_ses-mock_ecephys.nwb"  # DANDI's name for mock_session(): subject, session, modality
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@contextlib.contextmanager
def watchdog(seconds=TEST_TIMEOUT_S):
    """Fail (TimeoutError) instead of hanging when a server never answers."""

    def expire(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def env():
    """Offline dandi: no version check on the internet, no cache, no keyring, no API keys, loopback only."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK_HOSTS:
            raise socket.gaierror(f"test guard: {host} is not a loopback address")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK_HOSTS:
            raise ConnectionRefusedError(f"test guard: {address[0]} is not a loopback address")
        return real_connect(sock, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DANDI_NO_ET", "1")
        patch.setenv("DANDI_CACHE", "ignore")
        patch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")  # any keyring use fails
        for variable in [v for v in os.environ if v.endswith("_API_KEY")]:
            patch.delenv(variable)
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        patch.setattr(socket.socket, "connect", connect)
        yield patch


@pytest.fixture(scope="module")
def archive(env):
    with FakeDandiArchive() as server:
        yield server


@pytest.fixture(scope="module")
def key_variable(archive):
    """dandi-cli's variable for the fake archive's key: ``127.0.0.1:<PORT>_API_KEY``."""
    with watchdog():
        return mimic_dandi.api_key_env_var(archive.url)


@pytest.fixture
def api_key(env, key_variable):
    os.environ[key_variable] = API_KEY
    yield
    os.environ.pop(key_variable, None)


@pytest.fixture(scope="module")
def session_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sessions") / "rat01_mock.nwb"
    with NWBHDF5IO(path, "w") as nwb_io:
        nwb_io.write(mock_session())
    return path


@pytest.fixture(scope="module")
def published(env, archive, key_variable, session_file, tmp_path_factory):
    """``mimic-nwb publish`` of one session, with every log record and all output captured."""
    dandiset_id = archive.create_dandiset("MIMIC sessions")
    workdir = tmp_path_factory.mktemp("publish")
    dandiset_dir = workdir / dandiset_id
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("dandi")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    out, err = io.StringIO(), io.StringIO()
    os.environ[key_variable] = API_KEY
    try:
        with watchdog(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(
                [
                    "publish",
                    str(session_file),
                    "--dandiset",
                    dandiset_id,
                    "--instance",
                    archive.url,
                    "--dandiset-dir",
                    str(dandiset_dir),
                ]
            )
    finally:
        os.environ.pop(key_variable, None)
        logging.getLogger().removeHandler(handler)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
    return SimpleNamespace(
        code=code,
        dandiset_id=dandiset_id,
        dandiset_dir=dandiset_dir,
        workdir=workdir,
        out=out.getvalue(),
        err=err.getvalue(),
        log=log.getvalue(),
    )


def _no_requests_after(archive, start, method, fragment):
    return not any(m == method and fragment in p for m, p in archive.requests[start:])


# ---- publish ------------------------------------------------------------------------------------


def test_publish_organizes_with_dandi_names_validates_and_uploads(published, archive, session_file):
    assert published.code == 0, published.err
    local = published.dandiset_dir / ASSET
    assert local.read_bytes() == session_file.read_bytes()  # copied, unchanged
    assert (published.dandiset_dir / "dandiset.yaml").exists()  # fetched from the archive
    assets = archive.assets(published.dandiset_id)
    assert list(assets) == [ASSET]
    assert archive.blob_bytes(assets[ASSET]["blob"]) == session_file.read_bytes()
    assert f"{ASSET} (added)" in published.out and "on the draft version now: 1 asset(s)" in published.out
    # the real client lists it, with DANDI metadata extracted from the file
    from dandi.dandiapi import DandiAPIClient

    with watchdog(), DandiAPIClient(api_url=archive.api_url) as client:
        remote = client.get_dandiset(published.dandiset_id, "draft")
        (asset,) = remote.get_assets()
        metadata = asset.get_raw_metadata()
    assert asset.path == ASSET and asset.size == session_file.stat().st_size
    assert metadata["wasAttributedTo"][0]["identifier"] == "rat01"
    assert metadata["wasAttributedTo"][0]["species"]["name"].startswith("Rattus norvegicus")


def test_uploaded_file_carries_the_ndx_mimic_spec(published, archive, tmp_path):
    blob = archive.blob_bytes(archive.assets(published.dandiset_id)[ASSET]["blob"])
    path = tmp_path / "uploaded.nwb"
    path.write_bytes(blob)
    with h5py.File(path, "r") as f:
        assert {"core", "ndx-mimic", "ndx-pose"} <= set(f["specifications"])
    assert mimic_dandi.missing_cached_namespaces(path) == []


def test_api_key_is_never_logged_or_written(published, archive):
    assert published.code == 0  # a keyring access or a prompt would have failed it (fail backend, no tty)
    for text in (published.out, published.err, published.log):
        assert API_KEY not in text
    assert "environment variable as the API key" in published.log  # debug logs were captured: the name only
    for path in published.workdir.rglob("*"):
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), path
    assert all(API_KEY not in p for _, p in archive.requests)


# ---- download and streaming ---------------------------------------------------------------------


def test_download_dandiset_and_one_asset(published, archive, tmp_path, capsys):
    local = (published.dandiset_dir / ASSET).read_bytes()
    with watchdog():
        code = main(["download", published.dandiset_id, "-o", str(tmp_path / "all"), "--instance", archive.url])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "all" / published.dandiset_id / ASSET).read_bytes() == local
    assert (tmp_path / "all" / published.dandiset_id / "dandiset.yaml").exists()

    with watchdog():
        paths = mimic_dandi.download(published.dandiset_id, tmp_path / "one", path=ASSET, instance=archive.url)
    assert paths == [tmp_path / "one" / Path(ASSET).name]
    assert paths[0].read_bytes() == local

    with pytest.raises(InputError, match="already exists; pass --existing"):
        mimic_dandi.download(published.dandiset_id, tmp_path / "one", path=ASSET, instance=archive.url)
    with watchdog():
        assert (
            mimic_dandi.download(
                published.dandiset_id, tmp_path / "one", path=ASSET, instance=archive.url, existing="skip"
            )
            == paths
        )


def test_open_remote_asset_reads_like_the_local_file(published, archive):
    with watchdog():
        with (
            mimic_dandi.open_remote(ASSET, dandiset_id=published.dandiset_id, instance=archive.url) as remote,
            read_session(published.dandiset_dir / ASSET) as local,
        ):
            assert remote.subject.subject_id == local.subject.subject_id == "rat01"
            for name, obj in local.processing["mimic"].data_interfaces.items():
                assert type(remote.processing["mimic"][name]) is type(obj)
            remote_stac = remote.processing["mimic"]["StacRegistration"]
            local_stac = local.processing["mimic"]["StacRegistration"]
            np.testing.assert_array_equal(remote_stac.qpos.data[10:20], local_stac.qpos.data[10:20])
            assert list(remote_stac.qpos.column_names[:]) == list(local_stac.qpos.column_names[:])
            np.testing.assert_array_equal(remote.units["spike_times"][1], local.units["spike_times"][1])


@pytest.fixture(scope="module")
def long_session(tmp_path_factory):
    """A session with a long series (8 MB, chunked along time) next to the mock results."""
    nwbfile = mock_session(session_id="long")
    data = np.random.default_rng(0).standard_normal((250_000, 4))
    nwbfile.add_acquisition(
        TimeSeries(name="long_series", data=H5DataIO(data, chunks=(2_000, 4)), unit="volts", rate=1000.0)
    )
    path = tmp_path_factory.mktemp("static") / "long.nwb"
    with NWBHDF5IO(path, "w") as nwb_io:
        nwb_io.write(nwbfile)
    return path


def test_stream_a_window_over_http_reads_only_what_is_needed(env, long_session):
    window = slice(120_000, 120_500)
    with read_session(long_session) as local:
        expected = local.acquisition["long_series"].data[window]
        local_types = {name: type(obj) for name, obj in local.processing["mimic"].data_interfaces.items()}
    with watchdog(), RangeFileServer(long_session.parent) as server:
        with mimic_dandi.open_remote(server.url(long_session.name), block_size=64 * 1024) as remote:
            series = remote.acquisition["long_series"]
            np.testing.assert_array_equal(series.data[window], expected)
            assert series.rate == 1000.0 and series.data.shape == (250_000, 4)
            assert {n: type(o) for n, o in remote.processing["mimic"].data_interfaces.items()} == local_types
        sent = server.bytes_sent
        ranged = [path for method, path in server.requests if method == "GET"]
    size = long_session.stat().st_size
    assert sent < size / 4, f"read {sent} of {size} bytes"
    assert len(ranged) > 1  # range requests, not one download


# ---- interrupted uploads ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, where",
    [("PUT", r"^/s3/uploads/.+/parts/1$"), ("POST", r"^/api/dandisets/\d{6}/versions/draft/assets/$")],
    ids=["during_transfer", "before_asset_creation"],
)
def test_interrupted_upload_completes_when_run_again_without_duplicates(
    published, archive, api_key, tmp_path, method, where
):
    dandiset_id = archive.create_dandiset("resume")
    with watchdog():
        mimic_dandi.download(dandiset_id, tmp_path, instance=archive.url)  # a local dandiset: its dandiset.yaml
    file = tmp_path / dandiset_id / ASSET
    file.parent.mkdir(parents=True)
    shutil.copy(published.dandiset_dir / ASSET, file)
    with h5py.File(file, "r+") as f:  # new content, so the archive has no blob of it yet
        f.attrs["test_copy"] = where
    blobs_before = len(archive.blobs)

    archive.fail_next(method, where, status=400)
    with watchdog(), pytest.raises(mimic_dandi.UploadInterruptedError, match="run the same command again"):
        mimic_dandi.upload([file], instance=archive.url, validation=False)
    assert archive.assets(dandiset_id) == {}

    with watchdog():
        (uploaded,) = mimic_dandi.upload([file], instance=archive.url, validation=False)
    assets = archive.assets(dandiset_id)
    assert list(assets) == [ASSET] and uploaded.asset_id == assets[ASSET]["asset_id"] and uploaded.same_as_local
    assert archive.blob_bytes(assets[ASSET]["blob"]) == file.read_bytes()
    assert len(archive.blobs) == blobs_before + 1  # one blob for the file, whatever the interruption

    with watchdog():  # a third run finds it complete and changes nothing
        (again,) = mimic_dandi.upload([file], instance=archive.url, validation=False)
    assert again.asset_id == uploaded.asset_id and len(archive.blobs) == blobs_before + 1


# ---- bad inputs ---------------------------------------------------------------------------------


def test_missing_api_key_is_named_and_nothing_happens(archive, key_variable, session_file, tmp_path, capsys):
    dandiset_id = archive.create_dandiset()
    start = len(archive.requests)
    with watchdog():
        code = main(
            [
                "publish",
                str(session_file),
                "--dandiset",
                dandiset_id,
                "--instance",
                archive.url,
                "--dandiset-dir",
                str(tmp_path / "ds"),
            ]
        )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("mimic-nwb: error: no API key for DANDI instance") and err.count("\n") == 1
    assert f"set the environment variable {key_variable}" in err
    assert not (tmp_path / "ds").exists()
    assert _no_requests_after(archive, start, "POST", "/uploads/")


def test_rejected_api_key(archive, key_variable, session_file, tmp_path, monkeypatch):
    monkeypatch.setenv(key_variable, "not-the-key")
    dandiset_id = archive.create_dandiset()
    with watchdog(), pytest.raises(mimic_dandi.ApiKeyRejectedError, match=f"key in {key_variable} was rejected"):
        mimic_dandi.publish([session_file], dandiset_id, instance=archive.url, dandiset_dir=tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_unreachable_server(env, session_file, tmp_path):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with (
        watchdog(),
        pytest.raises(mimic_dandi.UnreachableServerError, match="cannot reach the DANDI archive .*Connection refused"),
    ):
        mimic_dandi.publish([session_file], "000001", instance=url, dandiset_dir=tmp_path / "ds")
    with watchdog(), pytest.raises(mimic_dandi.UnreachableServerError):
        mimic_dandi.download("000001", tmp_path, instance=url)
    assert not (tmp_path / "ds").exists()


def test_missing_or_unknown_dandiset(archive, api_key, session_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(mimic_dandi.MissingDandisetError, match="no dandiset id"):
        mimic_dandi.publish([session_file], instance=archive.url)
    with watchdog(), pytest.raises(mimic_dandi.MissingDandisetError, match="dandiset 999999 not found"):
        mimic_dandi.publish([session_file], "999999", instance=archive.url)
    with pytest.raises(InputError, match="a dandiset id is 6 digits"):
        mimic_dandi.publish([session_file], "123", instance=archive.url)
    with watchdog(), pytest.raises(mimic_dandi.MissingDandisetError, match="dandiset 999999 not found"):
        mimic_dandi.download("999999", tmp_path, instance=archive.url)
    assert list(tmp_path.iterdir()) == []


def _small_session(path, subject, cache_spec=True):
    """A session with a subject and one ndx-mimic result (quick to validate)."""
    nwbfile = NWBFile(
        session_description="small session",
        identifier=path.stem,
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
        session_id="s1",
        subject=subject,
    )
    nwbfile.create_processing_module("mimic", "results").add(mock_BodyModel())
    with NWBHDF5IO(path, "w") as nwb_io:
        nwb_io.write(nwbfile, cache_spec=cache_spec)
    return path


def test_invalid_file_is_refused_with_the_validators_findings(archive, api_key, tmp_path):
    bad = _small_session(tmp_path / "bad.nwb", Subject(subject_id="rat03", species="rat", sex="M", age="90 days"))
    with h5py.File(bad, "r+") as f:
        f["processing/mimic/BodyModel"].attrs["mjcf_sha256"] = "0" * 64  # an ndx-mimic check fires too
    dandiset_id = archive.create_dandiset()
    start = len(archive.requests)
    with watchdog(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reading the tampered BodyModel warns
        with pytest.raises(mimic_dandi.InvalidFileError) as caught:
            mimic_dandi.publish([bad], dandiset_id, instance=archive.url, dandiset_dir=tmp_path / "ds")
    checks = {f.check for f in caught.value.findings if f.severity == "ERROR"}
    assert {"NWBI.check_subject_species_form", "NWBI.check_subject_age"} <= checks  # DANDI's requirements
    assert "NWBI.check_body_model_digest" in checks  # the ndx-mimic checks were loaded
    message = str(caught.value)
    assert message.startswith("bad.nwb: ") and "nothing uploaded" in message and "\n" not in message
    assert all(f.path == bad for f in caught.value.findings)  # named by the file given, not a staging copy
    assert archive.assets(dandiset_id) == {} and _no_requests_after(archive, start, "POST", "/uploads/")
    assert not (tmp_path / "ds").exists()  # the dandiset folder it created is gone again


def test_file_without_cached_spec_is_refused(archive, tmp_path):
    subject = Subject(subject_id="rat02", species="Rattus norvegicus", sex="M", age="P90D")
    path = _small_session(tmp_path / "nospec.nwb", subject, cache_spec=False)
    assert "ndx-mimic" in mimic_dandi.missing_cached_namespaces(path)
    dandiset_id = archive.create_dandiset()
    with watchdog(), pytest.raises(mimic_dandi.InvalidFileError, match=r"nospec.nwb: the spec of .*ndx-mimic"):
        mimic_dandi.publish([path], dandiset_id, instance=archive.url, dandiset_dir=tmp_path / "ds", upload_files=False)
    assert not (tmp_path / "ds").exists()


def test_paths_outside_the_dandiset(published, archive, api_key, tmp_path):
    outside = tmp_path / "elsewhere.nwb"
    shutil.copy(published.dandiset_dir / ASSET, outside)
    with pytest.raises(InputError, match="not inside a dandiset folder"):
        mimic_dandi.upload([outside], instance=archive.url)
    with pytest.raises(InputError, match="outside the dandiset folder"):
        mimic_dandi.upload([published.dandiset_dir / ASSET, outside], instance=archive.url)
    for path in ("../secrets.nwb", "/etc/passwd", "sub-rat01/../../x.nwb"):
        with pytest.raises(InputError, match="outside the dandiset"):
            mimic_dandi.download(published.dandiset_id, tmp_path, path=path, instance=archive.url)
    with watchdog(), pytest.raises(InputError, match="no such asset or folder"):
        mimic_dandi.download(published.dandiset_id, tmp_path, path="sub-nobody/x.nwb", instance=archive.url)


def test_unknown_instance_name(env, session_file):
    with pytest.raises(InputError, match="unknown DANDI instance"):
        mimic_dandi.download("000001", ".", instance="dandi-typo")


def test_validate_only_organizes_without_a_key_or_an_upload(archive, tmp_path, capsys):
    subject = Subject(subject_id="rat04", species="Rattus norvegicus", sex="F", age="P120D")
    session = _small_session(tmp_path / "rat04.nwb", subject)
    dandiset_id = archive.create_dandiset()
    start = len(archive.requests)
    with watchdog():
        code = main(
            [
                "publish",
                str(session),
                "--dandiset",
                dandiset_id,
                "--instance",
                archive.url,
                "--dandiset-dir",
                str(tmp_path / "ds"),
                "--validate-only",
            ]
        )
    out = capsys.readouterr().out
    assert code == 0 and "not uploaded (validation only)" in out
    assert (tmp_path / "ds" / "sub-rat04" / "sub-rat04_ses-s1.nwb").read_bytes() == session.read_bytes()
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["dandiset.yaml", "sub-rat04"]  # no staging left
    assert archive.assets(dandiset_id) == {} and _no_requests_after(archive, start, "GET", "/auth/token")


def test_publish_without_a_key_says_so_before_any_network_access(env, session_file, tmp_path, monkeypatch, capsys):
    import requests

    def no_network(*args, **kwargs):
        raise AssertionError("publish went to the network before checking the API key")

    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(requests.Session, "request", no_network)
    code = main(
        [
            "publish",
            str(session_file),
            "--dandiset",
            "000123",
            "--instance",
            "dandi",
            "--dandiset-dir",
            str(tmp_path / "ds"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "no API key for DANDI instance dandi: set the environment variable DANDI_API_KEY" in err
    assert not (tmp_path / "ds").exists()


def test_validate_only_refuses_a_session_with_a_corrupted_chunk(archive, tmp_path, capsys):
    from test_faults_inputs import corrupt_chunk

    subject = Subject(subject_id="rat05", species="Rattus norvegicus", sex="F", age="P120D")
    session = _small_session(tmp_path / "rat05.nwb", subject)
    with NWBHDF5IO(session, "a") as nwb_io:
        nwbfile = nwb_io.read()
        from mimic_nwb.storage import compressed

        data = np.random.default_rng(0).standard_normal((40000, 8))
        nwbfile.processing["mimic"].add(TimeSeries(name="big", data=compressed(data), unit="m", rate=50.0))
        nwb_io.write(nwbfile)
    corrupt_chunk(session, "processing/mimic/big/data")
    report = mimic_dandi.validate([session])
    assert not report.ok
    assert [f.check for f in report.errors] == ["MIMIC.DATA_INTEGRITY"]
    assert "dataset /processing/mimic/big/data: cannot be read" in report.errors[0].message
    dandiset_id = archive.create_dandiset()
    before = session.read_bytes()
    with watchdog():
        code = main(
            [
                "publish",
                str(session),
                "--dandiset",
                dandiset_id,
                "--instance",
                archive.url,
                "--dandiset-dir",
                str(tmp_path / "ds"),
                "--validate-only",
            ]
        )
    err = capsys.readouterr().err
    assert code == 2 and "/processing/mimic/big/data" in err
    assert session.read_bytes() == before

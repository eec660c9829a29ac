"""Bounded downloads (issue 20, defect 6) against loopback servers that misbehave on purpose: a body longer than the
recorded size (announced or not), an endless body, a slow drip, a silent server, a zip bomb, too many members, a
redirect to another host, a full disk (a real ``ulimit -f`` and an injected ENOSPC). Each ends in one error that names
the file and why, and leaves no ``.part`` behind. Nothing here leaves 127.0.0.1 / localhost.

The well-behaved loopback server and its fixtures come from ``test_download``; `Hostile` below answers each path
with a function that writes whatever response a test needs."""

from __future__ import annotations

import errno
import io
import re
import struct
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from test_download import SOURCES, _sha, _zip, loopback_only, online, server  # noqa: F401 - `mirror`'s fixtures

from bertgen.data import DatasetUnavailableError
from bertgen.data import download as dl
from bertgen.data.errors import DownloadError
from bertgen.data.sources import DatasetSource, RemoteFile
from bertgen.errors import BertgenError
from bertgen.hub import OFFLINE_ENVS

from conftest import cli_command

Route = Callable[[BaseHTTPRequestHandler], None]


# ---------------------------------------------------------------------------------------------------------------
# A hostile server: path -> a function that writes the whole response
# ---------------------------------------------------------------------------------------------------------------
class Hostile:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []  # "<Host header><path>" of every GET
        self.stop = threading.Event()
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                state.hits.append(f"{self.headers.get('Host')}{path}")
                self.close_connection = True
                try:
                    state.routes.get(path, state.body(b"not found", status=404))(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: what the bounds are for

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mirrored(self, url: str, host: str = "127.0.0.1") -> str:
        """Where ``url`` is served (the mirror layout ``/<host>/<path>``), on this server under another host name."""
        parts = urlsplit(url)
        return f"http://{host}:{self.port}/{parts.netloc}{parts.path}"

    def serve(self, url: str, route: Route) -> str:
        """Answer ``url`` (an official URL, or a path) with ``route``; returns the URL to fetch it from."""
        parts = urlsplit(url)
        self.routes[f"/{parts.netloc}{parts.path}" if parts.netloc else parts.path] = route
        return self.mirrored(url) if parts.netloc else f"{self.base}{url}"

    # ---- responses ----
    @staticmethod
    def body(data: bytes, length: int | None | str = "exact", status: int = 200) -> Route:
        """``data`` with a Content-Length of its size (``exact``), of ``length``, or none (``None``: the body ends
        when the connection closes)."""

        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Connection", "close")
            if length is not None:
                h.send_header("Content-Length", str(len(data) if length == "exact" else length))
            h.end_headers()
            h.wfile.write(data)

        return route

    def endless(self, length: int | None = None, block: int = 1 << 16, pause: float = 0.002) -> Route:
        """Zeros until the client goes away (about 30 MB/s, so that a bound that fails does not fill the disk)."""

        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Connection", "close")
            if length is not None:
                h.send_header("Content-Length", str(length))
            h.end_headers()
            while not self.stop.is_set():
                h.wfile.write(bytes(block))
                time.sleep(pause)

        return route

    def drip(self, length: int, every: float) -> Route:
        """One byte every ``every`` seconds of an announced ``length``: alive, but never done."""

        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Length", str(length))
            h.end_headers()
            for _ in range(length):
                if self.stop.wait(every):
                    return
                h.wfile.write(b"x")
                h.wfile.flush()

        return route

    def silent(self, length: int) -> Route:
        """Headers, then nothing at all."""

        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Length", str(length))
            h.end_headers()
            h.wfile.flush()
            self.stop.wait(30)

        return route

    @staticmethod
    def redirect(location: str) -> Route:
        def route(h: BaseHTTPRequestHandler) -> None:
            h.send_response(302)
            h.send_header("Location", location)
            h.send_header("Content-Length", "0")
            h.end_headers()

        return route


@pytest.fixture
def hostile(monkeypatch):
    """A `Hostile` server, with the suite's offline mode lifted and name resolution limited to loopback."""
    loopback_only(monkeypatch)
    for var in OFFLINE_ENVS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    s = Hostile()
    s.thread.start()
    yield s
    s.stop.set()
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def mirror(online):  # noqa: F811 - the fixture imported from test_download
    """test_download's well-behaved loopback server, online and set as the mirror of every official host."""
    return online


def one_file(url: str, data: bytes | None = None, size: int | None = None, **source) -> DatasetSource:
    """A source of one plain file at ``url`` (its sha256 and size those of ``data`` unless given)."""
    name = Path(urlsplit(url).path).name
    rf = RemoteFile(name, url, size if size is not None else len(data or b""), _sha(data) if data else None)
    fields = dict(
        name="hostile",
        title="a hostile source",
        homepage="https://example.org",
        folder="hostile",
        builder="zip",
        layout=("train.tsv",),
        files=(rf,),
        members={"train.tsv": "train.tsv"} if name.endswith(".zip") else {},
    )
    return DatasetSource(**{**fields, **source})


def no_leftovers(root: Path) -> None:
    """Nothing of a failed download: no ``.part``, no unpacked partial folder, no prepared folder."""
    assert not list(root.rglob("*.part")), list(root.rglob("*.part"))
    assert not list(root.glob(".*.partial-*")) and not (root / "hostile").exists()


# ---------------------------------------------------------------------------------------------------------------
# A body longer than the recorded size
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "length, why",
    [
        (5000, "the server announces 5,000 bytes where 1,000 are recorded"),  # Content-Length says so
        (None, "the server sent more than the 1,000 bytes recorded for it"),  # no Content-Length: counted
    ],
)
def test_body_longer_than_the_recorded_size_is_refused(hostile, tmp_path, length, why):
    url = hostile.serve("/example.org/big.bin", hostile.body(b"y" * 5000, length=length))
    with pytest.raises(DownloadError) as e:
        dl.fetch_url(url, tmp_path / "big.bin", size=1000, progress=False)
    assert str(e.value) == f"big.bin: {url}: {why}; the partial file was deleted"
    assert isinstance(e.value, BertgenError) and e.value.__cause__ is None
    assert not (tmp_path / "big.bin").exists() and not (tmp_path / "big.bin.part").exists()


def test_endless_body_stops_at_the_recorded_size(hostile, tmp_path):
    url = hostile.serve("/example.org/endless.bin", hostile.endless())  # no Content-Length: only the size bounds it
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"endless\.bin: .*: the server sent more than the 300,000 bytes recorded"):
        dl.fetch_url(url, tmp_path / "endless.bin", size=300_000, progress=False)
    assert time.monotonic() - start < 5
    assert list(tmp_path.iterdir()) == []


def test_endless_body_without_a_recorded_size_stops_at_the_deadline(hostile, tmp_path):
    url = hostile.serve("/example.org/endless.bin", hostile.endless())
    start = time.monotonic()
    with pytest.raises(DownloadError) as e:
        dl.fetch_url(url, tmp_path / "endless.bin", progress=False, deadline=1.0)
    took = time.monotonic() - start
    msg = str(e.value)
    assert re.fullmatch(
        rf"endless\.bin: {re.escape(url)}: past the download deadline after [\d,]+ bytes; the partial file was deleted",
        msg,
    ), msg
    assert 1.0 <= took < 4, took
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# Slow servers
# ---------------------------------------------------------------------------------------------------------------
def test_slow_drip_is_a_stall_after_one_timeout(hostile, tmp_path):
    """One byte every 0.2 s of a 1,000-byte file: under `STALL_BYTES` per ``timeout`` window, given up after one
    window (before the fix a plain ``read`` waited for the whole chunk: 200 s here, forever for a real file)."""
    url = hostile.serve("https://example.org/drip.tsv", hostile.drip(1000, every=0.2))
    source = one_file("https://example.org/drip.tsv", size=1000)
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as e:
        dl.prepare_source(source, tmp_path, mirror=hostile.base, progress=False, timeout=1.0)
    took = time.monotonic() - start
    msg = str(e.value)
    assert re.search(
        rf"hostile: cannot download a hostile source: hostile/drip\.tsv: {re.escape(url)}: stalled: \d bytes in 1 s "
        r"after \d bytes; the partial file was deleted\. URLs: ",
        msg,
    ), msg
    assert took < 4, took
    no_leftovers(tmp_path)


def test_slow_drip_ends_at_the_deadline(hostile, tmp_path):
    url = hostile.serve("/example.org/drip.bin", hostile.drip(1000, every=0.1))
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"drip\.bin: .*: past the download deadline after \d+ bytes; the partial"):
        dl.fetch_url(url, tmp_path / "drip.bin", size=1000, progress=False, timeout=30.0, deadline=1.0)
    assert time.monotonic() - start < 3
    assert list(tmp_path.iterdir()) == []


def test_silent_server_is_given_up_on_after_the_resume_attempts(hostile, tmp_path):
    url = hostile.serve("https://example.org/silent.tsv", hostile.silent(1000))
    source = one_file("https://example.org/silent.tsv", size=1000)
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as e:
        dl.prepare_source(source, tmp_path, mirror=hostile.base, progress=False, timeout=0.5)
    took = time.monotonic() - start
    msg = str(e.value)
    assert (
        f"hostile: cannot download a hostile source: {url} could not be reached (_Dropped: connection dropped after "
        f"0 bytes (TimeoutError) (from {url})). URLs: " in msg
    ), msg
    assert len(hostile.hits) == 6 and took < 8, (hostile.hits, took)  # the first try and 5 resumes
    assert not (tmp_path / "hostile").exists()  # (its empty .part is kept: a dropped download is resumed next time)


# ---------------------------------------------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------------------------------------------
def _bomb(n: int = 20 << 20) -> bytes:
    """``n`` zeros as train.tsv: 20 MiB deflate to about 20 KB, a ratio of about 1,000."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("train.tsv", bytes(n))
    return buf.getvalue()


def test_zip_bomb_is_refused_before_extraction(mirror, tmp_path):
    data = _bomb()
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("train.tsv")
    mirror.add_url("https://example.org/bomb.zip", data)
    with pytest.raises(DatasetUnavailableError) as e:
        dl.prepare_source(one_file("https://example.org/bomb.zip", data), tmp_path, progress=False)
    msg = str(e.value)
    assert (
        f"hostile: cannot download a hostile source: bomb.zip: member train.tsv would expand "
        f"{info.compress_size:,} bytes to 20,971,520 (more than {dl.MAX_RATIO}x): not extracted. URLs: " in msg
    ), msg
    no_leftovers(tmp_path)
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size > len(data)]


def test_zip_whose_headers_understate_the_size_is_corrupt_and_extracts_no_more(mirror, tmp_path):
    """The classic bomb: headers that declare 1,000 bytes for a member that inflates to 20 MiB."""
    data = bytearray(_bomb())
    struct.pack_into("<I", data, data.find(b"PK\x03\x04") + 22, 1000)  # local header: uncompressed size
    struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, 1000)  # central directory: uncompressed size
    data = bytes(data)
    mirror.add_url("https://example.org/bomb.zip", data)
    with pytest.raises(DatasetUnavailableError) as e:
        dl.prepare_source(one_file("https://example.org/bomb.zip", data), tmp_path, progress=False)
    msg = str(e.value)
    assert (
        "hostile: cannot download a hostile source: bomb.zip: BadZipFile: Bad CRC-32 for file 'train.tsv' (a corrupt "
        "or truncated download; it was deleted, run again to fetch it afresh). URLs: " in msg
    ), msg
    no_leftovers(tmp_path)
    assert not list(tmp_path.rglob("bomb.zip"))


def test_too_many_members_are_refused(mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "MAX_MEMBERS", 5)
    data = _zip({"train.tsv": b"a\tb\n", **{f"junk/{i}.txt": b"." for i in range(5)}})
    mirror.add_url("https://example.org/many.zip", data)
    with pytest.raises(DatasetUnavailableError) as e:
        dl.prepare_source(one_file("https://example.org/many.zip", data), tmp_path, progress=False)
    assert "hostile: cannot download a hostile source: many.zip: 6 members, more than 5. URLs: " in str(e.value)
    no_leftovers(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Redirects
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "target, why",
    [
        (None, "answered HTTP 404 Not Found"),
        (b"z" * 5000, "the server announces 5,000 bytes where 1,000 are recorded"),
    ],
)
def test_redirect_to_another_host_is_named_in_the_error(hostile, tmp_path, target, why):
    """127.0.0.1 redirects to localhost (two host names of one loopback server): the error names both URLs."""
    elsewhere = hostile.mirrored("https://elsewhere.org/moved.tsv", host="localhost")
    if target is not None:
        hostile.serve("https://elsewhere.org/moved.tsv", hostile.body(target))
    url = hostile.serve("https://example.org/data.tsv", hostile.redirect(elsewhere))
    source = one_file("https://example.org/data.tsv", size=1000)
    with pytest.raises(DatasetUnavailableError) as e:
        dl.prepare_source(source, tmp_path, mirror=hostile.base, progress=False)
    msg = str(e.value)
    named = f"{url} (redirected to {elsewhere})"
    if target is None:
        assert f"hostile: cannot download a hostile source: {named} {why}. URLs: " in msg, msg
    else:
        assert f"hostile: cannot download a hostile source: hostile/data.tsv: {named}: {why}; the partial" in msg, msg
    assert hostile.hits == [
        f"127.0.0.1:{hostile.port}/example.org/data.tsv",
        f"localhost:{hostile.port}/elsewhere.org/moved.tsv",
    ]
    no_leftovers(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# A full disk
# ---------------------------------------------------------------------------------------------------------------
def test_full_disk_is_named_with_the_path_and_the_space_needed(hostile, tmp_path, monkeypatch):
    """ENOSPC from the file system (injected: the 10th write of the download fails)."""
    real_open = open
    writes = []

    class Full(io.FileIO):
        def write(self, b):
            writes.append(len(b))
            if len(writes) >= 10:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(b)

    def full_open(file, mode="r", *args, **kwargs):
        if str(file).endswith(".part"):
            return io.BufferedWriter(Full(file, mode.replace("b", "")))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(dl, "open", full_open, raising=False)
    url = hostile.serve("/example.org/big.bin", hostile.endless(length=50_000_000))
    with pytest.raises(DownloadError) as e:
        dl.fetch_url(url, tmp_path / "big.bin", size=50_000_000, progress=False)
    msg = str(e.value)
    assert re.fullmatch(
        rf"big\.bin: {re.escape(url)}: disk full \(No space left on device\): writing {re.escape(str(tmp_path))}/"
        r"big\.bin\.part stopped after [\d,]+ bytes; it needs 50,000,000 bytes in all, [\d,]+ bytes are free; the "
        r"partial file was deleted",
        msg,
    ), msg
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# The command line: bertgen-data download against the hostile server
# ---------------------------------------------------------------------------------------------------------------
def _download_cli(hostile: Hostile, cwd: Path, ulimit_kib: int | None = None) -> subprocess.CompletedProcess:
    """``python -m bertgen.data download wikisplit`` through the hostile mirror (online), under ``ulimit -f``."""
    env = {var: None for var in OFFLINE_ENVS} | {dl.MIRROR_ENV: hostile.base, "NO_PROXY": "127.0.0.1,localhost"}
    cmd, full = cli_command(
        ["-m", "bertgen.data"], ["download", "wikisplit", "--dest", cwd / "d", "--no-progress"], cwd, env=env
    )
    if ulimit_kib is not None:  # bash's ulimit -f counts 1024-byte blocks
        cmd = ["bash", "-c", f'ulimit -f {ulimit_kib} && exec "$@"', "bash", *cmd]
    return subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=120)


def _error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stderr[-3000:]
    return errors[0]


def test_cli_download_longer_than_recorded_is_one_error(hostile, tmp_path):
    official = SOURCES["wikisplit"].files[0]  # train.tsv.zip, 96,439,435 bytes recorded
    url = hostile.serve(official.url, hostile.body(b"", length=official.size + 1))
    line = _error_line(_download_cli(hostile, tmp_path))
    assert line.startswith(
        f"error: wikisplit: cannot download {SOURCES['wikisplit'].title}: wikisplit/train.tsv.zip: {url}: the server "
        f"announces 96,439,436 bytes where 96,439,435 are recorded; the partial file was deleted. URLs: "
    ), line
    assert not list((tmp_path / "d").rglob("*.part"))


def test_cli_download_on_a_full_disk_says_disk_full(hostile, tmp_path):
    """A real limit: ``ulimit -f 1024`` (1 MiB) in the child; the write fails with EFBIG, as on a full quota."""
    official = SOURCES["wikisplit"].files[0]
    hostile.serve(official.url, hostile.endless(length=official.size))
    line = _error_line(_download_cli(hostile, tmp_path, ulimit_kib=1024))
    part = tmp_path / "d" / ".downloads" / "wikisplit" / "train.tsv.zip.part"
    assert re.search(
        rf"wikisplit/train\.tsv\.zip: .*: disk full \(File too large\): writing {re.escape(str(part))} stopped after "
        r"[\d,]+ bytes; it needs 96,439,435 bytes in all, [\d,]+ bytes are free; the partial file was deleted\. ",
        line,
    ), line
    assert not part.exists()

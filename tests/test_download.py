"""Official-source downloads (bertgen.data.download / bertgen-data) against a loopback server: every task's official
layout built from the shared real samples, checksum mismatch, a dropped connection resumed with Range, a corrupt
archive, a 404, offline mode, the DataModule's own download, and train.py reading WikiSplit from the (loopback)
official source. Nothing here leaves 127.0.0.1."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from bertgen.data import DatasetUnavailableError
from bertgen.data import download as dl
from bertgen.data.download import all_sources
from bertgen.data.errors import ChecksumMismatchError, InvalidRows
from bertgen.data.tasks import TASKS
from bertgen.hub import OFFLINE_ENVS

from conftest import REPO, TINY_WIKISPLIT, run_cli

SOURCES = {name: src for name, (src, _) in all_sources().items()}  # the registered tasks' official sources

# ---------------------------------------------------------------------------------------------------------------
# The loopback server: plain files under /<host>/<path> (the mirror layout) and a minimal Hugging Face hub under
# /huggingface.co (repo info with LFS sha256, and resolve URLs with HEAD, GET and Range).
# ---------------------------------------------------------------------------------------------------------------
COMMIT = "f" * 40  # the commit every loopback repository reports


class Loopback:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.repos: dict[tuple[str, str, str], dict[str, bytes]] = {}  # (kind, repo_id, revision) -> path -> bytes
        self.drop_once: dict[str, int] = {}  # path -> bytes sent before the first full GET is cut
        self.log: list[tuple[str, str, str | None]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_url(self, url: str, data: bytes) -> None:
        parts = urlsplit(url)
        self.files[f"/{parts.netloc}{parts.path}"] = data

    def add_hub_file(
        self, repo_id: str, path: str, data: bytes, revision: str = "main", kind: str = "datasets"
    ) -> None:
        self.repos.setdefault((kind, repo_id, revision), {})[path] = data

    def repo_files(self, kind: str, repo: str, rev: str) -> dict[str, bytes] | None:
        """A revision's files; the commit sha the repo info reports (``COMMIT``) names every revision."""
        if (kind, repo, rev) in self.repos:
            return self.repos[(kind, repo, rev)]
        hits = [files for (k, r, _), files in self.repos.items() if (k, r) == (kind, repo)] if rev == COMMIT else []
        return hits[0] if hits else None

    def requests(self, method: str | None = None) -> list[tuple[str, str, str | None]]:
        return [r for r in self.log if method is None or r[0] == method]


def _handler(state: Loopback) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _lookup(self) -> tuple[bytes | None, dict[str, str], str]:
            raw = self.path.split("?")[0]
            segs = [unquote(s) for s in raw.split("/")[1:]]
            if segs[:2] == ["huggingface.co", "api"] and len(segs) >= 7 and segs[5] == "revision":
                kind, repo, rev = segs[2], f"{segs[3]}/{segs[4]}", segs[6]
                files = state.repo_files(kind, repo, rev)
                if files is None:
                    return None, {}, raw
                siblings = [
                    {
                        "rfilename": p,
                        "size": len(b),
                        "blobId": hashlib.sha1(b).hexdigest(),
                        "lfs": {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b), "pointerSize": 134},
                    }
                    for p, b in sorted(files.items())
                ]
                body = json.dumps({"id": repo, "sha": COMMIT, "siblings": siblings, "private": False}).encode()
                return body, {"Content-Type": "application/json"}, raw
            if segs and segs[0] == "huggingface.co" and "resolve" in segs:
                i = segs.index("resolve")
                kind = "datasets" if segs[1] == "datasets" else "models"
                repo = "/".join(segs[2:i] if kind == "datasets" else segs[1:i])
                rev, path = segs[i + 1], "/".join(segs[i + 2 :])
                data = (state.repo_files(kind, repo, rev) or {}).get(path)
                if data is None:
                    return None, {"X-Error-Code": "EntryNotFound"}, raw
                return data, {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}, raw
            key = unquote(raw)
            return state.files.get(key), {}, key

        def _send(self, head_only: bool) -> None:
            data, headers, key = self._lookup()
            rng = self.headers.get("Range")
            state.log.append((self.command, key, rng))
            if data is None:
                body = b"not found"
                self.send_response(404)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head_only:
                    self.wfile.write(body)
                return
            start = 0
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if head_only:
                return
            cut = state.drop_once.pop(key, None) if not rng else None
            if cut is not None:  # send part of the body, then drop the connection
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data[start:])

        def do_HEAD(self) -> None:
            self._send(head_only=True)

        def do_GET(self) -> None:
            self._send(head_only=False)

    return Handler


@pytest.fixture
def server():
    s = Loopback()
    s.thread.start()
    yield s
    s.server.shutdown()
    s.server.server_close()


def loopback_only(monkeypatch) -> None:
    """Name resolution for 127.0.0.1 / localhost only: a URL that escaped the mirror fails at once, offline."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: {host} is not loopback")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def online(monkeypatch, server):
    """Lift the suite's offline mode for this test, with every URL pointing at the loopback server."""
    import huggingface_hub.constants as hf_constants
    from huggingface_hub.utils import reset_sessions

    loopback_only(monkeypatch)
    for var in OFFLINE_ENVS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv(dl.MIRROR_ENV, server.base)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    reset_sessions()
    yield server
    reset_sessions()


# ---------------------------------------------------------------------------------------------------------------
# Fixture archives in each official layout, from the shared real samples
# ---------------------------------------------------------------------------------------------------------------
def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _parquet(table_rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(table_rows), buf)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _lines(path: Path, n: int | None = None, start: int = 0) -> bytes:
    lines = path.read_bytes().splitlines(keepends=True)
    return b"".join(lines[start : start + n] if n is not None else lines[start:])


@pytest.fixture(scope="session")
def fixtures(shared_dir) -> dict[str, dict]:
    """source name -> {"files": {official URL or hub path: bytes}, "rows": {split: n}} built from ../shared/data."""
    data = shared_dir / "data"
    out: dict[str, dict] = {}

    wiki = data / "wikisplit"
    train = _lines(wiki / "tune.tsv", 120)  # real WikiSplit rows stand in for the 96 MB train.tsv.zip
    urls = {f.path: f.url for f in SOURCES["wikisplit"].files}
    out["wikisplit"] = {
        "files": {
            urls["train.tsv.zip"]: _zip({"train.tsv": train}),
            urls["validation.tsv"]: (wiki / "validation.tsv").read_bytes(),  # the real files:
            urls["test.tsv"]: (wiki / "test.tsv").read_bytes(),  # their official
            urls["tune.tsv"]: (wiki / "tune.tsv").read_bytes(),
        },  # sha256 match
        "rows": {"train": 120, "validation": 5000, "test": 5000, "tune": 5000},
    }

    disco = (data / "discofuse" / "discofuse_examples.tsv").read_bytes().splitlines(keepends=True)
    header, rows = disco[0], disco[1:]
    members = {
        "discofuse_v1/wikipedia/train_balanced.tsv": header + b"".join(rows),
        "discofuse_v1/wikipedia/dev_balanced.tsv": header + b"".join(rows[:2]),
        "discofuse_v1/wikipedia/test_balanced.tsv": header + b"".join(rows[2:]),
        "discofuse_v1/wikipedia/train.tsv": header + b"".join(rows * 3),
    }  # unbalanced: must not be used
    out["discofuse"] = {
        "files": {SOURCES["discofuse"].files[0].url: _zip(members)},
        "rows": {"train": 4, "validation": 2, "test": 2},
    }
    cols = list(TASKS["discofuse"].COLUMNS)
    recs = [dict(zip(cols, r.decode().rstrip("\n").split("\t"))) for r in rows]
    for r in recs:
        r["has_coref_type_pronoun"], r["has_coref_type_nominal"] = (
            float(r["has_coref_type_pronoun"]),
            float(r["has_coref_type_nominal"]),
        )
    out["discofuse_hub"] = {
        "files": {
            "discofuse-wikipedia/train-00000-of-00001.parquet": _parquet(recs * 3),
            "discofuse-wikipedia/validation-00000-of-00001.parquet": _parquet(recs[:1]),
            "discofuse-wikipedia/test-00000-of-00001.parquet": _parquet(recs[1:]),
            "discofuse-sport/train-00000-of-00001.parquet": _parquet(recs),
        },
        "rows": {"train": 12, "validation": 1, "test": 3},
    }

    pairs = []
    for line in (data / "gigaword" / "text2text_gigaword_21.txt").read_text(encoding="utf-8").splitlines():
        f = dict(part.split("=", 1) for part in line.split("\t"))
        src = f["source"].strip('"')[3:-4].strip()
        pairs.append((src[: src.find(" . ") + 2], f["target"].strip('"')[3:-4].strip()))
    ggw = {}
    for split, chunk in (("train", pairs[:15]), ("dev", pairs[15:18]), ("test", pairs[18:])):
        ggw[f"org_data/{split}.src.txt"] = "".join(s + "\n" for s, _ in chunk).encode()
        ggw[f"org_data/{split}.tgt.txt"] = "".join(t + "\n" for _, t in chunk).encode()
    ggw["unilm_tokenized/train.src"] = b"not read\n"
    out["gigaword"] = {
        "files": {"data/ggw_data.zip": _zip(ggw), "gigaword.py": b"# loading script, not run\n"},
        "rows": {"train": 15, "validation": 3, "test": 3},
    }

    with open(data / "cnn_dailymail" / "train_sample_100.csv", encoding="utf-8", newline="") as f:
        cnn = [{"article": r["article"], "highlights": r["highlights"], "id": r["id"]} for r in csv.DictReader(f)]
    out["cnn_dailymail"] = {
        "files": {
            "3.0.0/train-00000-of-00002.parquet": _parquet(cnn[:30]),
            "3.0.0/train-00001-of-00002.parquet": _parquet(cnn[30:60]),
            "3.0.0/validation-00000-of-00001.parquet": _parquet(cnn[60:70]),
            "3.0.0/test-00000-of-00001.parquet": _parquet(cnn[70:80]),
            "1.0.0/train-00000-of-00001.parquet": _parquet(cnn[:5]),
        },
        "rows": {"train": 60, "validation": 10, "test": 10},
    }

    xs = [json.loads(x) for x in (data / "xsum" / "xsum_test_321.jsonl").read_text(encoding="utf-8").splitlines()]
    xs = [{"document": r["document"], "summary": r["summary"], "id": r["id"]} for r in xs]
    out["xsum"] = {
        "files": {
            "default/train/0000.parquet": _parquet(xs[:40]),
            "default/validation/0000.parquet": _parquet(xs[40:50]),
            "default/test/0000.parquet": _parquet(xs[50:60]),
        },
        "rows": {"train": 40, "validation": 10, "test": 10},
    }

    en = (data / "wmt14_en_de" / "src-val.txt").read_text(encoding="utf-8").splitlines()
    de = (data / "wmt14_en_de" / "tgt-val.txt").read_text(encoding="utf-8").splitlines()
    tr = [{"translation": {"de": d, "en": e}} for d, e in zip(de, en)]
    out["wmt14"] = {
        "files": {
            "de-en/train-00000-of-00001.parquet": _parquet(tr[:50]),
            "de-en/validation-00000-of-00001.parquet": _parquet(tr[50:60]),
            "de-en/test-00000-of-00001.parquet": _parquet(tr[60:70]),
        },
        "rows": {"train": 50, "validation": 10, "test": 10},
    }
    return out


def publish(server: Loopback, name: str, fixtures: dict) -> dl.DatasetSource:
    """Serve ``fixtures[name]`` at the source's official URLs / hub repo; return the source with the fixture's
    sha256 where the recorded one is of the real (much larger) file."""
    src, fx = SOURCES[name], fixtures[name]
    for key, data in fx["files"].items():
        if key.startswith("https://"):
            server.add_url(key, data)
        else:
            server.add_hub_file(src.hub.repo_id, key, data, revision=src.hub.revision)
    by_url = {k: v for k, v in fx["files"].items()}
    files = []
    for f in src.files:
        data = by_url[f.url] if f.url else by_url[f.path]
        if _sha(data) != f.sha256:
            f = dataclasses.replace(f, sha256=_sha(data), size=len(data))
        files.append(f)
    return dataclasses.replace(src, files=tuple(files), rows=fx["rows"])


def serve(monkeypatch, task: str, *sources: dl.DatasetSource) -> None:
    """Make ``task`` download from ``sources`` (published on the loopback server) for the rest of the test."""
    monkeypatch.setattr(TASKS[task], "sources", (*sources, *TASKS[task].sources[len(sources) :]))


def read_all(task_name: str, folder: Path) -> dict[str, int]:
    task = TASKS[task_name]()
    return {
        split: sum(1 for _ in task.read_local(task.find_local(folder, split), InvalidRows()))
        for split in task.local_layouts
    }


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, task",
    [
        ("wikisplit", "wikisplit"),
        ("discofuse", "discofuse"),
        ("discofuse_hub", "discofuse"),
        ("gigaword", "gigaword"),
        ("cnn_dailymail", "cnn_dailymail"),
        ("xsum", "xsum"),
        ("wmt14", "wmt14_de_en"),
    ],
)
def test_full_download_lands_in_the_layout_the_readers_accept(name, task, online, fixtures, tmp_path):
    source = publish(online, name, fixtures)
    folder = dl.prepare_source(source, tmp_path, progress=False)
    assert folder == tmp_path / source.folder and dl.is_prepared(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*source.layout, dl.MARKER])
    assert not (tmp_path / ".downloads" / source.folder).exists()  # archives removed after unpacking
    assert not list(tmp_path.glob(f".{source.folder}.partial-*"))
    rows = fixtures[name]["rows"]
    got = read_all(task, folder)
    assert {s: got[s] for s in rows} == rows
    marker = json.loads((folder / dl.MARKER).read_text())
    assert marker["rows"] == rows and all(len(f["sha256"]) == 64 for f in marker["files"])
    # a prepared folder is returned as is, without the network
    n = len(online.log)
    assert dl.prepare_source(source, tmp_path, progress=False) == folder and len(online.log) == n
    if name == "wikisplit":  # validation/test/tune are the real files: the recorded official sha256 were checked
        official = {f.path: f.sha256 for f in SOURCES["wikisplit"].files}
        assert {f["path"]: f["sha256"] for f in marker["files"]}["test.tsv"] == official["test.tsv"]
        assert {f.path: f.sha256 for f in source.files}["tune.tsv"] == official["tune.tsv"]
    if name == "wmt14":  # line-aligned, German in .de
        de = (folder / "train.de").read_text(encoding="utf-8").splitlines()
        en = (folder / "train.en").read_text(encoding="utf-8").splitlines()
        assert len(de) == len(en) == 50 and "Orlando" not in de[0]


def test_checksum_mismatch_names_the_file_and_both_hashes(online, fixtures, tmp_path):
    publish(online, "wikisplit", fixtures)  # serves a small train.tsv.zip, not the official 96 MB one
    served = fixtures["wikisplit"]["files"][SOURCES["wikisplit"].files[0].url]
    with pytest.raises(ChecksumMismatchError) as e:
        dl.prepare_source(SOURCES["wikisplit"], tmp_path, progress=False)
    msg = str(e.value)
    assert "train.tsv.zip" in msg and SOURCES["wikisplit"].files[0].sha256 in msg and _sha(served) in msg
    assert isinstance(e.value, DatasetUnavailableError)
    assert not (tmp_path / "wikisplit").exists()
    assert not list((tmp_path / ".downloads" / "wikisplit").glob("train.tsv.zip*"))  # the bad file is gone


def test_dropped_connection_is_resumed_with_a_range_request(online, fixtures, tmp_path, caplog):
    source = publish(online, "wikisplit", fixtures)
    url = SOURCES["wikisplit"].files[0].url
    key = f"/{urlsplit(url).netloc}{urlsplit(url).path}"
    size = len(fixtures["wikisplit"]["files"][url])
    online.drop_once[key] = size // 3
    with caplog.at_level(logging.WARNING, logger="bertgen.data"):
        folder = dl.prepare_source(source, tmp_path, progress=False)
    gets = [r for r in online.requests("GET") if r[1] == key]
    assert [g[2] for g in gets] == [None, f"bytes={size // 3}-"], gets
    assert "resuming at byte" in caplog.text
    assert read_all("wikisplit", folder)["train"] == 120


def test_interrupted_download_resumes_on_the_next_call(online, fixtures, tmp_path):
    data = fixtures["wikisplit"]["files"][SOURCES["wikisplit"].files[0].url]
    online.add_url("https://example.org/big.zip", data)
    online.drop_once["/example.org/big.zip"] = 1000
    url, dest = f"{online.base}/example.org/big.zip", tmp_path / "big.zip"
    with pytest.raises(dl._Dropped):
        dl.fetch_url(url, dest, sha256=_sha(data), progress=False, resume_attempts=0)
    assert not dest.exists() and (tmp_path / "big.zip.part").stat().st_size == 1000
    dl.fetch_url(url, dest, sha256=_sha(data), progress=False)
    assert dest.read_bytes() == data and not (tmp_path / "big.zip.part").exists()
    assert online.requests("GET")[-1][2] == "bytes=1000-"


def test_corrupt_archive_is_one_error_and_is_deleted(online, fixtures, tmp_path):
    source = publish(online, "discofuse", fixtures)
    bad = fixtures["discofuse"]["files"][source.files[0].url][:-200]  # truncated: the central directory is gone
    online.add_url(source.files[0].url, bad)
    source = dataclasses.replace(source, files=(dataclasses.replace(source.files[0], sha256=_sha(bad), size=len(bad)),))
    with pytest.raises(DatasetUnavailableError) as e:
        dl.prepare_source(source, tmp_path, progress=False)
    msg = str(e.value)
    assert "discofuse_v1_wikipedia.zip" in msg and "corrupt" in msg and "data_dir" in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__
    assert not (tmp_path / "discofuse").exists() and not list((tmp_path / ".downloads").rglob("*.zip"))


def test_404_is_one_error_with_urls_files_and_layout(online, fixtures, tmp_path):
    source = publish(online, "wikisplit", fixtures)
    del online.files[f"/github.com{urlsplit(source.files[3].url).path}"]  # tune.tsv is gone
    task = TASKS["wikisplit"]()
    with pytest.raises(DatasetUnavailableError) as e:
        dl.prepare_source(source, tmp_path, progress=False, task="wikisplit", layout_help=task.layout_help())
    msg = str(e.value)
    assert "HTTP 404" in msg and "tune.tsv" in msg and f"{online.base}/github.com/" in msg
    assert "train.tsv.zip (" in msg and "bertgen-data download wikisplit" in msg and "data_dir=" in msg
    assert "Accepted data_dir layouts for wikisplit" in msg and "\n" not in msg
    # a hub repository that does not exist
    with pytest.raises(DatasetUnavailableError, match=r"xsum: cannot download .* EdinburghNLP/xsum .*data_dir"):
        dl.prepare_source(SOURCES["xsum"], tmp_path, progress=False)


def test_offline_mode_fetches_nothing_and_says_how_to_prepare(server, fixtures, tmp_path, monkeypatch):
    loopback_only(monkeypatch)
    monkeypatch.setenv(dl.MIRROR_ENV, server.base)
    publish(server, "wikisplit", fixtures)
    for task_name in ("wikisplit", "gigaword", "cnn_dailymail", "xsum", "wmt14_en_de", "discofuse"):
        task = TASKS[task_name]()
        with pytest.raises(DatasetUnavailableError) as e:
            dl.prepare_task(task, tmp_path)
        msg = str(e.value)
        assert "offline mode (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set)" in msg
        assert "URLs: " in msg and "Expected files: " in msg and "Accepted data_dir layouts" in msg
        assert e.value.__cause__ is None
    assert server.log == []  # not one request


def test_datamodule_downloads_the_official_release_when_no_data_dir(online, fixtures, wordpiece, tmp_path, monkeypatch):
    from bertgen.data import Seq2SeqDataModule

    serve(monkeypatch, "wikisplit", publish(online, "wikisplit", fixtures))
    serve(monkeypatch, "gigaword", publish(online, "gigaword", fixtures))
    dm = Seq2SeqDataModule("wikisplit", wordpiece, cache_dir=tmp_path, batch_size=8)
    dm.prepare_data()
    assert dm.data_dir == tmp_path / "sources" / "wikisplit"
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 120 and len(dm.datasets["validation"]) == 5000
    g = Seq2SeqDataModule("gigaword", wordpiece, cache_dir=tmp_path, batch_size=8)
    g.setup("fit")
    assert len(g.datasets["train"]) == 15 and len(g.datasets["validation"]) == 3  # dev.src.txt / dev.tgt.txt


def test_discofuse_hub_copy_only_when_asked_and_with_a_warning(
    online, fixtures, wordpiece, tmp_path, caplog, monkeypatch
):
    from bertgen.data import Seq2SeqDataModule

    serve(monkeypatch, "discofuse", publish(online, "discofuse", fixtures), publish(online, "discofuse_hub", fixtures))
    balanced = Seq2SeqDataModule("discofuse", wordpiece, cache_dir=tmp_path, batch_size=8, train_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="bertgen.data"):
        balanced.setup("fit")
    assert "UNBALANCED" not in caplog.text
    assert balanced.data_dir.name == "discofuse" and len(balanced.datasets["train"]) == 2  # half of the 4
    hub = Seq2SeqDataModule("discofuse", wordpiece, cache_dir=tmp_path, batch_size=8, task_options={"source": "hub"})
    with caplog.at_level(logging.WARNING, logger="bertgen.data"):
        hub.setup("fit")
    assert "UNBALANCED" in caplog.text and hub.data_dir.name == "discofuse_hub"
    assert len(hub.datasets["train"]) == 12
    with pytest.raises(ValueError, match="source must be 'official' or 'hub'"):
        Seq2SeqDataModule(
            "discofuse", wordpiece, cache_dir=tmp_path / "x", batch_size=8, task_options={"source": "github"}
        ).setup("fit")


def test_cli_list_and_download(online, fixtures, tmp_path, capsys, monkeypatch):
    from bertgen.data.cli import COMMANDS, main

    assert {"download", "list"} <= set(COMMANDS)
    assert main(["list", "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["wikisplit"]["files"][0]["sha256"] == SOURCES["wikisplit"].files[0].sha256
    assert listed["discofuse"]["files"][0]["url"].endswith("discofuse_v1_wikipedia.zip")
    assert listed["wmt14"]["rows"]["test"] == 3003 and listed["wmt14"]["tasks"] == ["wmt14_en_de", "wmt14_de_en"]
    assert main(["list"]) == 0 and "sha256 e8a5ec52" in capsys.readouterr().out
    with monkeypatch.context() as m:
        serve(m, "xsum", publish(online, "xsum", fixtures))
        assert main(["download", "xsum", "--dest", str(tmp_path), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert f"data_dir={tmp_path / 'xsum'}" in out and read_all("xsum", tmp_path / "xsum")["test"] == 10
        assert main(["download", "cnn_dailymail", "--dest", str(tmp_path), "--no-progress"]) == 1  # not served
        assert "error: cnn_dailymail: cannot download" in capsys.readouterr().err
    r = run_cli(["-m", "bertgen.data"], ["list"], timeout=120)
    assert r.returncode == 0 and "wikisplit" in r.stdout and "gresearch/discofuse" in r.stdout


# ---------------------------------------------------------------------------------------------------------------
_WRAPPER = """
import dataclasses, json, runpy, sys
from bertgen.data.tasks import TASKS
from bertgen.hub import OFFLINE_ENVS
for name, files in json.load(open(sys.argv[1])).items():  # the fixture's checksums: the real files are larger
    src = TASKS[name].sources[0]
    TASKS[name].sources = (dataclasses.replace(src, files=tuple(
        dataclasses.replace(f, sha256=files[f.path][0], size=files[f.path][1]) for f in src.files)),)
sys.argv = [sys.argv[2], *sys.argv[3:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_train_py_wikisplit_reads_the_loopback_official_source(online, fixtures, tmp_path):
    """``python train.py task=wikisplit`` with no data_dir: the data exists only at the (loopback) official URLs."""
    wiki = fixtures["wikisplit"]["files"]
    small = {
        u: (
            _zip({"train.tsv": zipfile.ZipFile(io.BytesIO(b)).read("train.tsv")})
            if u.endswith(".zip")
            else b"".join(b.splitlines(keepends=True)[:24])
        )
        for u, b in wiki.items()
    }
    for url, data in small.items():
        online.add_url(url, data)
    checksums = {"wikisplit": {f.path: [_sha(small[f.url]), len(small[f.url])] for f in SOURCES["wikisplit"].files}}
    (tmp_path / "checksums.json").write_text(json.dumps(checksums))
    (tmp_path / "wrapper.py").write_text(_WRAPPER)
    run_dir = tmp_path / "run"
    env = {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", dl.MIRROR_ENV: online.base, "NO_PROXY": "127.0.0.1"}
    args = [
        *TINY_WIKISPLIT,
        f"hydra.run.dir={run_dir}",
        "export_model=false",
        "model.encoder.num_hidden_layers=1",
        "model.decoder.num_hidden_layers=1",
    ]
    wrapped = [tmp_path / "checksums.json", REPO / "train.py", *args]  # train.py run by the wrapper
    r = run_cli(tmp_path / "wrapper.py", wrapped, tmp_path, timeout=600, env=env)  # data cache: tmp_path / "cache"
    assert r.returncode == 0, r.stderr[-4000:]
    prepared = tmp_path / "cache" / "sources" / "wikisplit"
    assert dl.is_prepared(prepared) and (prepared / "train.tsv").is_file()
    assert [g[1].rsplit("/", 1)[-1] for g in online.requests("GET")] == [
        "train.tsv.zip",
        "validation.tsv",
        "test.tsv",
        "tune.tsv",
    ]
    metrics = (run_dir / "metrics.json").read_text()
    assert '"global_step": 2' in metrics, metrics[:2000]


def test_hub_file_whose_published_sha256_is_not_the_recorded_one_fails_before_downloading(online, fixtures, tmp_path):
    publish(online, "gigaword", fixtures)  # the hub serves (and publishes the sha256 of) a small stand-in archive
    with pytest.raises(ChecksumMismatchError) as e:
        dl.prepare_source(SOURCES["gigaword"], tmp_path, progress=False)
    msg = str(e.value)
    assert (
        SOURCES["gigaword"].files[0].sha256 in msg and _sha(fixtures["gigaword"]["files"]["data/ggw_data.zip"]) in msg
    )
    assert "data/ggw_data.zip" in msg and "nothing was downloaded" in msg
    assert not [r for r in online.requests("GET") if r[1].endswith("ggw_data.zip")]

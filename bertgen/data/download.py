"""Fetch a task's official files (its ``sources``, ``bertgen.data.sources``), verify their sha256 and unpack them into
a ``data_dir``.

``prepare_source(source, dest)`` returns ``dest/<source.folder>``, a folder the task's local readers accept (the
layouts of ``bertgen.data.tasks``). The DataModule calls ``prepare_task`` when it is given neither ``data_dir`` nor
``data_files``; ``bertgen-data download`` calls the same code ahead of time.

* Plain URLs are fetched with the standard library: into ``<name>.part``, resumed with an HTTP ``Range`` request
  when the connection drops (or on the next run), verified, then renamed. Hub files go through
  ``huggingface_hub.hf_hub_download`` (its own resume and atomic rename) and are verified the same way.
* Archives are unpacked (only the members the readers need) and parquet files converted, into a temporary sibling
  folder that is renamed to its final name with a marker file (``.bertgen-source.json``) once complete: a folder
  with the marker is complete, and a later call returns it without touching the network.
* ``BERTGEN_DATA_MIRROR=<base URL>`` (or ``mirror=``) replaces every official host: ``https://host/path`` is fetched
  from ``<base>/host/path`` and the hub from ``<base>/huggingface.co``. Offline (``BERTGEN_OFFLINE``,
  ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` set) nothing is fetched.
* Every failure to get the data raises one ``DatasetUnavailableError`` that names the URLs, the expected files and
  the ``data_dir`` layout; a checksum mismatch raises ``ChecksumMismatchError`` naming the file and both hashes.
"""

from __future__ import annotations

import dataclasses
import errno
import http.client
import json
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bertgen.data.cache import default_cache_dir
from bertgen.data.errors import ChecksumMismatchError, CorruptFileError, DatasetUnavailableError, DownloadError
from bertgen.data.sources import DatasetSource, RemoteFile
from bertgen.hub import offline_variables
from bertgen.io import sha256_file

log = logging.getLogger("bertgen.data")

MIRROR_ENV = "BERTGEN_DATA_MIRROR"
MARKER = ".bertgen-source.json"
CHUNK = 1 << 20


class _Dropped(Exception):
    """The server closed the connection before the whole body arrived."""


# ---- where things come from -----------------------------------------------------------------------------------
def _mirror(mirror: str | None) -> str | None:
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    return mirror.rstrip("/") if mirror else None


def mirror_url(url: str, mirror: str | None = None) -> str:
    """``url`` itself, or with a mirror its host and path under the mirror: ``<mirror>/<host>/<path>``."""
    base = _mirror(mirror)
    if not base:
        return url
    parts = urlsplit(url)
    return f"{base}/{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def hub_endpoint(mirror: str | None = None) -> str:
    """The hub endpoint: ``<mirror>/huggingface.co`` with a mirror, else huggingface_hub's (``HF_ENDPOINT``)."""
    base = _mirror(mirror)
    if base:
        return f"{base}/huggingface.co"
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def source_urls(source: DatasetSource, mirror: str | None = None) -> list[str]:
    """Every URL ``source`` is fetched from; hub files as their ``resolve`` URLs (patterns left as patterns)."""
    out = [mirror_url(f.url, mirror) for f in source.files if f.url]
    if source.hub is not None:
        hub = source.hub
        kind = "datasets/" if hub.repo_type == "dataset" else ""
        named = [f.path for f in source.files if f.url is None] or list(hub.patterns)
        base = f"{hub_endpoint(mirror)}/{kind}{hub.repo_id}/resolve/{hub.revision.replace('/', '%2F')}"
        out += [f"{base}/{p}" for p in named]
    return out


def default_dest() -> Path:
    """Where downloads land when no destination is given: ``<bertgen data cache>/sources``."""
    return default_cache_dir() / "sources"


def all_sources() -> dict[str, tuple[DatasetSource, list[str]]]:
    """Every official source of the registered tasks, by name, with the tasks that read it (first = default)."""
    from bertgen.data.tasks import TASKS

    out: dict[str, tuple[DatasetSource, list[str]]] = {}
    for name, cls in TASKS.items():
        for k, src in enumerate(cls.sources):
            out.setdefault(src.name, (src, []))[1].append(name if k == 0 else f"{name} (a task option)")
    return out


def resolve_source(name: str) -> DatasetSource:
    """A source by its name or by a task name (``wmt14_en_de`` -> ``wmt14``)."""
    from bertgen.data.tasks import TASKS

    if name in TASKS and TASKS[name].sources:
        return TASKS[name].sources[0]
    sources = all_sources()
    if name not in sources:
        known = sorted(set(sources) | {t for t, c in TASKS.items() if c.sources})
        raise DatasetUnavailableError(f"no official source named '{name}'; known: {', '.join(known)}")
    return sources[name][0]


# ---- the error message ------------------------------------------------------------------------------------------
def _expected_files(source: DatasetSource) -> str:
    parts = []
    for f in source.files:
        facts = [f"{f.size:,} bytes" if f.size else None, f"sha256 {f.sha256}" if f.sha256 else "sha256 not recorded"]
        parts.append(f"{f.path} ({', '.join(x for x in facts if x)})")
    if source.hub is not None and not any(f.url is None for f in source.files):
        parts.append(
            f"{' '.join(source.hub.patterns)} of the hub dataset {source.hub.repo_id} (revision "
            f"{source.hub.revision}; sha256 as the hub publishes it)"
        )
    return "; ".join(parts)


def unavailable_message(
    source: DatasetSource,
    why: str,
    *,
    task: str | None = None,
    mirror: str | None = None,
    layout_help: str | None = None,
) -> str:
    """One message: what failed, the URLs, the expected files, and how to prepare the data elsewhere."""
    from bertgen.data.tasks import TASKS

    task = task or source.name
    cls = TASKS.get(task)
    command = task if cls is not None and cls.sources and cls.sources[0].name == source.name else source.name
    lines = [
        f"{task}: cannot download {source.title}: {why}.",
        f"URLs: {', '.join(source_urls(source, mirror))}.",
        f"Expected files: {_expected_files(source)}.",
        (
            f"Prepare it on a machine with network: `bertgen-data download {command} --dest DIR`, copy "
            f"DIR/{source.folder} here and pass data_dir=<that folder> (it holds {', '.join(source.layout)})."
        ),
    ]
    if cls is not None and cls.hub_copy_not_used:
        lines.append(f"(Not used: the hub copy {cls.hub_copy_not_used}.)")
    if layout_help:
        lines.append(layout_help)
    return " ".join(lines)


# ---- plain HTTP(S) downloads ------------------------------------------------------------------------------------
def _progress(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not enabled,
        leave=False,
    )


def _user_agent() -> str:
    from bertgen import __version__

    return f"bertgen/{__version__}"


class _Fatal(Exception):
    """A download that must not be resumed (its ``.part`` is deleted): a longer body than recorded, a stall, a full
    disk, past the deadline."""


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects (GitHub's raw files live on another host) and remembers where to, for the error messages."""

    def __init__(self) -> None:
        self.chain: list[str] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 - urllib's hook
        self.chain.append(newurl)
        if urlsplit(newurl).hostname != urlsplit(req.full_url).hostname:
            log.info("%s redirects to another host: %s", req.full_url, newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def redirected(url: str, chain: list[str]) -> str:
    """``url`` as an error names it: with the URL it was redirected to, when it was."""
    return f"{url} (redirected to {chain[-1]})" if chain else url


# A full disk, or the file size limit (``ulimit -f``: EFBIG) that a quota or a container puts in its place
FULL_DISK = (errno.ENOSPC, errno.EFBIG)


def _disk_full(path: Path, need: int | None, got: int, error: OSError) -> _Fatal:
    free = shutil.disk_usage(path.parent).free
    needed = f"{need:,} bytes in all" if need else "more"
    return _Fatal(
        f"disk full ({error.strerror}): writing {path} stopped after {got:,} bytes; it needs {needed}, "
        f"{free:,} bytes are free"
    )


def _get_once(
    url: str,
    part: Path,
    *,
    size: int | None,
    progress: bool,
    timeout: float,
    desc: str,
    deadline: float,
    chain: list[str],
) -> None:
    """One GET into ``part``, continuing it with a Range request when it already holds bytes. Bounded: never more
    bytes than the recorded ``size``, no less than `STALL_BYTES` in any ``timeout`` seconds, nothing after
    ``deadline`` (a ``time.monotonic()`` value)."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    redirects = _RecordingRedirects()
    opener = urllib.request.build_opener(redirects)
    try:
        resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        chain += redirects.chain
        if e.code == 416 and have:
            if size is None or have == size:
                return  # the part file is already complete
            part.unlink()
            raise _Dropped(f"the server cannot resume at byte {have:,}; starting over") from None
        raise
    chain += redirects.chain
    with resp:
        if have and resp.status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            mode = "ab"
        else:  # the server ignored the range: start over
            have, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        expected = int(length) if length is not None and length.isdigit() else None
        if size is not None and expected is not None and have + expected > size:
            raise _Fatal(f"the server announces {have + expected:,} bytes where {size:,} are recorded")
        got = 0
        window_start, window_bytes = time.monotonic(), 0
        with (
            open(part, mode) as out,
            _progress(size or (expected + have if expected else None), have, desc, progress) as bar,
        ):
            while True:
                if time.monotonic() > deadline:
                    raise _Fatal(f"past the download deadline after {have + got:,} bytes")
                try:  # read1: what one recv gives (a plain read waits for the whole chunk, however slow the drip)
                    block = resp.read1(CHUNK if size is None else max(0, min(CHUNK, size - have - got + 1)))
                except (http.client.IncompleteRead, ConnectionError, TimeoutError) as e:
                    raise _Dropped(f"connection dropped after {have + got:,} bytes ({type(e).__name__})") from None
                if not block:
                    break
                if size is not None and have + got + len(block) > size:
                    raise _Fatal(f"the server sent more than the {size:,} bytes recorded for it")
                try:
                    out.write(block)
                    out.flush()  # a full disk is reported here, not when the file is closed
                except OSError as e:
                    if e.errno in FULL_DISK:
                        raise _disk_full(part, size, have + got, e) from None
                    raise
                got += len(block)
                window_bytes += len(block)
                bar.update(len(block))
                now = time.monotonic()
                if now - window_start >= timeout:
                    if window_bytes < STALL_BYTES:
                        raise _Fatal(f"stalled: {window_bytes} bytes in {timeout:g} s after {have + got:,} bytes")
                    window_start, window_bytes = now, 0
        if expected is not None and got < expected:
            raise _Dropped(f"connection closed after {have + got:,} of {have + expected:,} bytes")


STALL_BYTES = 1024  # fewer bytes than this in a whole timeout window: the transfer is stalled, not slow
MIN_RATE = 20_000  # bytes/s: the default deadline allows the recorded size at this rate, plus 10 minutes


def fetch_url(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    timeout: float = 60.0,
    resume_attempts: int = 5,
    what: str | None = None,
    deadline: float | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically (``dest.part``, then rename) and verify its sha256.

    A dropped connection is resumed with ``Range: bytes=<have>-`` (up to ``resume_attempts`` times in a row without
    progress being lost; a later call resumes the ``.part`` file too). Bounded: a body longer than the recorded
    ``size``, no progress for ``timeout`` seconds, past ``deadline`` seconds in all (default: the recorded size at
    `MIN_RATE` plus 10 minutes) or a full disk end the download with one error, and its ``.part`` is deleted.
    Raises ``ChecksumMismatchError`` (the bad file is deleted) and lets network errors (``urllib.error.URLError``,
    ``_Dropped``) through for the caller to word, with the redirect target named."""
    dest = Path(dest)
    name = what or dest.name
    if dest.is_file():
        _verify(dest, sha256, size, url, name)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if deadline is None:
        deadline = 600.0 + (size or 0) / MIN_RATE
    end = time.monotonic() + deadline
    chain: list[str] = []
    attempts = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _get_once(
                url, part, size=size, progress=progress, timeout=timeout, desc=dest.name, deadline=end, chain=chain
            )
            break
        except _Fatal as e:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{name}: {redirected(url, chain)}: {e}; the partial file was deleted") from None
        except _Dropped as e:
            now = part.stat().st_size if part.exists() else 0
            attempts = attempts + 1 if now <= before else 1
            if attempts > resume_attempts:
                raise _Dropped(f"{e} (from {redirected(url, chain)})") from None
            log.warning("%s: %s; resuming at byte %d with an HTTP Range request", name, e, now)
        except urllib.error.HTTPError:
            raise  # its status and its url (where a redirect led) are for the caller to word
        except urllib.error.URLError as e:
            if chain:
                raise urllib.error.URLError(f"{getattr(e, 'reason', e)} (redirected to {chain[-1]})") from None
            raise
    _verify(part, sha256, size, url, name)
    os.replace(part, dest)
    return dest


def _verify(path: Path, sha256: str | None, size: int | None, url: str, name: str) -> None:
    found = sha256_file(path)
    n = path.stat().st_size
    if (sha256 and found != sha256) or (not sha256 and size is not None and n != size):
        path.unlink()
        expected = sha256 or f"{size:,} bytes"
        raise ChecksumMismatchError(
            f"{name}: checksum mismatch for the file downloaded from {url}: expected sha256 {expected}, found "
            f"sha256 {found} ({n:,} bytes). The file was deleted; run again to download it afresh, or check the "
            f"source (a changed upstream file, a proxy or mirror serving other bytes)."
        )


# ---- hub files --------------------------------------------------------------------------------------------------
def _hub_listing(source: DatasetSource, endpoint: str, timeout: float) -> list[RemoteFile]:
    """The files of ``source.hub`` matching its patterns, with the sha256 to expect (recorded, else the hub's)."""
    from huggingface_hub import HfApi

    hub = source.hub
    info = HfApi(endpoint=endpoint).dataset_info(
        hub.repo_id, revision=hub.revision, files_metadata=True, timeout=timeout
    )
    recorded = {f.path: f for f in source.files if f.url is None}
    out = []
    for sib in sorted(info.siblings or [], key=lambda s: s.rfilename):
        if not any(fnmatch(sib.rfilename, p) for p in hub.patterns):
            continue
        lfs = sib.lfs
        hub_sha = (lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)) if lfs else None
        rec = recorded.get(sib.rfilename)
        if rec is not None and rec.sha256:
            if hub_sha and hub_sha != rec.sha256:  # fail before downloading what cannot match
                raise ChecksumMismatchError(
                    f"{source.name}/{rec.path}: the hub {hub.repo_id}@{hub.revision} publishes sha256 {hub_sha} for "
                    f"this file, not the recorded sha256 {rec.sha256} ({rec.checksum_origin}); nothing was downloaded"
                )
            out.append(dataclasses.replace(rec, size=rec.size or sib.size))
        else:
            out.append(RemoteFile(sib.rfilename, None, sib.size, hub_sha, f"the hub's LFS sha256 of {hub.repo_id}"))
    missing = sorted(set(recorded) - {f.path for f in out})
    if missing or not out:
        raise DatasetUnavailableError(
            f"{hub.repo_id}@{hub.revision} has no file matching {list(hub.patterns)}"
            + (f" (missing: {missing})" if missing else "")
            + "; the repository changed"
        )
    return out


def _fetch_hub_file(
    source: DatasetSource, rf: RemoteFile, folder: Path, endpoint: str, progress: bool, timeout: float
) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    hub = source.hub
    was_disabled = are_progress_bars_disabled()
    if not progress:
        disable_progress_bars()
    try:
        path = Path(
            hf_hub_download(
                hub.repo_id,
                rf.path,
                repo_type=hub.repo_type,
                revision=hub.revision,
                local_dir=folder,
                endpoint=endpoint,
                etag_timeout=timeout,
            )
        )
    finally:
        if not progress and not was_disabled:
            enable_progress_bars()
    url = f"{endpoint}/datasets/{hub.repo_id}/resolve/{hub.revision.replace('/', '%2F')}/{rf.path}"
    if rf.sha256 is None:
        log.warning("%s: no sha256 recorded or published for %s; it is used unverified", source.name, rf.path)
    _verify(path, rf.sha256, rf.size if rf.sha256 is None else None, url, rf.path)
    return path


# ---- unpacking --------------------------------------------------------------------------------------------------
MAX_MEMBERS = 100_000  # an archive of a task's data holds a handful of files
MAX_RATIO = 200  # uncompressed / compressed: text compresses 3-10x; far more is a decompression bomb


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, archive: Path) -> None:
    """One member into ``dest``, never more bytes than its header declares nor `MAX_RATIO` x its compressed size,
    and only when the disk has room for it."""
    limit = min(info.file_size, MAX_RATIO * max(info.compress_size, 1))
    if info.file_size > limit:
        raise DownloadError(
            f"{archive.name}: member {info.filename} would expand {info.compress_size:,} bytes to "
            f"{info.file_size:,} (more than {MAX_RATIO}x): not extracted"
        )
    free = shutil.disk_usage(dest.parent).free
    if info.file_size > free:
        raise DownloadError(
            f"disk full: extracting {info.filename} to {dest} needs {info.file_size:,} bytes, {free:,} are free"
        )
    written = 0
    with zf.open(info) as src, open(dest, "wb") as dst:
        while block := src.read(CHUNK):
            written += len(block)
            if written > limit:
                raise DownloadError(f"{archive.name}: member {info.filename} expands past its declared size")
            try:
                dst.write(block)
            except OSError as e:
                if e.errno in FULL_DISK:
                    raise DownloadError(
                        f"disk full ({e.strerror}): extracting {info.filename} to {dest} stopped after "
                        f"{written:,} bytes of {info.file_size:,}"
                    ) from None
                raise


def _build_zip(source: DatasetSource, files: dict[str, Path], out: Path) -> dict[str, int]:
    """Plain files are copied; ``source.members`` (output name -> member path suffix) are taken out of the archives."""
    archives = [p for rel, p in files.items() if rel.endswith(".zip")]
    for rel, p in files.items():
        if not rel.endswith(".zip"):
            shutil.copyfile(p, out / Path(rel).name)
    wanted = dict(source.members)
    for archive in archives:
        try:
            with zipfile.ZipFile(archive) as zf:
                if len(zf.infolist()) > MAX_MEMBERS:
                    raise DownloadError(f"{archive.name}: {len(zf.infolist()):,} members, more than {MAX_MEMBERS:,}")
                names = [n for n in zf.namelist() if not n.endswith("/")]
                for target, suffix in list(wanted.items()):
                    hits = [n for n in names if n == suffix or n.endswith("/" + suffix)]
                    if not hits:
                        continue
                    if len(hits) > 1:
                        raise DatasetUnavailableError(f"{archive.name}: several members match {suffix}: {hits}")
                    _extract(zf, zf.getinfo(hits[0]), out / target, archive)
                    del wanted[target]
        except (zipfile.BadZipFile, EOFError, zlib.error) as e:
            raise CorruptFileError(archive, e) from None
    if wanted:
        raise DatasetUnavailableError(
            f"{source.name}: the archive(s) {[a.name for a in archives]} lack {sorted(wanted.values())}"
        )
    return _count_rows(source, out)


def _count_rows(source: DatasetSource, out: Path) -> dict[str, int]:
    """Examples per split of line-based files (the first file of each split in ``source.layout``)."""
    split_of = {"train": "train", "dev": "validation", "validation": "validation", "test": "test", "tune": "tune"}
    rows: dict[str, int] = {}
    for name in source.layout:
        split = split_of.get(name.split(".")[0].split("_")[0])
        if split is None or split in rows or not (out / name).is_file():
            continue
        with open(out / name, "rb") as f:
            n = sum(1 for _ in f)
        rows[split] = n - 1 if source.header else n
    return rows


# ---- the whole thing --------------------------------------------------------------------------------------------
def is_prepared(folder: str | os.PathLike) -> bool:
    return (Path(folder) / MARKER).is_file()


def prepare_source(
    source: DatasetSource,
    dest: str | os.PathLike | None = None,
    *,
    mirror: str | None = None,
    progress: bool = True,
    keep_downloads: bool = False,
    timeout: float = 60.0,
    task: str | None = None,
    layout_help: str | None = None,
) -> Path:
    """Download, verify and unpack ``source`` into ``dest/<source.folder>`` (default ``dest``: ``default_dest()``)
    and return that folder. Already prepared: returned at once, offline too."""
    dest = Path(dest) if dest is not None else default_dest()
    final = dest / source.folder
    if is_prepared(final):
        return final
    if final.exists() and any(final.iterdir()):
        raise DatasetUnavailableError(
            f"{final} exists but was not written by bertgen-data (no {MARKER}); remove it, or pass it as data_dir= "
            f"if it already holds {', '.join(source.layout)}"
        )

    def fail(why: str) -> DatasetUnavailableError:
        return DatasetUnavailableError(
            unavailable_message(source, why, task=task, mirror=mirror, layout_help=layout_help)
        )

    offline = offline_variables()
    if offline:
        raise fail(f"offline mode ({' / '.join(offline)} is set), so nothing is downloaded") from None
    dest.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock  # a dependency of huggingface_hub

    with FileLock(str(dest / f".{source.folder}.lock")):
        if is_prepared(final):  # another process finished it while this one waited
            return final
        downloads = dest / ".downloads" / source.folder
        try:
            files = _download_all(source, downloads, mirror=mirror, progress=progress, timeout=timeout)
        except _NotAvailable as e:
            raise fail(str(e)) from None
        tmp = dest / f".{source.folder}.partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            log.info("%s: unpacking into %s", source.name, final)
            rows = (_build_zip if source.builder == "zip" else source.builder)(source, files, tmp)
        except CorruptFileError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            e.path.unlink(missing_ok=True)
            raise fail(f"{e} (a corrupt or truncated download; it was deleted, run again to fetch it afresh)") from None
        except DownloadError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise fail(str(e)) from None
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno in FULL_DISK:
                free = shutil.disk_usage(dest).free
                raise fail(f"disk full while unpacking into {tmp} ({free:,} bytes free on that disk)") from None
            raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _check_rows(source, rows)
        (tmp / MARKER).write_text(
            json.dumps(
                {
                    "source": source.name,
                    "title": source.title,
                    "homepage": source.homepage,
                    "urls": source_urls(source, mirror),
                    "files": [
                        {"path": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size}
                        for rel, p in sorted(files.items())
                    ],
                    "rows": rows,
                    "prepared": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
        if final.exists():
            final.rmdir()  # empty (checked above)
        os.replace(tmp, final)
        if not keep_downloads:
            shutil.rmtree(downloads, ignore_errors=True)
    log.info("%s: ready in %s (%s)", source.name, final, ", ".join(f"{k} {v:,}" for k, v in rows.items()))
    return final


class _NotAvailable(Exception):
    """A source that cannot be reached right now (offline, 404, connection refused, dropped for good)."""


def _download_all(
    source: DatasetSource, downloads: Path, *, mirror: str | None, progress: bool, timeout: float
) -> dict[str, Path]:
    """Every file of ``source`` in ``downloads``, verified: repository path -> local file."""
    out: dict[str, Path] = {}
    for f in source.files:
        if f.url is None:
            continue
        url = mirror_url(f.url, mirror)
        try:
            out[f.path] = fetch_url(
                url,
                downloads / Path(f.path).name,
                sha256=f.sha256,
                size=f.size,
                progress=progress,
                timeout=timeout,
                what=f"{source.name}/{f.path}",
            )
        except ChecksumMismatchError:
            raise
        except DownloadError as e:
            raise _NotAvailable(str(e)) from None
        except urllib.error.HTTPError as e:
            where = url if not e.url or e.url == url else f"{url} (redirected to {e.url})"
            raise _NotAvailable(f"{where} answered HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, _Dropped, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise _NotAvailable(f"{url} could not be reached ({type(e).__name__}: {reason})") from None
    if source.hub is not None:
        endpoint = hub_endpoint(mirror)
        try:
            listing = _hub_listing(source, endpoint, timeout)
            for rf in listing:
                out[rf.path] = _fetch_hub_file(source, rf, downloads / "hub", endpoint, progress, timeout)
        except ChecksumMismatchError:
            raise
        except DatasetUnavailableError as e:
            raise _NotAvailable(str(e)) from None
        except Exception as e:  # noqa: BLE001 - huggingface_hub/requests: offline, 404, unreachable, gated...
            first = str(e).splitlines()[0][:300] if str(e) else ""
            raise _NotAvailable(
                f"the hub at {endpoint} could not serve {source.hub.repo_id} ({type(e).__name__}: {first})"
            ) from None
    return out


def _check_rows(source: DatasetSource, rows: dict[str, int]) -> None:
    for split, n in rows.items():
        want = source.rows.get(split)
        if want is not None and want != n:
            log.warning("%s/%s: %d examples where the source's card says %d", source.name, split, n, want)


def prepare_task(task: Any, dest: str | os.PathLike | None = None, **kwargs: Any) -> Path:
    """``prepare_source`` for a task (``bertgen.data.tasks.Task``): its official source, its name and its layout
    help in the error message. Raises ``DatasetUnavailableError`` when the task has no official source."""
    source = task.download_source()
    if source is None:
        raise DatasetUnavailableError(f"{task.name}: no official source; pass data_dir= or data_files=")
    return prepare_source(source, dest, task=task.name, layout_help=task.layout_help(), **kwargs)

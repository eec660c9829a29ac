"""Files: atomic writes (a crash or a failed write never leaves a half-written file, and a failure is raised) and
content hashes (the one helper behind checksums, cache keys and dataset fingerprints)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_BLOCK = 1 << 20


def _update(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 of one file's bytes (what published checksums are)."""
    h = hashlib.sha256()
    _update(h, Path(path))
    return h.hexdigest()


def hash_files(paths: Iterable[str | os.PathLike]) -> str:
    """One content hash of several files, names included, in the given order; a folder hashes its files in sorted
    order (a cache key: any change to any file's bytes or name changes it)."""
    h = hashlib.blake2b(digest_size=16)
    for p in map(Path, paths):
        for f in sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]:
            h.update(str(f.name).encode() + b"\0")
            _update(h, f)
    return h.hexdigest()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write to a temporary file beside ``path``, flush it to disk and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

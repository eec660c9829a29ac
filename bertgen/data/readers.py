"""Streaming row readers for the file formats the tasks accept (TSV, CSV, JSON Lines, Parquet, line-aligned pairs),
and the helpers the tasks' download builders use to turn published parquet files into those formats.

Every reader yields ``(where, row)`` with ``where = "path:line"`` so that a malformed row can be named exactly, and
reads lazily so that a multi-million-row file never sits in memory. Files are read as bytes and decoded line by line:
an invalid UTF-8 byte is reported on its own line instead of aborting the whole file (or, worse, being replaced).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from itertools import zip_longest
from pathlib import Path
from typing import Any

from bertgen.data.errors import CorruptFileError, DataFormatError, DatasetUnavailableError, InvalidRows

csv.field_size_limit(sys.maxsize)  # CNN/DM articles exceed csv's 128 KiB default field limit


def iter_lines(path: Path, invalid: InvalidRows) -> Iterator[tuple[int, str | None]]:
    """Yield ``(line_number, text)`` without the line break; ``text`` is None for a line that is not UTF-8 or holds
    a NUL byte (already reported, so only seen with ``skip_invalid``). Only ``\\n`` (and ``\\r\\n``) break lines,
    unlike ``str.splitlines``, which would also split on U+2028 and friends inside a sentence. A UTF-8 byte order
    mark before the first line is not text; blank lines at the end of the file are not rows (editors add them)."""
    blank: list[int] = []  # blank lines seen but not yet yielded: dropped if nothing but blanks follows
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\n")
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                blank.append(lineno)
                continue
            for n in blank:
                yield n, ""
            blank = []
            if b"\x00" in raw:
                invalid.report(f"{path}:{lineno}", "nul_byte", f"a NUL byte at byte {raw.index(0)}")
                yield lineno, None
                continue
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                invalid.report(f"{path}:{lineno}", "invalid_utf8", f"byte {e.start}: {raw[e.start : e.start + 4]!r}")
                yield lineno, None


def iter_tsv(
    path: Path, invalid: InvalidRows, n_cols: int, header: Sequence[str] | None = None
) -> Iterator[tuple[str, list[str]]]:
    """Tab-separated rows with exactly ``n_cols`` fields (no quoting, as in the fusion and splitting releases).

    With ``header``, the first line must be that header (a wrong header is a wrong file, so it always raises)."""
    for lineno, line in iter_lines(path, invalid):
        if lineno == 1 and header is not None:
            if line is None or line.split("\t") != list(header):
                raise DataFormatError(f"{path}:1: expected the header {'<TAB>'.join(header)!r}, found {line!r}")
            continue
        if line is None:
            continue
        fields = line.split("\t")
        if len(fields) != n_cols:
            invalid.report(
                f"{path}:{lineno}", "wrong_column_count", f"expected {n_cols} tab-separated fields, found {len(fields)}"
            )
            continue
        yield f"{path}:{lineno}", fields


def iter_csv(path: Path, invalid: InvalidRows, required: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """CSV with a header row; quoted fields may span lines (CNN/DM highlights do).

    ``where`` is the record's first line."""
    bad_lines: set[int] = set()

    def decoded() -> Iterator[str]:
        for lineno, line in iter_lines(path, invalid):
            if line is None:  # keep the record structure intact, mark the record as bad
                bad_lines.add(lineno)
                line = ""
            yield line + "\n"

    reader = csv.reader(decoded(), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataFormatError(f"{path}: empty CSV file (expected a header with {', '.join(required)})") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise DataFormatError(f"{path}:1: CSV header {header} lacks column(s) {missing}")
    cols = {c: header.index(c) for c in required}
    start = reader.line_num + 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataFormatError(f"{path}:{start}: unreadable CSV record ({e})") from None
        end = reader.line_num
        where, first = f"{path}:{start}", start
        start = end + 1
        if any(first <= b <= end for b in bad_lines):
            continue  # reported by iter_lines (skip mode)
        if len(record) != len(header):
            invalid.report(where, "wrong_column_count", f"expected {len(header)} fields, found {len(record)}")
            continue
        yield where, {c: record[i] for c, i in cols.items()}


def iter_jsonl(path: Path, invalid: InvalidRows, required: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """One JSON object per line holding string values for ``required``; blank lines are malformed rows."""
    for lineno, line in iter_lines(path, invalid):
        if line is None:
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            invalid.report(where, "invalid_json", str(e))
            continue
        if not isinstance(obj, dict) or any(not isinstance(obj.get(k), str) for k in required):
            got = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            invalid.report(where, "missing_field", f"expected string fields {list(required)}, found {got}")
            continue
        yield where, obj


def iter_parquet(path: Path, invalid: InvalidRows, required: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Parquet rows (1-based row numbers), read one record batch at a time."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a file that is not parquet
        raise DataFormatError(f"{path}: not a Parquet file ({type(e).__name__}: {str(e)[:160]})") from None
    missing = [c for c in required if c not in pf.schema_arrow.names]
    if missing:
        raise DataFormatError(f"{path}: Parquet columns {pf.schema_arrow.names} lack {missing}")
    row = 0
    for batch in pf.iter_batches(columns=list(required), batch_size=8192):
        cols = [batch.column(c).to_pylist() for c in required]
        for values in zip(*cols):
            row += 1
            if any(v is not None and not isinstance(v, str) for v in values):
                invalid.report(
                    f"{path}:row {row}",
                    "not_a_string",
                    f"columns {list(required)} hold {[type(v).__name__ for v in values]}",
                )
                continue
            yield f"{path}:row {row}", {c: (v or "") for c, v in zip(required, values)}


def iter_line_pairs(src: Path, tgt: Path, invalid: InvalidRows) -> Iterator[tuple[str, tuple[str, str]]]:
    """Line-aligned source/target files (``src-train.txt``/``tgt-train.txt``, ``train.en``/``train.de``...).

    Different line counts mean the files are not aligned; that always raises, because every pair after the first
    missing line would be wrong."""
    for (n, s), (_, t) in _zip_strict(iter_lines(src, invalid), iter_lines(tgt, invalid), src, tgt):
        if s is None or t is None:
            continue
        yield f"{src}:{n}", (s, t)


def _zip_strict(a: Iterator, b: Iterator, pa: Path, pb: Path) -> Iterator[tuple]:
    n = 0
    for x, y in zip_longest(a, b):
        if x is None or y is None:
            longer, shorter = (pa, pb) if y is None else (pb, pa)
            raise DataFormatError(
                f"{longer}:{n + 1}: line-aligned files differ in length: {shorter} ends after {n} lines"
            )
        n += 1
        yield x, y


# ---- published parquet files -> the readers' formats (the tasks' download builders) ------------------------------
def parquet_by_split(files: dict[str, Path]) -> dict[str, list[Path]]:
    """Parquet files of a download (repository path -> local file) grouped by split:
    ``default/train/0000.parquet`` and ``3.0.0/train-00000-of-00003.parquet`` are both ``train``."""
    out: dict[str, list[Path]] = {}
    for rel in sorted(files):
        if rel.endswith(".parquet"):
            p = Path(rel)
            split = p.parent.name if p.parent.name in ("train", "validation", "test") else p.name.split("-")[0]
            out.setdefault(split.split(".")[0], []).append(files[rel])
    return out


def parquet_rows(paths: list[Path], columns: list[str]) -> Iterator[dict[str, Any]]:
    """Rows of downloaded parquet files; a file that is not parquet raises `CorruptFileError` (the download is bad)."""
    import pyarrow.parquet as pq

    for p in paths:
        try:
            pf = pq.ParquetFile(p)
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a file that is not parquet
            raise CorruptFileError(p, e) from None
        missing = [c for c in columns if c not in pf.schema_arrow.names]
        if missing:
            raise DatasetUnavailableError(f"{p.name}: parquet columns {pf.schema_arrow.names} lack {missing}")
        for batch in pf.iter_batches(columns=columns, batch_size=4096):
            yield from batch.to_pylist()


def one_line(text: Any) -> str:
    """A field as one line of a line-based file (tabs and line breaks become spaces)."""
    return " ".join(str(text if text is not None else "").replace("\t", " ").splitlines())

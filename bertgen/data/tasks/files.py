"""A user's own data: TSV / CSV / JSON Lines / Parquet files with named source and target columns."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bertgen.data.errors import DataFormatError, InvalidRows
from bertgen.data.readers import iter_csv, iter_jsonl, iter_parquet, iter_tsv
from bertgen.data.tasks.base import Task, expect_file, register


@register
@dataclass
class FilesTask(Task):
    """A user's own data: TSV (with header), CSV, JSON Lines or Parquet files with named source/target columns.

    The format follows the suffix (``.tsv``, ``.csv``, ``.jsonl``/``.json``, ``.parquet``) unless ``file_format``
    is set. There is no hub source and no data_dir discovery: pass ``data_files={split: path}``. Scored with
    ROUGE-1/2/L and sacreBLEU (natural text, no task-specific metric); headline ROUGE-2.
    """

    name: ClassVar[str] = "files"
    headline: ClassVar[str] = "rouge2"
    source_column: str = "source"
    target_column: str = "target"
    file_format: str | None = None

    FORMATS: ClassVar = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}

    @classmethod
    def metrics(cls):
        from bertgen.metrics import ROUGE, SacreBLEU

        return {"rouge": ROUGE(("rouge1", "rouge2", "rougeL")), "sacrebleu": SacreBLEU()}

    def _read_local(self, entry, invalid):
        path = expect_file(entry, self.name)
        fmt = self.file_format or self.FORMATS.get(path.suffix.lower())
        cols = (self.source_column, self.target_column)
        if fmt == "tsv":
            rows = self._iter_tsv_with_header(path, invalid, cols)
        elif fmt == "csv":
            rows = iter_csv(path, invalid, cols)
        elif fmt == "jsonl":
            rows = iter_jsonl(path, invalid, cols)
        elif fmt == "parquet":
            rows = iter_parquet(path, invalid, cols)
        else:
            raise DataFormatError(
                f"{path}: unknown format (suffix {path.suffix!r}); set file_format to one of tsv, csv, jsonl, parquet"
            )
        for where, row in rows:
            yield where, row[cols[0]], row[cols[1]]

    @staticmethod
    def _iter_tsv_with_header(path: Path, invalid: InvalidRows, cols: Sequence[str]) -> Iterator[tuple[str, dict]]:
        with open(path, "rb") as f:
            first = f.readline().rstrip(b"\r\n").decode("utf-8", errors="replace")
        header = first.split("\t")
        missing = [c for c in cols if c not in header]
        if missing:
            raise DataFormatError(f"{path}:1: TSV header {header} lacks column(s) {missing}")
        idx = {c: header.index(c) for c in cols}
        for where, fields in iter_tsv(path, invalid, len(header), header=header):
            yield where, {c: fields[i] for c, i in idx.items()}

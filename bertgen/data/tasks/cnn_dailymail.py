"""CNN/DailyMail 3.0.0 summarisation: reader, official release (hub parquet), metrics, the paper's Table 5.

Checksums: the parquet files on the Hugging Face hub have no sha256 recorded in any stored source; they are verified
against the sha256 the hub publishes for each LFS file, and their row counts against the dataset card's split sizes.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bertgen.data.readers import iter_csv, parquet_by_split, parquet_rows
from bertgen.data.sources import DatasetSource, HubRepo
from bertgen.data.tasks.base import PaperColumn, PaperResults, Task, expect_file, paper_rows, register


def _build_from_parquet(source: DatasetSource, files: dict[str, Path], out: Path) -> dict[str, int]:
    rows = {}
    for split, paths in parquet_by_split(files).items():
        with open(out / f"{split}.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["id", "article", "highlights"])
            n = 0
            for r in parquet_rows(paths, ["id", "article", "highlights"]):
                w.writerow([r["id"], r["article"], r["highlights"]])
                n += 1
        rows[split] = n
    return rows


OFFICIAL = DatasetSource(
    name="cnn_dailymail",
    title="CNN/DailyMail 3.0.0 (non-anonymised), parquet files of the hub dataset abisee/cnn_dailymail",
    homepage="https://huggingface.co/datasets/abisee/cnn_dailymail",
    folder="cnn_dailymail",
    builder=_build_from_parquet,
    layout=("train.csv", "validation.csv", "test.csv"),
    hub=HubRepo("abisee/cnn_dailymail", "main", ("3.0.0/*.parquet",)),
    rows={"train": 287_113, "validation": 13_368, "test": 11_490},
    note="3.0.0/train-0000{0,1,2}-of-00003.parquet, validation-00000-of-00001.parquet, "
    "test-00000-of-00001.parquet; sha256: the hub's LFS checksums (none recorded elsewhere).",
)

# Table 5 - summarisation, ROUGE F1: this task's three columns.
TABLE5_PART = PaperResults(
    5,
    "Summarization (ROUGE F1)",
    (
        PaperColumn("CNN/DM R-1", "rouge1", 3),
        PaperColumn("CNN/DM R-2", "rouge2", 4),
        PaperColumn("CNN/DM R-L", "rougeL", 5),
    ),
    (
        *paper_rows(
            None,
            "",
            ("Lead", None, 39.6, 17.7, 36.2),
            ("PtGen", None, 39.53, 17.28, 36.38),
            ("ConvS2S", None, None, None, None),
            ("MMN", None, None, None, None),
            ("Bottom-Up", None, 41.22, 18.68, 38.34),
            ("MASS", None, None, None, None),
            ("TransLM", None, 39.65, 17.74, 36.85),
            ("UniLM", None, 43.47, 20.3, 40.63),
        ),
        *paper_rows(
            "base",
            "base (12 layers)",
            ("rnd2rnd", "rnd2rnd", 35.77, 14.0, 32.96),
            ("bert2rnd", "bert2rnd", 38.74, 17.76, 35.95),
            ("rnd2bert", "rnd2bert", 36.65, 15.55, 33.97),
            ("bert2bert", "bert2bert", 39.02, 17.84, 36.29),
            ("bertShare", "bertshare", 39.09, 18.1, 36.33),
            ("robertaShare", "robertashare", 40.1, 18.95, 37.39),
            ("gpt", "gpt", 37.26, 15.83, 34.47),
            ("rnd2gpt", "rnd2gpt", 32.08, 8.81, 29.03),
            ("bert2gpt", "bert2gpt", 25.2, 4.96, 22.99),
            ("roberta2gpt", "roberta2gpt", 36.35, 14.72, 33.79),
        ),
        *paper_rows(
            "large",
            "large (24 layers)",
            ("bertShare", "bertshare", 39.83, 17.69, 37.01),
            ("robertaShare", "robertashare", 40.31, 18.91, 37.62),
        ),
    ),
    notes=(
        "R-L is `rougeL` (sentence-level LCS); the paper does not say which ROUGE-L it reports "
        "(evaluate.py also logs `rougeLsum` for CNN/DM).",
    ),
)


@register
@dataclass
class CNNDailyMailTask(Task):
    """CNN/DailyMail 3.0.0 (non-anonymised, cased; paper §4), lengths 512/128 (paper §2).

    The target keeps the highlights as newline-separated sentences (``highlight_separator``), which ROUGE-Lsum
    needs; the tokenizer sees the newline as whitespace. Hub: ``abisee/cnn_dailymail``, config ``3.0.0``.
    Local files: CSV with a header holding at least ``article,highlights`` (the Kaggle/HF dump ``id,article,
    highlights``, with or without a leading index column): ``data_dir`` holds ``train.csv``, ``validation.csv``
    (or ``val.csv``), ``test.csv``. Scored with ROUGE-1/2/L and ROUGE-Lsum F1; headline ROUGE-2.
    """

    name: ClassVar[str] = "cnn_dailymail"
    default_hub_path: ClassVar[str] = "abisee/cnn_dailymail"
    default_hub_config: ClassVar[str] = "3.0.0"
    local_layouts: ClassVar = {
        "train": ["train.csv"],
        "validation": ["validation.csv", "val.csv"],
        "test": ["test.csv"],
    }
    sources: ClassVar = (OFFICIAL,)
    headline: ClassVar[str] = "rouge2"
    paper: ClassVar = (TABLE5_PART,)
    released: ClassVar = {"google/roberta2roberta_L-24_cnn_daily_mail": ("robertashare", "large")}

    max_source_length: int = 512
    max_target_length: int = 128
    highlight_separator: str = "\n"

    @classmethod
    def metrics(cls):
        from bertgen.metrics import ROUGE, OutputLength, Repetition

        # multi-sentence summaries: ROUGE-Lsum over the highlight sentences as well; length and repetitions as
        # Table 7 reports them for XSum
        return {
            "rouge": ROUGE(("rouge1", "rouge2", "rougeL", "rougeLsum"), split_sentences=True),
            "length": OutputLength(),
            "repetitions": Repetition(),
        }

    def _read_local(self, entry, invalid):
        for where, row in iter_csv(expect_file(entry, self.name), invalid, ("article", "highlights")):
            yield where, row["article"], self._highlights(row["highlights"])

    def hub_example(self, row):
        return row["article"], self._highlights(row["highlights"])

    def _highlights(self, text: str) -> str:
        return self.highlight_separator.join(s.strip() for s in text.splitlines() if s.strip())

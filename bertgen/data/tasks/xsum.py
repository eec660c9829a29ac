"""BBC XSum extreme summarisation (Narayan et al. 2018): readers, official release, metrics, the paper's Table 5.

Checksums: the hub's parquet export has no sha256 recorded in any stored source; the files are verified against the
sha256 the hub publishes for each LFS file, and their row counts against the dataset card's split sizes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bertgen.data.errors import DataFormatError, InvalidRows
from bertgen.data.readers import iter_jsonl, iter_lines, parquet_by_split, parquet_rows
from bertgen.data.sources import DatasetSource, HubRepo
from bertgen.data.tasks.base import (
    GOLD,
    SPLITS,
    PaperColumn,
    PaperResults,
    SummaryFiles,
    Task,
    paper_rows,
    register,
)


def _build_from_parquet(source: DatasetSource, files: dict[str, Path], out: Path) -> dict[str, int]:
    rows = {}
    for split, paths in parquet_by_split(files).items():
        with open(out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            n = 0
            for r in parquet_rows(paths, ["document", "summary", "id"]):
                record = {"document": r["document"] or "", "summary": r["summary"] or "", "id": r["id"]}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                n += 1
        rows[split] = n
    return rows


OFFICIAL = DatasetSource(
    name="xsum",
    title="BBC XSum (Narayan et al. 2018), parquet export of EdinburghNLP/xsum (revision refs/convert/parquet)",
    homepage="https://huggingface.co/datasets/EdinburghNLP/xsum",
    folder="xsum",
    builder=_build_from_parquet,
    layout=("train.jsonl", "validation.jsonl", "test.jsonl"),
    hub=HubRepo("EdinburghNLP/xsum", "refs/convert/parquet", ("default/*/*.parquet",)),
    rows={"train": 204_045, "validation": 11_332, "test": 11_334},
    note="default/{train,validation,test}/0000.parquet (main holds only the loading script); sha256: the hub's "
    "LFS checksums (none recorded elsewhere).",
)

# Table 5 - summarisation, ROUGE F1: this task's three columns.
TABLE5_PART = PaperResults(
    5,
    "Summarization (ROUGE F1)",
    (
        PaperColumn("XSum R-1", "rouge1", 6),
        PaperColumn("XSum R-2", "rouge2", 7),
        PaperColumn("XSum R-L", "rougeL", 8),
    ),
    (
        *paper_rows(
            None,
            "",
            ("Lead", None, 16.3, 1.61, 11.95),
            ("PtGen", None, 29.7, 9.21, 23.24),
            ("ConvS2S", None, 31.89, 11.54, 25.75),
            ("MMN", None, 32.0, 12.1, 26.0),
            ("Bottom-Up", None, None, None, None),
            ("MASS", None, None, None, None),
            ("TransLM", None, None, None, None),
            ("UniLM", None, None, None, None),
        ),
        *paper_rows(
            "base",
            "base (12 layers)",
            ("rnd2rnd", "rnd2rnd", 30.9, 10.23, 24.24),
            ("bert2rnd", "bert2rnd", 38.42, 15.83, 30.8),
            ("rnd2bert", "rnd2bert", 32.44, 11.52, 25.65),
            ("bert2bert", "bert2bert", 37.53, 15.24, 30.05),
            ("bertShare", "bertshare", 38.52, 16.12, 31.13),
            ("robertaShare", "robertashare", 39.87, 17.5, 32.37),
            ("gpt", "gpt", 22.21, 4.89, 16.69),
            ("rnd2gpt", "rnd2gpt", 28.48, 8.77, 22.3),
            ("bert2gpt", "bert2gpt", 27.79, 8.37, 21.91),
            ("roberta2gpt", "roberta2gpt", 19.91, 5.2, 15.88),
        ),
        *paper_rows(
            "large",
            "large (24 layers)",
            ("bertShare", "bertshare", 38.93, 16.35, 31.52),
            ("robertaShare", "robertashare", 41.45, 18.79, 33.9),
        ),
    ),
    notes=(
        "R-L is `rougeL` (sentence-level LCS); the paper does not say which ROUGE-L it reports "
        "(evaluate.py also logs `rougeLsum` for CNN/DM).",
    ),
)


# Table 7 - XSum: summary length in words, % of summaries repeating a content word, and the human Best-Worst Scaling
# quality of 40 test documents (printed only: no run computes it). The repetition percentages cannot be over 40
# summaries (k/40 is a multiple of 2.5%); the fewest summaries giving all five is 2,789, so they are most likely over
# the whole test set (11,334), as an evaluate.py run's are.
TABLE7 = PaperResults(
    7,
    "XSum summaries: length, repetitions and human quality",
    (
        PaperColumn("Length", "length", 0),
        PaperColumn("Repetitions (%)", "repetitions", 1),
        PaperColumn("Quality", "quality", 2, computable=False),
    ),
    (
        *paper_rows(
            "base",
            "",
            ("rnd2rnd", "rnd2rnd", 20.90, 29.76, -0.103),
            ("rnd2gpt", "rnd2gpt", 21.49, 16.28, -0.303),
            ("bertShare", "bertshare", 20.71, 27.03, -0.097),
            ("robertaShare", "robertashare", 21.70, 28.68, 0.153),
        ),
        *paper_rows(None, "", ("Gold", GOLD, 24.61, 4.66, 0.347)),
    ),
    notes=(
        "Length: words per summary. Repetitions: % of summaries in which a word outside the 500 most common ones "
        "occurs twice (here: the 500 most frequent words of the evaluated references; see bertgen's metrics page). "
        "The paper's "
        "two columns are most likely over the whole test set (its repetition values are not k/40, so not over the "
        "40 documents of its human evaluation). Gold: the references of each evaluated XSum split, scored by the "
        "report from the run's predictions.jsonl. Quality: the human Best-Worst Scaling score in [-1, 1], the "
        "paper's value only.",
    ),
)


@register
@dataclass
class XSumTask(Task):
    """BBC XSum (Narayan et al. 2018), cased, lengths 512/64 (paper §2). Source = document, target = summary.

    Hub: ``EdinburghNLP/xsum``. Local layouts:
      * JSON Lines with string fields ``document`` and ``summary``: ``data_dir/{train,validation,test}.jsonl``;
      * the original release: ``data_dir/bbc-summary-data/<id>.summary`` files (sections ``[SN]URL[SN]``,
        ``[SN]TITLE[SN]``, ``[SN]FIRST-SENTENCE[SN]`` = summary, ``[SN]RESTBODY[SN]`` = document) split by
        ``data_dir/XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json`` (keys ``train``, ``validation``, ``test``).
    ``data_files`` may also name a ``.summary`` file or a folder of them directly.
    Scored with ROUGE-1/2/L F1; headline ROUGE-2.
    """

    name: ClassVar[str] = "xsum"
    default_hub_path: ClassVar[str] = "EdinburghNLP/xsum"
    local_layouts: ClassVar = {s: [f"{s}.jsonl"] for s in SPLITS}
    SPLIT_FILE: ClassVar[str] = "XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json"
    sources: ClassVar = (OFFICIAL,)
    headline: ClassVar[str] = "rouge2"
    paper: ClassVar = (TABLE5_PART, TABLE7)
    released: ClassVar = {"google/roberta2roberta_L-24_bbc": ("robertashare", "large")}

    max_source_length: int = 512
    max_target_length: int = 64

    @classmethod
    def metrics(cls):
        from bertgen.metrics import ROUGE, OutputLength, Repetition

        # length and repetitions: Table 7's automatic columns (paper §6)
        return {"rouge": ROUGE(("rouge1", "rouge2", "rougeL")), "length": OutputLength(), "repetitions": Repetition()}

    def find_local(self, data_dir, split):
        release, split_file = data_dir / "bbc-summary-data", data_dir / self.SPLIT_FILE
        if not (data_dir / f"{split}.jsonl").is_file() and release.is_dir() and split_file.is_file():
            ids = json.loads(split_file.read_text(encoding="utf-8")).get(split)
            if ids is None:
                raise DataFormatError(f"{split_file}: has no '{split}' key")
            return SummaryFiles(release, tuple(str(i) for i in ids))
        return super().find_local(data_dir, split)

    def layout_help(self, split=None):
        return (
            super().layout_help(split)[:-1]
            + f"; or the release layout bbc-summary-data/<id>.summary + {self.SPLIT_FILE}."
        )

    def _read_local(self, entry, invalid):
        if isinstance(entry, Path) and entry.suffix != ".summary" and not entry.is_dir():
            for where, row in iter_jsonl(entry, invalid, ("document", "summary")):
                yield where, row["document"], row["summary"]
            return
        if isinstance(entry, Path):
            entry = SummaryFiles(entry)
        if not isinstance(entry, SummaryFiles):
            raise DataFormatError(f"xsum: expected a .jsonl file, a .summary file or a folder of them, got {entry}")
        if entry.path.is_file():
            files = [entry.path]
        elif entry.ids is not None:
            files = [entry.path / f"{i}.summary" for i in entry.ids]
        else:
            files = sorted(entry.path.glob("*.summary"))
        for f in files:
            if not f.is_file():
                invalid.report(str(f), "missing_file", "listed in the split file but absent")
                continue
            summary, document = self._parse_summary_file(f, invalid)
            if summary is not None:
                yield f"{f}:1", document, summary

    @staticmethod
    def _parse_summary_file(path: Path, invalid: InvalidRows) -> tuple[str | None, str | None]:
        sections: dict[str, list[str]] = {}
        current = None
        for _, line in iter_lines(path, invalid):
            if line is None:
                return None, None
            m = re.fullmatch(r"\[SN\](\S+)\[SN\]", line.strip())
            if m:
                current = sections.setdefault(m.group(1), [])
            elif current is not None:
                current.append(line)
        if "FIRST-SENTENCE" not in sections or "RESTBODY" not in sections:
            invalid.report(
                f"{path}:1",
                "missing_field",
                f"expected [SN]FIRST-SENTENCE[SN] and [SN]RESTBODY[SN], found {sorted(sections)}",
            )
            return None, None
        body = "\n".join(s.strip() for s in sections["RESTBODY"] if s.strip())
        return " ".join(s.strip() for s in sections["FIRST-SENTENCE"] if s.strip()), body

    def hub_example(self, row):
        return row["document"], row["summary"]

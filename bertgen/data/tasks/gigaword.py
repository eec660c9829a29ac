"""Gigaword headline generation (Rush et al. 2015 split): readers, official release, metrics, the paper's Table 5.

Checksum: the ``datasets`` legacy loading script ``gigaword``, ``dataset_infos.json``, records 578,402,958 bytes and
the sha256 for the Google Drive original of ``ggw_data.zip``. The hub repository ``Harvard/gigaword`` now hosts that
archive as ``data/ggw_data.zip`` (commit "Host source data (#5)"); its dataset card after that commit gives the same
``download_size`` (578,402,958), so the hub copy is taken to be the same bytes. That identity was NOT verified by hash
here (no network on the machine that wrote this): a mismatch is reported, naming both hashes. Row counts from the
same ``dataset_infos.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from bertgen.data.readers import iter_line_pairs, iter_lines
from bertgen.data.sources import HF_DATASETS_SCRIPTS, DatasetSource, HubRepo, RemoteFile
from bertgen.data.tasks.base import PaperColumn, PaperResults, Task, expect_file, paper_rows, register

OFFICIAL = DatasetSource(
    name="gigaword",
    title="Gigaword headlines (Rush et al. 2015 split, UniLM org_data), ggw_data.zip hosted in Harvard/gigaword",
    homepage="https://huggingface.co/datasets/Harvard/gigaword",
    folder="gigaword",
    builder="zip",
    layout=("train.src.txt", "train.tgt.txt", "dev.src.txt", "dev.tgt.txt", "test.src.txt", "test.tgt.txt"),
    files=(
        RemoteFile(
            "data/ggw_data.zip",
            None,
            578_402_958,
            "bc0c4a2e1aa19cf2123688b87bc2d778c0d8fc24a4090e3c10a27c5faa1b898b",
            f"{HF_DATASETS_SCRIPTS} gigaword, dataset_infos.json (the Google Drive original of the same "
            "archive; same size on the hub dataset card)",
        ),
    ),
    hub=HubRepo("Harvard/gigaword", "main", ("data/ggw_data.zip",)),
    members={
        f"{s}.{side}.txt": f"org_data/{s}.{side}.txt" for s in ("train", "dev", "test") for side in ("src", "tgt")
    },
    rows={"train": 3_803_957, "validation": 189_651, "test": 1_951},
    download_size=578_402_958,
    note="a plain file download (the repository's loading script is not run); train/dev keep the archive's "
    "<unk> tokens (the hub script rewrote them to UNK).",
)

# Table 5 - summarisation, ROUGE F1: this task's three columns.
TABLE5_PART = PaperResults(
    5,
    "Summarization (ROUGE F1)",
    (
        PaperColumn("Giga R-1", "rouge1", 0),
        PaperColumn("Giga R-2", "rouge2", 1),
        PaperColumn("Giga R-L", "rougeL", 2),
    ),
    (
        *paper_rows(
            None,
            "",
            ("Lead", None, None, None, None),
            ("PtGen", None, None, None, None),
            ("ConvS2S", None, 35.88, 17.48, 33.29),
            ("MMN", None, None, None, None),
            ("Bottom-Up", None, None, None, None),
            ("MASS", None, 38.73, 19.71, 35.96),
            ("TransLM", None, None, None, None),
            ("UniLM", None, None, None, None),
        ),
        *paper_rows(
            "base",
            "base (12 layers)",
            ("rnd2rnd", "rnd2rnd", 36.94, 18.71, 34.45),
            ("bert2rnd", "bert2rnd", 37.71, 19.26, 35.26),
            ("rnd2bert", "rnd2bert", 37.01, 18.91, 34.51),
            ("bert2bert", "bert2bert", 38.01, 19.68, 35.58),
            ("bertShare", "bertshare", 38.13, 19.81, 35.62),
            ("robertaShare", "robertashare", 38.21, 19.7, 35.44),
            ("gpt", "gpt", 36.04, 18.44, 33.67),
            ("rnd2gpt", "rnd2gpt", 36.21, 18.39, 33.83),
            ("bert2gpt", "bert2gpt", 36.77, 18.23, 34.24),
            ("roberta2gpt", "roberta2gpt", 37.94, 19.21, 35.42),
        ),
        *paper_rows(
            "large",
            "large (24 layers)",
            ("bertShare", "bertshare", 38.35, 19.8, 35.66),
            ("robertaShare", "robertashare", 38.62, 19.78, 35.94),
        ),
    ),
    notes=(
        "R-L is `rougeL` (sentence-level LCS); the paper does not say which ROUGE-L it reports "
        "(evaluate.py also logs `rougeLsum` for CNN/DM).",
    ),
)


@register
@dataclass
class GigawordTask(Task):
    """Gigaword headline generation (Rush et al. 2015 split), lowercased (paper §4); lengths 128/32 (paper §2).

    Hub: ``Harvard/gigaword`` (``document`` -> ``summary``).
    Local layouts under ``data_dir`` (per split; ``validation`` also as ``valid``/``dev``):
      * line-aligned ``{split}.src`` + ``{split}.tgt``;
      * the same as ``{split}.src.txt`` + ``{split}.tgt.txt`` (``org_data/`` of ``ggw_data.zip`` in
        ``Harvard/gigaword``, the names ``bertgen-data download gigaword`` writes; ``dev`` is the validation split);
      * Rush et al.'s ``sumdata`` names ``{split}.article.txt`` + ``{split}.title.txt``;
      * the text2text ``key=value`` format ``{split}.txt``: one example per line with tab-separated
        ``target="<s> ... </s>"``, ``source="<s> ... </s>"`` (other keys ignored). Its sources are whole
        articles: with ``first_sentence=True`` (default) only the first sentence (up to the first `` . ``) is
        kept, which is the Rush et al. task.
    Scored with ROUGE-1/2/L F1 (``rouge-score``); headline ROUGE-2.
    """

    name: ClassVar[str] = "gigaword"
    default_hub_path: ClassVar[str] = "Harvard/gigaword"
    local_layouts: ClassVar = {
        s: [(f"{a}.src", f"{a}.tgt") for a in al]
        + [(f"{a}.src.txt", f"{a}.tgt.txt") for a in al]
        + [(f"{a}.article.txt", f"{a}.title.txt") for a in al]
        + [f"{a}.txt" for a in al]
        for s, al in {"train": ["train"], "validation": ["validation", "valid", "dev"], "test": ["test"]}.items()
    }
    sources: ClassVar = (OFFICIAL,)
    headline: ClassVar[str] = "rouge2"
    paper: ClassVar = (TABLE5_PART,)
    released: ClassVar = {"google/roberta2roberta_L-24_gigaword": ("robertashare", "large")}

    max_target_length: int = 32
    lowercase: bool = True
    first_sentence: bool = True
    text_style: str = "tokenized"  # lowercased and PTB-tokenised ("-lrb-", "u.s.", digits as "#")

    _KV = re.compile(r"""^(\w+)=(?:"(.*)"|'(.*)')$""", re.S)

    def _read_local(self, entry, invalid):
        if isinstance(entry, tuple):
            for where, (src, tgt) in iter_line_pairs(*entry, invalid):
                yield where, src, tgt
            return
        path = expect_file(entry, self.name)
        for lineno, line in iter_lines(path, invalid):
            if line is None:
                continue
            where, fields = f"{path}:{lineno}", {}
            for part in line.split("\t"):
                m = self._KV.match(part)
                if m is None:
                    invalid.report(where, "malformed_key_value", f'field {part[:40]!r} is not key="value"')
                    break
                fields[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3)
            else:
                if "source" not in fields or "target" not in fields:
                    invalid.report(where, "missing_field", f"expected source= and target=, found {sorted(fields)}")
                    continue
                src = _strip_sentence_marks(fields["source"])
                if self.first_sentence:
                    cut = src.find(" . ")
                    src = src[: cut + 2] if cut >= 0 else src
                yield where, src, _strip_sentence_marks(fields["target"])

    @classmethod
    def metrics(cls):
        from bertgen.metrics import ROUGE, OutputLength, Repetition

        # length and repetitions: Table 7's automatic columns, reported for every summarisation task
        return {"rouge": ROUGE(("rouge1", "rouge2", "rougeL")), "length": OutputLength(), "repetitions": Repetition()}

    def hub_example(self, row):
        return row["document"], row["summary"]


def _strip_sentence_marks(text: str) -> str:
    text = text.strip()
    text = text[3:] if text.startswith("<s>") else text
    text = text[:-4] if text.endswith("</s>") else text
    return text.strip()

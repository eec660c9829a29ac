"""WMT14 English-German translation, both directions: readers, official release (hub parquet), metrics and the
paper's Table 4.

Checksums: the hub parquet files have no sha256 recorded in any stored source; they are verified against the sha256
the hub publishes for each LFS file, and their row counts against the dataset card's split sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bertgen.data.readers import iter_line_pairs, one_line, parquet_by_split, parquet_rows
from bertgen.data.sources import DatasetSource, HubRepo
from bertgen.data.tasks.base import PaperColumn, PaperResults, Task, expect_pair, paper_rows, register


def _build_from_parquet(source: DatasetSource, files: dict[str, Path], out: Path) -> dict[str, int]:
    rows = {}
    for split, paths in parquet_by_split(files).items():
        with (
            open(out / f"{split}.de", "w", encoding="utf-8") as de,
            open(out / f"{split}.en", "w", encoding="utf-8") as en,
        ):
            n = 0
            for r in parquet_rows(paths, ["translation"]):
                t = r["translation"] or {}
                de.write(one_line(t.get("de")) + "\n")  # one sentence per line keeps the two files aligned
                en.write(one_line(t.get("en")) + "\n")
                n += 1
        rows[split] = n
    return rows


OFFICIAL = DatasetSource(
    name="wmt14",
    title="WMT14 German-English (newstest2013 validation, newstest2014 test), parquet files of wmt/wmt14",
    homepage="https://huggingface.co/datasets/wmt/wmt14",
    folder="wmt14",
    builder=_build_from_parquet,
    layout=("train.en", "train.de", "validation.en", "validation.de", "test.en", "test.de"),
    hub=HubRepo("wmt/wmt14", "main", ("de-en/*.parquet",)),
    rows={"train": 4_508_785, "validation": 3_000, "test": 3_003},
    note="de-en/train-0000{0,1,2}-of-00003.parquet, validation-00000-of-00001, test-00000-of-00001; one folder for "
    "both directions; sha256: the hub's LFS checksums (none recorded elsewhere).",
)

_TABLE4_NOTE = (
    "The paper's 24-layer MT rows use a custom En/De BERT checkpoint; its 12-layer rows the public multilingual BERT "
    "(paper Table 4).",
)


def _table4(arrow: str, first: int, rows: tuple) -> PaperResults:
    """Table 4 - WMT14 uncased BLEU-4, one direction: newstest2014 (the test split) and newstest2016 (evaluated
    files named ``*2016*``). The 12-layer rows of the "public checkpoints" block (multilingual BERT) are what the base
    configs reproduce; the 24-layer rows use a custom En/De BERT checkpoint."""
    return PaperResults(
        4,
        "WMT14 (uncased BLEU-4)",
        (
            PaperColumn(f"nt2014 {arrow}", "bleu", first),
            PaperColumn(f"nt2016 {arrow}", "bleu", first + 2, test_set="2016", optional=True),
        ),
        rows,
        _TABLE4_NOTE,
    )


TABLE4_EN_DE = _table4(
    "En→De",
    0,
    (
        *paper_rows(
            None,
            "",
            ("Vaswani et al. (2017)", None, 27.3, None),
            ("Transformer (ours, 32k WMT vocab)", None, 28.1, 33.5),
            ("KERMIT (Chan et al. 2019)", None, 28.7, None),
            ("Shaw et al. (2018)", None, 29.2, None),
            ("Edunov et al. (2018) (back-translation)", None, 35.0, None),
        ),
        *paper_rows(
            None,
            "public checkpoints (12 layers) and vocabulary",
            ("Transformer (ours, multilingual vocab)", None, 23.7, 31.6),
        ),
        *paper_rows(
            "base",
            "public checkpoints (12 layers) and vocabulary",
            ("rnd2rnd", "rnd2rnd", 26.0, 32.4),
            ("bert2rnd", "bert2rnd", 30.1, 34.4),
            ("rnd2bert", "rnd2bert", 27.2, 33.2),
            ("bert2bert", "bert2bert", 30.1, 34.6),
            ("bertShare", "bertshare", 29.6, 34.4),
            ("gpt", "gpt", 16.4, 22.4),
            ("rnd2gpt", "rnd2gpt", 19.6, 24.2),
            ("bert2gpt", "bert2gpt", 23.2, 28.1),
        ),
        *paper_rows(
            None,
            "custom BERT checkpoint (12 layers) and vocabulary",
            ("bert2rnd (custom 12-layer BERT)", None, 30.6, 35.1),
            ("bertShare (custom 12-layer BERT)", None, 30.5, 35.5),
        ),
        *paper_rows(
            "large",
            "custom BERT checkpoint (24 layers) and vocabulary",
            ("bert2rnd", "bert2rnd", 31.7, 35.6),
            ("bertShare", "bertshare", 30.5, 35.4),
        ),
    ),
)
TABLE4_DE_EN = _table4(
    "De→En",
    1,
    (
        *paper_rows(
            None,
            "",
            ("Vaswani et al. (2017)", None, None, None),
            ("Transformer (ours, 32k WMT vocab)", None, 31.4, 37.9),
            ("KERMIT (Chan et al. 2019)", None, 31.4, None),
            ("Shaw et al. (2018)", None, None, None),
            ("Edunov et al. (2018) (back-translation)", None, None, None),
        ),
        *paper_rows(
            None,
            "public checkpoints (12 layers) and vocabulary",
            ("Transformer (ours, multilingual vocab)", None, 26.6, 35.8),
        ),
        *paper_rows(
            "base",
            "public checkpoints (12 layers) and vocabulary",
            ("rnd2rnd", "rnd2rnd", 29.1, 36.7),
            ("bert2rnd", "bert2rnd", 32.7, 39.6),
            ("rnd2bert", "rnd2bert", 30.4, 37.5),
            ("bert2bert", "bert2bert", 32.7, 39.3),
            ("bertShare", "bertshare", 32.6, 39.6),
            ("gpt", "gpt", 21.5, 27.7),
            ("rnd2gpt", "rnd2gpt", 23.2, 28.5),
            ("bert2gpt", "bert2gpt", 31.4, 37.0),
        ),
        *paper_rows(
            None,
            "custom BERT checkpoint (12 layers) and vocabulary",
            ("bert2rnd (custom 12-layer BERT)", None, 33.5, 40.2),
            ("bertShare (custom 12-layer BERT)", None, 33.6, 40.1),
        ),
        *paper_rows(
            "large",
            "custom BERT checkpoint (24 layers) and vocabulary",
            ("bert2rnd", "bert2rnd", 34.2, 41.1),
            ("bertShare", "bertshare", 33.8, 40.9),
        ),
    ),
)


_MOSES_ESCAPES = {
    "&bar;": "|",
    "&#124;": "|",
    "&lt;": "<",
    "&gt;": ">",
    "&bra;": "[",
    "&ket;": "]",
    "&#91;": "[",
    "&#93;": "]",
    "&apos;": "'",
    "&quot;": '"',
    "&amp;": "&",
}
_MOSES_RE = re.compile("|".join(re.escape(k) for k in _MOSES_ESCAPES))


def unescape_moses(text: str) -> str:
    """Undo the Moses tokenizer's XML escapes (``&apos;`` ...); single pass, so ``&amp;apos;`` -> ``&apos;``."""
    return _MOSES_RE.sub(lambda m: _MOSES_ESCAPES[m.group(0)], text)


@dataclass
class WMT14Task(Task):
    """WMT14 English<->German (newstest2014 test), lengths 128/128 (paper §4), no special tokens on the source
    (released MT checkpoints are called with ``add_special_tokens=False``, their model cards).

    Hub: ``wmt/wmt14`` config ``de-en`` (``translation`` dicts). Local layouts under ``data_dir``:
      * OpenNMT's line-aligned ``src-{train,val,test}.txt`` / ``tgt-{...}.txt`` where ``src`` is **English** and
        ``tgt`` German (the OpenNMT WMT14 En-De release); the De->En task reads them the other way round;
      * ``{split}.en`` / ``{split}.de`` (``validation`` also as ``valid``/``dev``/``newstest2013``, ``test`` also as
        ``newstest2014``).
    ``unescape_moses=True`` (default) undoes Moses XML escapes (``&apos;`` ...) in Moses-tokenised files.
    Scored with uncased BLEU-4 as tensor2tensor's ``bleu_hook`` (the paper's), sacreBLEU beside it; headline BLEU.
    """

    name: ClassVar[str] = "wmt14"
    default_hub_path: ClassVar[str] = "wmt/wmt14"
    default_hub_config: ClassVar[str] = "de-en"
    source_lang: ClassVar[str] = "en"
    target_lang: ClassVar[str] = "de"
    sources: ClassVar = (OFFICIAL,)
    headline: ClassVar[str] = "bleu"
    unescape_moses: bool = True
    text_style: str = "bleu"  # raw (hub) or Moses-tokenised (OpenNMT) text, scored by mteval-v14 BLEU

    @classmethod
    def _layouts(cls) -> dict[str, list[tuple[str, str]]]:
        onmt = {"train": "train", "validation": "val", "test": "test"}
        alias = {
            "train": ["train"],
            "validation": ["validation", "valid", "dev", "newstest2013"],
            "test": ["test", "newstest2014"],
        }
        en_first = cls.source_lang == "en"
        out = {}
        for split, names in alias.items():
            pair = (f"src-{onmt[split]}.txt", f"tgt-{onmt[split]}.txt")
            cands = [pair if en_first else pair[::-1]]
            cands += [(f"{n}.{cls.source_lang}", f"{n}.{cls.target_lang}") for n in names]
            out[split] = cands
        return out

    @classmethod
    def metrics(cls):
        from bertgen.metrics import SacreBLEU, TensorFlowBLEU

        return {"bleu": TensorFlowBLEU(case_sensitive=False), "sacrebleu": SacreBLEU(lowercase=True, tokenize="13a")}

    def _read_local(self, entry, invalid):
        for where, (src, tgt) in iter_line_pairs(*expect_pair(entry, self.name), invalid):
            if self.unescape_moses:
                src, tgt = unescape_moses(src), unescape_moses(tgt)
            yield where, src, tgt

    def hub_example(self, row):
        t = row["translation"]
        return t[self.source_lang], t[self.target_lang]


@register
@dataclass
class WMT14EnDeTask(WMT14Task):
    __doc__ = WMT14Task.__doc__
    name: ClassVar[str] = "wmt14_en_de"
    source_lang: ClassVar[str] = "en"
    target_lang: ClassVar[str] = "de"
    paper: ClassVar = (TABLE4_EN_DE,)


@register
@dataclass
class WMT14DeEnTask(WMT14Task):
    __doc__ = WMT14Task.__doc__
    name: ClassVar[str] = "wmt14_de_en"
    source_lang: ClassVar[str] = "de"
    target_lang: ClassVar[str] = "en"
    paper: ClassVar = (TABLE4_DE_EN,)


WMT14EnDeTask.local_layouts = WMT14EnDeTask._layouts()
WMT14DeEnTask.local_layouts = WMT14DeEnTask._layouts()

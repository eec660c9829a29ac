"""Per-task readers: where each task's data lives, how its source/target strings are built, and its paper defaults.

A task is a small dataclass. Its fields are the options a user may override (lengths, input conventions of the
released checkpoints, text normalisation); its class attributes say where the data comes from (hub id, accepted
local layouts). Everything else (tokenising, caching, batching) is shared and lives in ``cache.py``/``datamodule.py``.

Max lengths and data choices are from the paper (Rothe et al., TACL 2020, sections 2 and 4);
input conventions from the released checkpoints' model cards (google/roberta2roberta_* and google/bert2bert_* on the
Hugging Face hub).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Union

from bertgen.data.errors import DataFormatError, DatasetUnavailableError, InvalidRows
from bertgen.data.io import iter_csv, iter_jsonl, iter_line_pairs, iter_lines, iter_parquet, iter_tsv
from bertgen.text import SPLIT_SEPARATOR, TextConvention

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SummaryFiles:
    """XSum's release format: a folder of ``<bbcid>.summary`` files, optionally restricted to ``ids``."""

    path: Path
    ids: tuple[str, ...] | None = None


# One split's local data: a file, a pair of line-aligned files (source, target), or XSum .summary files.
FileEntry = Union[Path, tuple[Path, Path], SummaryFiles]
Example = tuple[str, str, str]  # (where, source, target)


@dataclass
class Task:
    """Shared options; subclasses set the paper defaults and say how to read their data.

    Options (all overridable, e.g. ``task_options: {add_source_bos: false}`` in a config):
      max_source_length / max_target_length: token budgets incl. special tokens (longer inputs are truncated
        and counted in ``data_stats``).
      lowercase: lowercase source and target text (Gigaword, per the paper).
      source_replacements: literal replacements applied to the source text just before tokenising (the raw
        strings kept for evaluation are unchanged).
      add_source_bos / add_source_eos: wrap the source in the source tokenizer's bos/eos ids.
      add_target_eos: end every target with the target tokenizer's eos id (the decoder must learn to stop).
        Tokenizers without bos/eos (BERT WordPiece) use [CLS]/[SEP] in their place.
      hub_path / hub_config: the Hugging Face dataset to read when no local copy is given (any name
        ``datasets.load_dataset`` accepts, including a local folder of data files with the hub's column names).
        Left at the default, a paper task instead downloads its official release (``bertgen.data.sources``)
        into the cache and reads it with the local readers.
      text_style / atomic_tokens: how the task's text is written (``bertgen.text.STYLES``: ``tokenized``,
        ``natural``, ``bleu``) and the strings that are one token that never splits (WikiSplit's ``<::::>``);
        together the task's ``text_convention``, which the DataModule encodes and ``bertgen.text.decode_generated``
        decodes with, so that a target decoded from its own ids is the target again.
    """

    name: ClassVar[str]
    default_hub_path: ClassVar[str | None] = None
    default_hub_config: ClassVar[str | None] = None
    # split -> candidate local layouts, tried in order (paths relative to data_dir); pairs are (source, target).
    local_layouts: ClassVar[Mapping[str, Sequence[str | tuple[str, str]]]] = {}

    max_source_length: int = 128
    max_target_length: int = 128
    lowercase: bool = False
    source_replacements: dict[str, str] = field(default_factory=dict)
    add_source_bos: bool = False
    add_source_eos: bool = False
    add_target_eos: bool = True
    hub_path: str | None = None
    hub_config: str | None = None
    text_style: str = "natural"
    atomic_tokens: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_source_length < 1 or self.max_target_length < 1:
            raise ValueError(
                f"{self.name}: max lengths must be positive, got {self.max_source_length}/{self.max_target_length}"
            )
        self.hub_path = self.hub_path or self.default_hub_path
        self.hub_config = self.hub_config or self.default_hub_config
        try:
            self.atomic_tokens = self.text_convention.atomic_tokens  # validated, and a tuple whatever config gave
        except ValueError as e:
            raise ValueError(f"{self.name}: {e}") from None

    @property
    def text_convention(self) -> TextConvention:
        """How this task's text is written (``bertgen.text.TextConvention``)."""
        return TextConvention(self.text_style, tuple(self.atomic_tokens))

    def options(self) -> dict[str, Any]:
        """Everything that changes the tokenised data: part of the cache key."""
        return {"task": self.name, **dataclasses.asdict(self)}

    # ---- local files -------------------------------------------------------------------------------------------
    def find_local(self, data_dir: Path, split: str) -> FileEntry:
        """The first layout of ``local_layouts[split]`` that exists under ``data_dir``."""
        for cand in self.local_layouts.get(split, ()):
            if isinstance(cand, tuple):
                pair = (data_dir / cand[0], data_dir / cand[1])
                if pair[0].is_file() and pair[1].is_file():
                    return pair
            elif (data_dir / cand).is_file():
                return data_dir / cand
        raise DatasetUnavailableError(
            f"{self.name}: no local '{split}' split under {data_dir}. {self.layout_help(split)}"
        )

    def layout_help(self, split: str | None = None) -> str:
        splits = [split] if split else list(self.local_layouts)
        lines = []
        for s in splits:
            cands = [" + ".join(c) if isinstance(c, tuple) else c for c in self.local_layouts.get(s, ())]
            lines.append(f"{s}: {' or '.join(cands)}")
        return f"Accepted data_dir layouts for {self.name}: " + "; ".join(lines) + "."

    def read_local(self, entry: FileEntry, invalid: InvalidRows) -> Iterator[Example]:
        for where, src, tgt in self._read_local(entry, invalid):
            ex = self._finish(where, src, tgt, invalid)
            if ex is not None:
                yield ex

    def _read_local(self, entry: FileEntry, invalid: InvalidRows) -> Iterator[Example]:
        raise NotImplementedError

    # ---- hub ---------------------------------------------------------------------------------------------------
    def hub_example(self, row: Mapping[str, Any]) -> tuple[str, str]:
        raise NotImplementedError

    def read_hub_rows(self, rows: Iterator[Mapping[str, Any]], where: str, invalid: InvalidRows) -> Iterator[Example]:
        for i, row in enumerate(rows, start=1):
            src, tgt = self.hub_example(row)
            ex = self._finish(f"{where} row {i}", src, tgt, invalid)
            if ex is not None:
                yield ex

    # ---- shared ------------------------------------------------------------------------------------------------
    def _finish(self, where: str, src: str | None, tgt: str | None, invalid: InvalidRows) -> Example | None:
        src, tgt = (src or "").strip(), (tgt or "").strip()
        if self.lowercase:
            src, tgt = src.lower(), tgt.lower()
        if not src:
            invalid.report(where, "empty_source")
            return None
        if not tgt:
            invalid.report(where, "empty_target")
            return None
        return where, src, tgt

    def prepare_source(self, text: str) -> str:
        for old, new in self.source_replacements.items():
            text = text.replace(old, new)
        return text


def _expect_file(entry: FileEntry, task: str) -> Path:
    if not isinstance(entry, Path):
        raise DataFormatError(f"{task}: expected a single file, got {entry}")
    return entry


def _expect_pair(entry: FileEntry, task: str) -> tuple[Path, Path]:
    if not isinstance(entry, tuple):
        raise DataFormatError(f"{task}: expected a (source, target) pair of line-aligned files, got {entry}")
    return entry


# ===================================================================================================================
@dataclass
class DiscoFuseTask(Task):
    """DiscoFuse sentence fusion (Geva et al. 2019); the paper uses the balanced Wikipedia portion (4.5M train).

    Source = incoherent_first + " " + incoherent_second; target = coherent_first (+ " " + coherent_second when
    non-empty). Hub: ``google-research-datasets/discofuse``, config ``discofuse-wikipedia``.
    Local files: the release TSV with its header line and 8 columns (``coherent_first_sentence,
    coherent_second_sentence, incoherent_first_sentence, incoherent_second_sentence, discourse_type,
    connective_string, has_coref_type_pronoun, has_coref_type_nominal``); ``data_dir`` holds
    ``{train,dev,test}_balanced.tsv`` (the release's ``discofuse_v1/wikipedia/`` folder) or ``{train,dev,test}.tsv``.
    Default ``source_replacements={'"': '`'}``: the released checkpoint "was not trained on the double quotation
    mark" (its model card). Lengths 128/128 (paper §4: 128 covers all of DiscoFuse).
    Without a local copy the data is downloaded (``bertgen.data.download``): ``source="official"`` (default) is the
    balanced release ``discofuse_v1_wikipedia.zip`` the paper used; ``source="hub"`` the hub copy, which is the full,
    UNBALANCED set (a warning says so; ``train_fraction`` subsets are then of that set).
    """

    name: ClassVar[str] = "discofuse"
    default_hub_path: ClassVar[str] = "google-research-datasets/discofuse"
    default_hub_config: ClassVar[str] = "discofuse-wikipedia"
    local_layouts: ClassVar = {
        "train": ["train_balanced.tsv", "wikipedia/train_balanced.tsv", "train.tsv"],
        "validation": ["dev_balanced.tsv", "wikipedia/dev_balanced.tsv", "dev.tsv", "validation.tsv"],
        "test": ["test_balanced.tsv", "wikipedia/test_balanced.tsv", "test.tsv"],
    }
    COLUMNS: ClassVar = (
        "coherent_first_sentence",
        "coherent_second_sentence",
        "incoherent_first_sentence",
        "incoherent_second_sentence",
        "discourse_type",
        "connective_string",
        "has_coref_type_pronoun",
        "has_coref_type_nominal",
    )
    source_replacements: dict[str, str] = field(default_factory=lambda: {'"': "`"})
    text_style: str = "tokenized"  # the release is whitespace-tokenised ("Bailey , but the role")
    source: str = "official"  # where a download comes from: "official" (balanced release) or "hub" (unbalanced)

    def _read_local(self, entry, invalid):
        for where, f in iter_tsv(_expect_file(entry, self.name), invalid, len(self.COLUMNS), header=self.COLUMNS):
            yield where, *self._build(f[2], f[3], f[0], f[1])

    def hub_example(self, row):
        return self._build(
            row["incoherent_first_sentence"],
            row["incoherent_second_sentence"],
            row["coherent_first_sentence"],
            row["coherent_second_sentence"],
        )

    @staticmethod
    def _build(inc1: str, inc2: str, coh1: str, coh2: str) -> tuple[str, str]:
        source = " ".join(s for s in (inc1.strip(), inc2.strip()) if s)
        target = coh1.strip() + (" " + coh2.strip() if coh2.strip() else "") if coh1.strip() else ""
        return source, target


@dataclass
class WikiSplitTask(Task):
    """WikiSplit split-and-rephrase (Botha et al. 2018): complex sentence -> its split sentences.

    The target keeps the release's `` <::::> `` separator between sentences, as the released checkpoints emit it.
    Hub: ``google-research-datasets/wiki_split`` (``simple_sentence_1/2`` are joined with `` <::::> ``); it is
    script-only, so without a local copy the GitHub release files are downloaded instead.
    Local files: 2-column TSV without header (complex, split) as released: ``data_dir`` holds ``train.tsv``
    (unzipped ``train.tsv.zip``), ``validation.tsv``, ``test.tsv`` and optionally ``tune.tsv`` (split ``tune``).
    Default ``add_source_bos/eos=True``: the released checkpoint's input is ``bos + sentence + eos`` (model card).
    Lengths 128/128 (paper §2).
    """

    name: ClassVar[str] = "wikisplit"
    default_hub_path: ClassVar[str] = "google-research-datasets/wiki_split"
    local_layouts: ClassVar = {
        "train": ["train.tsv"],
        "validation": ["validation.tsv"],
        "test": ["test.tsv"],
        "tune": ["tune.tsv"],
    }
    SEPARATOR: ClassVar[str] = f" {SPLIT_SEPARATOR} "
    add_source_bos: bool = True
    add_source_eos: bool = True
    text_style: str = "tokenized"  # the release is whitespace-tokenised ("Bob 's", "mid-tempo", "'' EastEnders ''")
    atomic_tokens: tuple[str, ...] = (SPLIT_SEPARATOR,)

    def _read_local(self, entry, invalid):
        for where, (complex_, split) in iter_tsv(_expect_file(entry, self.name), invalid, 2):
            yield where, complex_, split

    def hub_example(self, row):
        parts = [row["simple_sentence_1"].strip(), row["simple_sentence_2"].strip()]
        return row["complex_sentence"], self.SEPARATOR.join(p for p in parts if p)


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
        path = _expect_file(entry, self.name)
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

    def hub_example(self, row):
        return row["document"], row["summary"]


def _strip_sentence_marks(text: str) -> str:
    text = text.strip()
    text = text[3:] if text.startswith("<s>") else text
    text = text[:-4] if text.endswith("</s>") else text
    return text.strip()


@dataclass
class CNNDailyMailTask(Task):
    """CNN/DailyMail 3.0.0 (non-anonymised, cased; paper §4), lengths 512/128 (paper §2).

    The target keeps the highlights as newline-separated sentences (``highlight_separator``), which ROUGE-Lsum
    needs; the tokenizer sees the newline as whitespace. Hub: ``abisee/cnn_dailymail``, config ``3.0.0``.
    Local files: CSV with a header holding at least ``article,highlights`` (the Kaggle/HF dump ``id,article,
    highlights``, with or without a leading index column): ``data_dir`` holds ``train.csv``, ``validation.csv``
    (or ``val.csv``), ``test.csv``.
    """

    name: ClassVar[str] = "cnn_dailymail"
    default_hub_path: ClassVar[str] = "abisee/cnn_dailymail"
    default_hub_config: ClassVar[str] = "3.0.0"
    local_layouts: ClassVar = {
        "train": ["train.csv"],
        "validation": ["validation.csv", "val.csv"],
        "test": ["test.csv"],
    }
    max_source_length: int = 512
    max_target_length: int = 128
    highlight_separator: str = "\n"

    def _read_local(self, entry, invalid):
        for where, row in iter_csv(_expect_file(entry, self.name), invalid, ("article", "highlights")):
            yield where, row["article"], self._highlights(row["highlights"])

    def hub_example(self, row):
        return row["article"], self._highlights(row["highlights"])

    def _highlights(self, text: str) -> str:
        return self.highlight_separator.join(s.strip() for s in text.splitlines() if s.strip())


@dataclass
class XSumTask(Task):
    """BBC XSum (Narayan et al. 2018), cased, lengths 512/64 (paper §2). Source = document, target = summary.

    Hub: ``EdinburghNLP/xsum``. Local layouts:
      * JSON Lines with string fields ``document`` and ``summary``: ``data_dir/{train,validation,test}.jsonl``;
      * the original release: ``data_dir/bbc-summary-data/<id>.summary`` files (sections ``[SN]URL[SN]``,
        ``[SN]TITLE[SN]``, ``[SN]FIRST-SENTENCE[SN]`` = summary, ``[SN]RESTBODY[SN]`` = document) split by
        ``data_dir/XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json`` (keys ``train``, ``validation``, ``test``).
    ``data_files`` may also name a ``.summary`` file or a folder of them directly.
    """

    name: ClassVar[str] = "xsum"
    default_hub_path: ClassVar[str] = "EdinburghNLP/xsum"
    local_layouts: ClassVar = {s: [f"{s}.jsonl"] for s in SPLITS}
    SPLIT_FILE: ClassVar[str] = "XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json"
    max_source_length: int = 512
    max_target_length: int = 64

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
    """

    name: ClassVar[str] = "wmt14"
    default_hub_path: ClassVar[str] = "wmt/wmt14"
    default_hub_config: ClassVar[str] = "de-en"
    source_lang: ClassVar[str] = "en"
    target_lang: ClassVar[str] = "de"
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

    def _read_local(self, entry, invalid):
        for where, (src, tgt) in iter_line_pairs(*_expect_pair(entry, self.name), invalid):
            if self.unescape_moses:
                src, tgt = unescape_moses(src), unescape_moses(tgt)
            yield where, src, tgt

    def hub_example(self, row):
        t = row["translation"]
        return t[self.source_lang], t[self.target_lang]


@dataclass
class WMT14EnDeTask(WMT14Task):
    __doc__ = WMT14Task.__doc__
    name: ClassVar[str] = "wmt14_en_de"
    source_lang: ClassVar[str] = "en"
    target_lang: ClassVar[str] = "de"


@dataclass
class WMT14DeEnTask(WMT14Task):
    __doc__ = WMT14Task.__doc__
    name: ClassVar[str] = "wmt14_de_en"
    source_lang: ClassVar[str] = "de"
    target_lang: ClassVar[str] = "en"


WMT14EnDeTask.local_layouts = WMT14EnDeTask._layouts()
WMT14DeEnTask.local_layouts = WMT14DeEnTask._layouts()


@dataclass
class FilesTask(Task):
    """A user's own data: TSV (with header), CSV, JSON Lines or Parquet files with named source/target columns.

    The format follows the suffix (``.tsv``, ``.csv``, ``.jsonl``/``.json``, ``.parquet``) unless ``file_format``
    is set. There is no hub source and no data_dir discovery: pass ``data_files={split: path}``.
    """

    name: ClassVar[str] = "files"
    source_column: str = "source"
    target_column: str = "target"
    file_format: str | None = None

    FORMATS: ClassVar = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}

    def _read_local(self, entry, invalid):
        path = _expect_file(entry, self.name)
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


TASKS: dict[str, type[Task]] = {
    t.name: t
    for t in (
        DiscoFuseTask,
        WikiSplitTask,
        GigawordTask,
        CNNDailyMailTask,
        XSumTask,
        WMT14EnDeTask,
        WMT14DeEnTask,
        FilesTask,
    )
}


def text_convention(task: Any, options: Mapping[str, Any] | None = None) -> TextConvention:
    """A task's text convention (``bertgen.text.TextConvention``), for callers that decode: from a task name
    (``"wikisplit"``, a ``TASKS`` key, with its ``task_options`` as ``options``), a `Task` or a DataModule."""
    if isinstance(task, str):
        if task not in TASKS:
            raise KeyError(f"unknown task {task!r}; known: {', '.join(sorted(TASKS))}")
        fields_ = {f.name for f in dataclasses.fields(TASKS[task])}
        return TASKS[task](**{k: v for k, v in dict(options or {}).items() if k in fields_}).text_convention
    task = getattr(task, "task", task)  # a DataModule holds its task
    if not isinstance(task, Task):
        raise TypeError(f"expected a task name, a Task or a DataModule, got {type(task).__name__}")
    return task.text_convention

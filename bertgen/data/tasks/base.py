"""What a task is: one declaration that owns everything bertgen knows about it.

A task is a `Task` subclass in a module of its own (``bertgen/data/tasks/<name>.py``), registered with `register`.
Its dataclass fields are the options a user may override (``task.task_options`` in the config: lengths, input
conventions of the released checkpoints, text normalisation); its class attributes declare the rest:

* where the data lives: ``local_layouts`` (the ``data_dir`` layouts its readers accept), ``sources`` (the official
  release, ``bertgen.data.sources``: URLs, checksums, the builder that unpacks it), ``default_hub_path``;
* how its text is written: ``text_style`` / ``atomic_tokens`` (``bertgen.text.TextConvention``);
* how it is scored: `Task.metrics` (``torchmetrics`` metrics over strings) and ``headline`` (what checkpoints are
  selected on);
* what the paper reports for it: ``paper`` (`PaperResults`: its columns of one of the paper's tables and the
  published values), ``released`` (released checkpoints of the paper and the setup they are).

Every registry (the DataModule's readers, the metrics, the downloads, the report's tables) is derived from these
declarations. The tunable numbers of a run (batch, steps, decoding) live in ``conf/task/<name>.yaml``. Tokenising,
caching and batching are shared and live in ``cache.py`` / ``datamodule.py``.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Union

from bertgen.data.errors import DataFormatError, DatasetUnavailableError, InvalidRows
from bertgen.errors import ConfigError
from bertgen.text import TextConvention

if TYPE_CHECKING:
    from torchmetrics import Metric

    from bertgen.data.sources import DatasetSource

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class SummaryFiles:
    """XSum's release format: a folder of ``<bbcid>.summary`` files, optionally restricted to ``ids``."""

    path: Path
    ids: tuple[str, ...] | None = None


# One split's local data: a file, a pair of line-aligned files (source, target), or XSum .summary files.
FileEntry = Union[Path, tuple[Path, Path], SummaryFiles]
Example = tuple[str, str, str]  # (where, source, target)


# ---- what the paper reports ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaperColumn:
    """One column of a paper table that a task's runs fill.

    ``position``: the column's place in the printed table (tables shared by several tasks interleave their
    columns); ``fraction``: the training-data fraction of the runs it takes; ``test_set``: a string the evaluated
    files' names must contain (``"2016"`` for newstest2016), else the default test set; ``optional``: a column
    few runs fill (the report prints it all the same, marked not run); ``by_fraction``: runs at other training
    fractions get a column of their own, named ``"<percent> <label>"``; ``computable``: False for a column no run
    can fill (Table 7's human Quality score), printed with the paper's value only."""

    name: str
    metric: str
    position: int
    fraction: float = 1.0
    test_set: str | None = None
    optional: bool = False
    by_fraction: str | None = None
    computable: bool = True


# The model key of a paper row that is the references themselves (Table 7's "Gold"): the report scores the
# references of an evaluated split as if they were a system's output.
GOLD = "gold"
# Run variants that are the plain setup of their model (config ``variant``): matched to the rows without a variant.
PLAIN_VARIANTS = (None, "full")


def plain_variant(variant: str | None) -> str | None:
    """A run's or row's variant for matching: None for the plain setup (``None`` or ``full``)."""
    return None if variant in PLAIN_VARIANTS else variant


@dataclass(frozen=True)
class PaperRow:
    label: str  # as printed in the paper
    model: str | None  # bertgen model name (None: a baseline from another paper)
    size: str | None  # "base" | "large" | None
    values: tuple[float | None, ...]  # one per column of the declaring task
    block: str = ""  # the paper's row group (e.g. "public checkpoints (12 layers) and vocabulary")
    variant: str | None = None  # the config ``variant`` of the ablation this row is (None: the plain setup)
    also: tuple[str, ...] = ()  # other model names whose runs of ``variant`` this row stands for

    def matches(self, model: str | None, size: str | None, variant: str | None = None) -> bool:
        """A run of ``model``, ``size`` and ``variant`` is this row (never for other papers' systems)."""
        return (
            self.model is not None
            and (model == self.model or model in self.also)
            and size == self.size
            and plain_variant(variant) == plain_variant(self.variant)
        )


@dataclass(frozen=True)
class PaperResults:
    """A task's part of one of the paper's tables: its columns and the published values (test sets, 0-100).
    Rows are matched by label across the tasks of a table; ``notes`` are printed under the table. ``label``: how the
    table is named when it is not one of the paper's numbered tables (``§5``; ``table`` then only orders it)."""

    table: int
    title: str
    columns: tuple[PaperColumn, ...]
    rows: tuple[PaperRow, ...]
    notes: tuple[str, ...] = ()
    label: str | None = None

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row.values) != len(self.columns):
                raise ValueError(
                    f"Table {self.table} row {row.label!r}: {len(row.values)} values, {len(self.columns)} columns"
                )


def paper_rows(size: str | None, block: str, *rows: tuple) -> tuple[PaperRow, ...]:
    """``(label, model, value, value, ...)`` tuples of one block of a paper table as `PaperRow`s."""
    return tuple(PaperRow(label, model, size, tuple(values), block) for label, model, *values in rows)


def variant_rows(size: str | None, block: str, *rows: tuple) -> tuple[PaperRow, ...]:
    """``(label, model, variant, value, ...)`` tuples of an ablation block as `PaperRow`s; ``model`` may be a tuple of
    model names (the first is the row's, the others are ``also``)."""
    out = []
    for label, model, variant, *values in rows:
        models = model if isinstance(model, tuple) else (model,)
        out.append(PaperRow(label, models[0], size, tuple(values), block, variant, tuple(models[1:])))
    return tuple(out)


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
        ``natural``, ``bleu``) and the strings that are one token that never splits (a separator such as ``<::::>``);
        together the task's ``text_convention``, which the DataModule encodes and ``bertgen.text.decode_generated``
        decodes with, so that a target decoded from its own ids is the target again.
    """

    name: ClassVar[str]
    default_hub_path: ClassVar[str | None] = None
    default_hub_config: ClassVar[str | None] = None
    # split -> candidate local layouts, tried in order (paths relative to data_dir); pairs are (source, target).
    local_layouts: ClassVar[Mapping[str, Sequence[str | tuple[str, str]]]] = {}
    # the official release(s), the first one the default download (`download_source`)
    sources: ClassVar[tuple[DatasetSource, ...]] = ()
    hub_copy_not_used: ClassVar[str] = ""  # why a hub copy of the data is not what a download fetches
    headline: ClassVar[str]  # the metric checkpoints are selected on (a key of `metrics()`' compute())
    paper: ClassVar[tuple[PaperResults, ...]] = ()
    released: ClassVar[Mapping[str, tuple[str, str]]] = {}  # released checkpoint hub id -> (model, size)
    synthetic: ClassVar[bool] = False  # the task writes its own corpus (`write_synthetic`; the config gives sizes)

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

    # ---- scoring -----------------------------------------------------------------------------------------------
    @classmethod
    def metrics(cls) -> dict[str, Metric]:
        """Fresh metrics for this task (``bertgen.metrics``), by name; `Task.headline` names the headline key."""
        raise NotImplementedError

    # ---- data a task writes itself --------------------------------------------------------------------------------
    @classmethod
    def write_synthetic(cls, folder: str | Path, sizes: dict[str, int] | None = None, seed: int = 0) -> None:
        """Write the task's own corpus into ``folder`` in a layout of ``local_layouts`` (``synthetic`` tasks)."""
        raise NotImplementedError(f"{cls.name} writes no corpus of its own")

    # ---- official data -------------------------------------------------------------------------------------------
    def download_source(self) -> DatasetSource | None:
        """The source a download reads when no local copy is given, or None: a task without one, or one whose
        ``hub_path`` was set to another dataset (read through ``datasets``)."""
        if not self.sources or self.hub_path not in (None, self.default_hub_path):
            return None
        return self.sources[0]


def expect_file(entry: FileEntry, task: str) -> Path:
    if not isinstance(entry, Path):
        raise DataFormatError(f"{task}: expected a single file, got {entry}")
    return entry


def expect_pair(entry: FileEntry, task: str) -> tuple[Path, Path]:
    if not isinstance(entry, tuple):
        raise DataFormatError(f"{task}: expected a (source, target) pair of line-aligned files, got {entry}")
    return entry


# ---- the registry ------------------------------------------------------------------------------------------------
TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` the task named ``cls.name`` (a name registered twice is a mistake)."""
    other = TASKS.get(cls.name)
    if (
        other is not None
        and other is not cls
        and f"{other.__module__}.{other.__qualname__}" != (f"{cls.__module__}.{cls.__qualname__}")
    ):
        raise ValueError(f"task {cls.name!r} is registered twice: {other.__module__} and {cls.__module__}")
    for attr in ("headline",):
        if not hasattr(cls, attr):
            raise TypeError(f"task {cls.name!r} ({cls.__module__}) declares no {attr}")
    TASKS[cls.name] = cls
    return cls


def task_class(spec: str | Mapping[str, Any] | Task | type[Task]) -> type[Task]:
    """The registered task of a name, a task config (its ``name``; its ``module``, when set, is imported first: how
    a task defined outside bertgen registers itself), a `Task` or a task class."""
    if isinstance(spec, Task):
        return type(spec)
    if isinstance(spec, type) and issubclass(spec, Task):
        return spec
    name = spec
    if isinstance(spec, Mapping):
        name = spec.get("name")
        if spec.get("module"):
            try:
                importlib.import_module(str(spec["module"]))
            except ImportError as e:
                raise ConfigError(f"task.module={spec['module']!r} cannot be imported: {e}") from None
    if name not in TASKS:
        raise ConfigError(
            f"unknown task {name!r}; registered: {', '.join(sorted(TASKS))} (a task of your own: a Task subclass "
            "with @register in a module named by task.module, see docs/extending.md)"
        )
    return TASKS[str(name)]


def make_task(spec: str | Mapping[str, Any] | Task | type[Task], options: Mapping[str, Any] | None = None) -> Task:
    """A task instance with ``options`` (``task_options``); an unknown option is a `ConfigError` naming the valid
    ones. A `Task` instance is returned as it is."""
    if isinstance(spec, Task):
        return spec
    cls = task_class(spec)
    options = dict(options or {})
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ConfigError(f"{cls.name}: unknown task_options {unknown}; valid: {sorted(fields)}")
    try:
        return cls(**options)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def text_convention(task: Any, options: Mapping[str, Any] | None = None) -> TextConvention:
    """A task's text convention (``bertgen.text.TextConvention``), for callers that decode: from a task name (with
    its ``task_options`` as ``options``; options of other tasks are ignored), a task config, a `Task` or a
    DataModule."""
    task = getattr(task, "task", task)  # a DataModule holds its task
    if isinstance(task, Task):
        return task.text_convention
    cls = task_class(task)
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in dict(options or {}).items() if k in names}).text_convention

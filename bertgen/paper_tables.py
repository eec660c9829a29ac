"""The published results of Rothe, Narayan, Severyn (TACL 2020), assembled from the tasks' declarations, for
`bertgen.report` to print beside runs.

Each task declares its columns of one of the paper's tables and the values printed there (``Task.paper``,
``bertgen.data.tasks.PaperResults``); a table shared by several tasks (Table 4: both WMT directions; Table 5: three
summarisation tasks) is their columns in the paper's order with rows matched by label. Keys: a row's ``model`` is the
lowercase name bertgen's model configs use (``conf/model/*.yaml`` ``name`` without the ``_large`` suffix), ``size`` is
``base`` (12 layers) or ``large`` (24 layers), or ``None`` for other papers' systems, printed but never matched; an
ablation row (Table 6, §5) also has the ``variant`` of its runs (config ``variant``; None or ``full``: the plain run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bertgen.data.tasks import TASKS, PaperColumn, plain_variant
from bertgen.data.tasks import PaperRow as TaskPaperRow

SOURCE = "Rothe, Narayan, Severyn (TACL 2020), arXiv 1907.12461 v2"


@dataclass(frozen=True)
class Column:
    """A paper column and the task whose runs fill it."""

    task: str
    spec: PaperColumn

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class PaperRow:
    label: str
    model: str | None
    size: str | None
    values: Mapping[str, float | None]  # column name -> the paper's value
    block: str = ""
    variant: str | None = None
    also: tuple[str, ...] = ()  # other model names whose runs of this variant the row stands for

    matches = TaskPaperRow.matches  # the same rule as the task declarations' rows


@dataclass(frozen=True)
class PaperTable:
    number: int
    title: str
    columns: tuple[Column, ...]  # in the printed order
    rows: tuple[PaperRow, ...]
    notes: tuple[str, ...] = ()
    label: str | None = None  # e.g. "§5" for results the paper gives in its text; None: "Table <number>"

    @property
    def tasks(self) -> set[str]:
        return {c.task for c in self.columns}

    @property
    def name(self) -> str:
        return self.label or f"Table {self.number}"

    @property
    def ablation(self) -> bool:
        """Its rows are setups of one model (variants), not models: only runs of its rows belong to it."""
        return any(plain_variant(r.variant) is not None for r in self.rows)

    def row(self, model: str | None, size: str | None, variant: str | None = None) -> PaperRow | None:
        """The paper's row of a bertgen setup; None when the paper has no such row."""
        return next((r for r in self.rows if r.matches(model, size, variant)), None)

    def lookup(self, model: str | None, size: str | None, variant: str | None = None) -> dict[str, float | None] | None:
        """The paper's values for a bertgen setup, by column; None when the paper has no such row."""
        row = self.row(model, size, variant)
        return None if row is None else {c.name: row.values.get(c.name) for c in self.columns}


def paper_tables() -> dict[int, PaperTable]:
    """Every paper table some registered task declares a part of, by number."""
    parts: dict[int, list] = {}
    for name, cls in TASKS.items():
        for results in cls.paper:
            parts.setdefault(results.table, []).append((name, results))
    tables = {}
    for number in sorted(parts):
        columns: list[Column] = []
        rows: dict[tuple, dict] = {}
        notes: list[str] = []
        for task, results in parts[number]:
            columns += [Column(task, c) for c in results.columns]
            notes += [n for n in results.notes if n not in notes]
            for r in results.rows:
                row = rows.setdefault(
                    (r.label, r.model, r.size, plain_variant(r.variant)),
                    {"block": r.block, "values": {}, "variant": r.variant, "also": r.also},
                )
                row["values"].update({c.name: v for c, v in zip(results.columns, r.values)})
        columns.sort(key=lambda c: c.spec.position)
        tables[number] = PaperTable(
            number,
            parts[number][0][1].title,
            tuple(columns),
            tuple(
                PaperRow(lbl, m, s, r["values"], r["block"], r["variant"], r["also"])
                for (lbl, m, s, _), r in rows.items()
            ),
            tuple(notes),
            next((res.label for _, res in parts[number] if res.label), None),
        )
    return tables


def released_checkpoints() -> dict[str, tuple[str, str]]:
    """The paper's released checkpoints (hub ids) and the setup each is: ``(model, size)``."""
    return {hub_id: setup for cls in TASKS.values() for hub_id, setup in cls.released.items()}


def paper_models() -> frozenset[str]:
    return frozenset(row.model for t in paper_tables().values() for row in t.rows if row.model)


def split_model_name(name: str | None) -> tuple[str | None, str | None]:
    """bertgen model config name (or released hub id) -> (paper model key, size): ``bertshare_large`` ->
    (``bertshare``, ``large``); the size is None for models the paper does not have (e.g. ``quickstart``)."""
    if not name:
        return None, None
    released = released_checkpoints()
    if name in released:
        return released[name]
    key = name.lower()
    size = "base"
    if key.endswith("_large"):
        key, size = key[: -len("_large")], "large"
    return key, (size if key in paper_models() else None)


# The paper's model sizes (Table 1): BERT-Base / RoBERTa-Base / GPT-2 (12 layers, 768 wide) and the Large ones.
PAPER_SIZES = {(12, 768): "base", (24, 1024): "large"}


def size_label(layers: int, hidden: int) -> str:
    """``base`` / ``large`` for the paper's sizes, else what the model is (``6L-384H``: a MiniLM-size model)."""
    return PAPER_SIZES.get((int(layers), int(hidden)), f"{int(layers)}L-{int(hidden)}H")


def model_size(model, name: str | None = None) -> str | None:
    """The size label of a built model (its decoder's depth and width); a model config ``name`` ending in
    ``_large`` is no longer trusted over what the weights are."""
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "decoder", cfg)
    if cfg is None or not hasattr(cfg, "num_hidden_layers"):
        return split_model_name(name)[1]
    return size_label(cfg.num_hidden_layers, cfg.hidden_size)

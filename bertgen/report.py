"""Collect runs' ``metrics.json`` into the paper's tables: ``python -m bertgen.report <run dirs | multirun dir>``.

Reads the run records (`bertgen.run_record.RunRecord`, ``metrics.json``) that train.py and evaluate.py write,
groups them by task into the layout of
Rothe et al. (TACL 2020) Tables 2-5 and prints each run's scores with the paper's published number beside it
(`bertgen.paper_tables`). Runs of other tasks (e.g. the synthetic quickstart) go to a plain "other runs" table.
Writes ``report.md`` and, when matplotlib is installed (``pip install bertgen[report]``), ``report.png`` to ``--out``.

Rows are (model, size, split): several runs of one setup (seeds) are averaged and shown as ``mean ±std (n=k)``.
The paper's numbers are test-set numbers; train.py's are validation numbers (greedy decoding, possibly a subset),
so compare a run's evaluate.py test row with the paper.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bertgen.errors import BertgenError
from bertgen.paper_tables import SOURCE, TABLES, PaperTable, split_model_name
from bertgen.run_record import FILE_NAME as METRICS_FILE
from bertgen.run_record import RunRecord, RunRecordError


class ReportError(BertgenError):
    """A path without runs or a metrics.json that is not bertgen's: one line naming the file and key."""


@dataclass(frozen=True)
class RunResult:
    path: Path  # the metrics.json
    source: str  # train | evaluate
    task: str
    model: str | None
    size: str | None  # base | large | None
    split: str  # validation | test
    train_fraction: float
    metrics: dict[str, float]  # bare keys: sari, exact, bleu, rouge1, ...
    data_files: tuple[str, ...] = ()  # evaluate.py: the evaluated files (tells newstest2016 from 2014)


# ===================================================================================================================
# Reading runs
# ===================================================================================================================
def find_metrics_files(paths: Iterable[str | Path]) -> list[Path]:
    """metrics.json files given directly or anywhere under the given folders (run dirs, multirun dirs)."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            here = sorted(
                f for f in p.rglob(METRICS_FILE) if not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not here:
                raise ReportError(f"{p}: no {METRICS_FILE} in this folder or below it (is the run finished?)")
            found.extend(here)
        else:
            raise ReportError(f"{p}: no such file or folder")
    unique = list(dict.fromkeys(f.resolve() for f in found))
    return unique


def load_run(path: Path) -> RunResult:
    """One run record (`bertgen.run_record.RunRecord`) as a report row's input: its test scores when it has them,
    else the split it was scored on."""
    try:
        rec = RunRecord.load(path)
    except RunRecordError as e:
        raise ReportError(str(e)) from None
    split, scores = rec.scores()
    metrics = {k: v for k, v in scores.items() if k != "loss"}
    if not metrics:
        raise ReportError(
            f"{path}: no scores in '{'test_metrics' if split == 'test' and rec.test_metrics else 'metrics'}' "
            f"(did the run validate with generation?)"
        )
    model_key, size = split_model_name(rec.model)
    if rec.size in ("base", "large"):
        size = rec.size
    files = tuple(str(f) for f in (rec.dataset or {}).get("files", ()))
    return RunResult(
        Path(path), rec.source, rec.task, model_key, size, split, float(rec.train_fraction), metrics, files
    )


# ===================================================================================================================
# Tables
# ===================================================================================================================
@dataclass(frozen=True)
class Column:
    name: str  # as printed (and the paper table's column when it has one)
    task: str  # which task's runs fill it
    metric: str  # key in the run's metrics
    fraction: float = 1.0
    test_set: str | None = None  # Table 4: "2014" | "2016"

    def accepts(self, run: RunResult) -> bool:
        if run.task != self.task or abs(run.train_fraction - self.fraction) > 1e-9 or self.metric not in run.metrics:
            return False
        return self.test_set is None or _wmt_test_set(run) == self.test_set


def _wmt_test_set(run: RunResult) -> str:
    return "2016" if any("2016" in f for f in run.data_files) else "2014"


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def columns_for(table: int, runs: Sequence[RunResult]) -> list[Column]:
    """The paper's columns for ``table``; Table 2 adds a SARI column per extra training fraction present (the paper's
    10% / 1%, or any other), Table 4 shows the newstest2016 columns only when such runs exist."""
    if table == 2:
        cols = [Column("100% Exact", "discofuse", "exact"), Column("100% SARI", "discofuse", "sari")]
        fractions = sorted(
            {r.train_fraction for r in runs if r.task == "discofuse" and r.train_fraction != 1.0}, reverse=True
        )
        return cols + [Column(f"{_pct(f)} SARI", "discofuse", "sari", f) for f in fractions]
    if table == 3:
        return [
            Column("Exact", "wikisplit", "exact"),
            Column("SARI", "wikisplit", "sari"),
            Column("BLEU", "wikisplit", "bleu"),
        ]
    if table == 4:
        cols = []
        for year in ("2014", "2016"):
            for task, arrow in (("wmt14_en_de", "En→De"), ("wmt14_de_en", "De→En")):
                cols.append(Column(f"nt{year} {arrow}", task, "bleu", test_set=year))
        return [c for c in cols if c.test_set == "2014" or any(c.accepts(r) for r in runs)]
    if table == 5:
        return [
            Column(f"{label} {name}", task, metric)
            for task, label in (("gigaword", "Giga"), ("cnn_dailymail", "CNN/DM"), ("xsum", "XSum"))
            for name, metric in (("R-1", "rouge1"), ("R-2", "rouge2"), ("R-L", "rougeL"))
        ]
    raise ValueError(f"no paper table {table}")


TABLE_TASKS = {
    2: {"discofuse"},
    3: {"wikisplit"},
    4: {"wmt14_en_de", "wmt14_de_en"},
    5: {"gigaword", "cnn_dailymail", "xsum"},
}


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None

    @property
    def std(self) -> float:
        n = len(self.values)
        if n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (n - 1))

    def text(self) -> str:
        if not self.values:
            return "–"
        if len(self.values) == 1:
            return f"{self.values[0]:.2f}"
        return f"{self.mean:.2f} ±{self.std:.2f} (n={len(self.values)})"


@dataclass
class Row:
    model: str | None
    size: str | None
    split: str
    cells: dict[str, Cell]
    paper: dict[str, float | None] | None
    runs: list[Path]

    @property
    def label(self) -> str:
        return self.model or "(unknown model)"


@dataclass
class ReportTable:
    number: int | None  # paper table, None for "other runs"
    title: str
    columns: list[str]
    rows: list[Row]
    paper_beside: bool


def _paper_label(paper: PaperTable, model: str | None, size: str | None) -> str | None:
    for row in paper.rows:
        if row.model is not None and row.model == model and row.size == size:
            return row.label
    return None


def build_tables(runs: Sequence[RunResult]) -> list[ReportTable]:
    """Paper Tables 2-5 for the runs of their tasks, then the remaining runs as an "other runs" table."""
    tables: list[ReportTable] = []
    used: set[Path] = set()
    for number, tasks in TABLE_TASKS.items():
        mine = [r for r in runs if r.task in tasks]
        if not mine:
            continue
        paper = TABLES[number]
        cols = columns_for(number, mine)
        rows: dict[tuple, Row] = {}
        for run in mine:
            key = (run.model, run.size, run.split)
            row = rows.get(key)
            if row is None:
                row = rows[key] = Row(
                    run.model,
                    run.size,
                    run.split,
                    {c.name: Cell() for c in cols},
                    paper.lookup(run.model, run.size),
                    [],
                )
            placed = False
            for col in cols:
                if col.accepts(run):
                    row.cells[col.name].values.append(run.metrics[col.metric])
                    placed = True
            if placed:
                row.runs.append(run.path)
                used.add(run.path)
        kept = [r for r in rows.values() if r.runs]
        for r in kept:  # print the paper's spelling of the model (bertShare, robertaShare, ...)
            r.model = _paper_label(paper, r.model, r.size) or r.model
        kept.sort(key=lambda r: (r.size != "base", r.size or "", r.label.lower(), r.split))
        tables.append(ReportTable(number, f"Table {number} – {paper.title}", [c.name for c in cols], kept, True))
    rest = [r for r in runs if r.path not in used]
    if rest:
        metric_names = sorted({k for r in rest for k in r.metrics})
        rows_other = []
        for r in sorted(rest, key=lambda r: (r.task, r.model or "", r.split, -r.train_fraction, str(r.path))):
            cells = {m: Cell([r.metrics[m]] if m in r.metrics else []) for m in metric_names}
            rows_other.append(
                Row(f"{r.model} ({r.task}, {_pct(r.train_fraction)} train)", r.size, r.split, cells, None, [r.path])
            )
        tables.append(
            ReportTable(
                None,
                "Other runs (no paper table: task not in Tables 2-5, or metric missing)",
                metric_names,
                rows_other,
                False,
            )
        )
    return tables


# ===================================================================================================================
# Rendering
# ===================================================================================================================
def _fmt_paper(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def render_markdown(tables: Sequence[ReportTable]) -> str:
    out = [
        "# bertgen results",
        "",
        f"Paper columns: published test-set numbers of {SOURCE}, Tables 2-5 (`bertgen/paper_tables.py`). "
        "Rows with split `validation` come from train.py (last validation, greedy decoding); "
        "`test` rows from evaluate.py (the task's full decoding). All scores 0-100.",
        "",
    ]
    for t in tables:
        out += [f"## {t.title}", ""]
        header = ["model", "size", "split"]
        for c in t.columns:
            header += [c, "paper"] if t.paper_beside else [c]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" for _ in header) + "|")
        for r in t.rows:
            cells = [r.label, r.size or "–", r.split]
            for c in t.columns:
                cells.append(r.cells[c].text())
                if t.paper_beside:
                    cells.append(_fmt_paper((r.paper or {}).get(c)))
            out.append("| " + " | ".join(cells) + " |")
        if t.number == 4:
            out += [
                "",
                "The paper's 24-layer MT rows use a custom En/De BERT checkpoint; its 12-layer rows the public "
                "multilingual BERT (paper Table 4).",
            ]
        if t.number == 5:
            out += [
                "",
                "R-L is `rougeL` (sentence-level LCS); the paper does not say which ROUGE-L it reports "
                "(evaluate.py also logs `rougeLsum` for CNN/DM).",
            ]
        out += ["", "Runs:"]
        for r in t.rows:
            out.append(f"- {r.label} {r.size or ''} {r.split}: " + ", ".join(f"`{p.parent}`" for p in r.runs))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_png(tables: Sequence[ReportTable], path: Path) -> bool:
    """Grouped bars per paper table: each run row's scores beside the paper's. False when no paper table has rows;
    ImportError without matplotlib (an optional dependency: ``pip install 'bertgen[report]'``)."""
    charts = [t for t in tables if t.paper_beside and t.rows]
    if not charts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(charts), 1, figsize=(12, 4.2 * len(charts)), squeeze=False)
    for ax, t in zip(axes[:, 0], charts):
        labels, ours, paper = [], [], []
        for r in t.rows:
            for c in t.columns:
                if r.cells[c].mean is None:
                    continue
                labels.append(f"{r.label} {r.size or ''} {'val' if r.split == 'validation' else r.split}\n{c}")
                ours.append(r.cells[c].mean)
                p = (r.paper or {}).get(c)
                paper.append(float("nan") if p is None else p)
        x = list(range(len(labels)))
        w = 0.4
        ax.bar([i - w / 2 for i in x], ours, w, label="this run", color="#3b75af")
        ax.bar([i + w / 2 for i in x], paper, w, label="paper", color="#c6c6c6", edgecolor="#555555", hatch="//")
        ax.set_xticks(x)
        ax.set_xticklabels(
            labels, fontsize=7, rotation=30 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center"
        )
        ax.set_title(t.title)
        ax.set_ylabel("score (0-100)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)
    return True


def report(paths: Sequence[str | Path], out_dir: str | Path | None, png: bool = True) -> str:
    """Build the report for ``paths``; write report.md (+ report.png) to ``out_dir`` when given; return the markdown."""
    runs = [load_run(p) for p in find_metrics_files(paths)]
    tables = build_tables(runs)
    md = render_markdown(tables)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / ".report.md.tmp"
        tmp.write_text(md, encoding="utf-8")
        tmp.replace(out / "report.md")
        if png:
            (out / "report.png").unlink(missing_ok=True)  # never leave a chart of an earlier report beside this one
            try:
                if not render_png(tables, out / "report.png"):
                    print(
                        "note: report.png not written: no run of a paper table (Tables 2-5) to chart", file=sys.stderr
                    )
            except ImportError:
                print(
                    "note: report.png not written: matplotlib is not installed (pip install 'bertgen[report]')",
                    file=sys.stderr,
                )
    return md


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bertgen.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="run dirs, multirun dirs or metrics.json files")
    ap.add_argument("--out", default=".", help="folder for report.md and report.png (default: the current folder)")
    ap.add_argument("--no-png", action="store_true", help="skip the chart")
    args = ap.parse_args(argv)
    try:
        md = report(args.paths, args.out, png=not args.no_png)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

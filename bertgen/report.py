"""Collect runs' ``metrics.json`` into the paper's tables: ``python -m bertgen.report <run dirs | multirun dir>``.

Reads the run records (`bertgen.run_record.RunRecord`, ``metrics.json``) that train.py and evaluate.py write,
groups them by task into the layout of the paper's tables (the tables the tasks declare a part of: Rothe et al.
TACL 2020, Tables 2-7 and the §5 ablations) and prints each run's scores with the paper's published number beside
it (`bertgen.paper_tables`). Every table is printed, and every row of it that is a bertgen setup: a cell holds a
run's value, ``not run``, or ``n/a`` (another paper's system, or a score no run can compute, such as Table 7's
human quality); the paper's value stands beside it. Runs of other tasks (e.g. the synthetic quickstart) and of
ablation variants no table has go to a plain "other runs" table. Writes ``report.md`` and, when matplotlib is
installed (``pip install bertgen[report]``), ``report.png`` to ``--out``.

Rows are (paper row, model, size, split): several runs of one setup (seeds) are averaged and shown as
``mean ±std (n=k)``. A run's config ``variant`` (recorded in its run record) picks its ablation row (Table 6, §5);
a plain run (no variant, or ``full``) is a row of Tables 2-5 and 7 and the full-init rows of the ablations. Table
7's Gold row is the references of each evaluated XSum split, scored from the ``predictions.jsonl`` beside an
evaluate.py record. The paper's numbers are test-set numbers; train.py's are validation numbers (greedy decoding,
possibly a subset), so compare a run's evaluate.py test row with the paper.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bertgen.data.tasks import GOLD, plain_variant
from bertgen.errors import BertgenError
from bertgen.paper_tables import SOURCE, PaperRow, PaperTable, paper_tables, split_model_name
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
    variant: str | None = None  # the run's ablation setup (config ``variant``)


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
    if rec.task_module:  # a task defined outside bertgen: its module declares its paper table, if any
        try:
            importlib.import_module(rec.task_module)
        except ImportError as e:
            raise ReportError(f"{path}: task module {rec.task_module!r} cannot be imported ({e})") from None
    split, scores = rec.scores()
    metrics = {k: v for k, v in scores.items() if k != "loss"}
    if not metrics:
        raise ReportError(
            f"{path}: no scores in '{'test_metrics' if split == 'test' and rec.test_metrics else 'metrics'}' "
            f"(did the run validate with generation?)"
        )
    model_key, size = split_model_name(rec.model)
    size = rec.size or size  # what the model was (base, large, 6L-384H), when the record says
    files = tuple(str(f) for f in (rec.dataset or {}).get("files", ()))
    return RunResult(
        Path(path), rec.source, rec.task, model_key, size, split, float(rec.train_fraction), metrics, files, rec.variant
    )


def gold_runs(runs: Sequence[RunResult]) -> list[RunResult]:
    """Table 7's Gold: for each distinct evaluated split of a task whose table has a Gold row, the references scored
    as if they were the output (the table's computable columns only), read from the evaluate.py run's
    ``predictions.jsonl``. Runs without one (train.py runs, or a deleted file) give nothing."""
    from bertgen.data.tasks import task_class
    from bertgen.metrics import TaskMetrics

    wanted: dict[str, set[str]] = {}
    for paper in paper_tables().values():
        if any(r.model == GOLD for r in paper.rows):
            for c in paper.columns:
                if c.spec.computable:
                    wanted.setdefault(c.task, set()).add(c.spec.metric)
    out, seen = [], set()
    for run in runs:
        preds = run.path.parent / "predictions.jsonl"
        if run.source != "evaluate" or run.task not in wanted or not preds.is_file():
            continue
        try:
            rows = [json.loads(line) for line in preds.read_text(encoding="utf-8").splitlines() if line.strip()]
            targets = [r["target"] if isinstance(r["target"], str) else r["target"][0] for r in rows]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ReportError(f"{preds}: not a predictions file of evaluate.py ({e})") from None
        key = (run.task, run.split, hashlib.sha256("\n".join(targets).encode()).hexdigest())
        if not targets or key in seen:
            continue
        seen.add(key)
        metrics = {k: m for k, m in task_class(run.task).metrics().items() if k in wanted[run.task]}
        if not metrics:
            continue
        scored = TaskMetrics(metrics)
        scored.update(targets, [[t] for t in targets])
        values = {k: float(v) for k, v in scored.compute().items()}
        out.append(RunResult(preds, "evaluate", run.task, GOLD, None, run.split, 1.0, values, run.data_files))
    return out


# ===================================================================================================================
# Tables
# ===================================================================================================================
@dataclass(frozen=True)
class Column:
    name: str  # as printed (and the paper table's column when it has one)
    task: str  # which task's runs fill it
    metric: str  # key in the run's metrics
    fraction: float = 1.0
    test_set: str | None = None  # a string the evaluated files' names contain; None: the task's default test set
    test_sets: tuple[str, ...] = ()  # every test set the table names for this task
    computable: bool = True  # False: the paper's value only (a human score)

    def accepts(self, run: RunResult) -> bool:
        if (
            not self.computable
            or run.task != self.task
            or abs(run.train_fraction - self.fraction) > 1e-9
            or self.metric not in run.metrics
        ):
            return False
        found = next((t for t in self.test_sets if any(t in f for f in run.data_files)), None)
        return found == self.test_set


def _pct(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def columns_for(paper: PaperTable, runs: Sequence[RunResult]) -> list[Column]:
    """The paper's columns of a table: every column a task declares (``optional`` ones too: the table is printed
    whole), and for a ``by_fraction`` column one more column per other training fraction the runs have (Table 2's
    10% and 1%, or any other)."""
    test_sets: dict[str, set[str]] = {}
    for c in paper.columns:
        if c.spec.test_set:
            test_sets.setdefault(c.task, set()).add(c.spec.test_set)

    def column(task: str, name: str, metric: str, fraction: float, test_set: str | None, computable=True) -> Column:
        return Column(name, task, metric, fraction, test_set, tuple(sorted(test_sets.get(task, ()))), computable)

    cols = [
        column(c.task, c.name, c.spec.metric, c.spec.fraction, c.spec.test_set, c.spec.computable)
        for c in paper.columns
    ]
    for c in paper.columns:
        if not c.spec.by_fraction:
            continue
        declared = {d.spec.fraction for d in paper.columns if d.task == c.task and d.spec.metric == c.spec.metric}
        fractions = sorted({r.train_fraction for r in runs if r.task == c.task} - declared, reverse=True)
        cols += [column(c.task, f"{_pct(f)} {c.spec.by_fraction}", c.spec.metric, f, None) for f in fractions]
    return cols


NOT_RUN = "not run"  # a bertgen setup of the paper without a run for this cell
NOT_APPLICABLE = "n/a"  # another paper's system, or a score no run computes (Table 7's human quality)


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    empty: str = NOT_RUN  # what an empty cell says

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
            return self.empty
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
    variant: str | None = None  # the runs' config variant (ablation tables print it)
    block: str = ""  # the paper's row group

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
    notes: tuple[str, ...] = ()
    name: str = ""  # "Table 2", "§5"
    ablation: bool = False  # rows are setups (variants) of a model: a variant column is printed


def _cells(cols: Sequence[Column], empty: str | None = None) -> dict[str, Cell]:
    return {c.name: Cell(empty=empty or (NOT_RUN if c.computable else NOT_APPLICABLE)) for c in cols}


def _paper_row(paper: PaperTable, run: RunResult) -> PaperRow | None:
    """The paper row a run belongs to (a run of another size than the paper's: its model's base row)."""
    return paper.row(run.model, run.size, run.variant) or paper.row(run.model, "base", run.variant)


def _row_label(prow: PaperRow | None, model: str | None, ablation: bool) -> str | None:
    if prow is None:
        return model
    if ablation and model != prow.model:  # a row that stands for several models: say which one ran
        return f"{prow.label} ({model})"
    return prow.label


def build_tables(runs: Sequence[RunResult]) -> list[ReportTable]:
    """Every paper table, each row of it with its runs (or marked not run), then the remaining runs as an "other
    runs" table. A plain run belongs to the tables without variants and to the ablations' plain rows; a run with a
    variant only to the ablation row of that variant."""
    tables: list[ReportTable] = []
    used: set[Path] = set()
    for number, paper in paper_tables().items():
        mine = [r for r in runs if r.task in paper.tasks]
        cols = columns_for(paper, mine)
        attached: dict[int, dict[tuple, Row]] = {}  # paper row index -> its run rows
        unmatched: dict[tuple, Row] = {}
        index = {id(r): i for i, r in enumerate(paper.rows)}
        for run in mine:
            prow = _paper_row(paper, run)
            if prow is None and (paper.ablation or plain_variant(run.variant) is not None):
                continue  # an ablation table holds its own rows' runs; a variant run no row has: "other runs"
            accepting = [c for c in cols if c.accepts(run)]
            if not accepting:
                continue
            key = (run.model, run.size, run.split, plain_variant(run.variant))
            group = unmatched if prow is None else attached.setdefault(index[id(prow)], {})
            row = group.get(key)
            if row is None:
                row = group[key] = Row(
                    _row_label(prow, run.model, paper.ablation),
                    run.size,
                    run.split,
                    _cells(cols),
                    paper.lookup(prow.model, prow.size, prow.variant) if prow else None,
                    [],
                    run.variant or (prow.variant if prow else None),
                    prow.block if prow else "runs of setups the paper does not have",
                )
            for col in accepting:
                row.cells[col.name].values.append(run.metrics[col.metric])
            row.runs.append(run.path)
            used.add(run.path)
        rows: list[Row] = []
        for i, prow in enumerate(paper.rows):
            values = {c.name: prow.values.get(c.name) for c in cols}
            if prow.model is None:  # another paper's system: its numbers only
                rows.append(Row(prow.label, prow.size, "–", _cells(cols, NOT_APPLICABLE), values, [], None, prow.block))
            elif i in attached:
                rows += sorted(attached[i].values(), key=lambda r: (r.size or "", r.label.lower(), r.split))
            else:
                rows.append(Row(prow.label, prow.size, "–", _cells(cols), values, [], prow.variant, prow.block))
        rows += sorted(unmatched.values(), key=lambda r: (r.size or "", r.label.lower(), r.split))
        tables.append(
            ReportTable(
                number,
                f"{paper.name} – {paper.title}",
                [c.name for c in cols],
                rows,
                True,
                paper.notes,
                paper.name,
                paper.ablation,
            )
        )
    rest = [r for r in runs if r.path not in used and r.model != GOLD]
    if rest:
        metric_names = sorted({k for r in rest for k in r.metrics})
        rows_other = []
        for r in sorted(rest, key=lambda r: (r.task, r.model or "", r.split, -r.train_fraction, str(r.path))):
            cells = {m: Cell([r.metrics[m]] if m in r.metrics else [], "–") for m in metric_names}
            setup = f"{r.task}, {_pct(r.train_fraction)} train" + (f", variant {r.variant}" if r.variant else "")
            rows_other.append(Row(f"{r.model} ({setup})", r.size, r.split, cells, None, [r.path], r.variant))
        tables.append(
            ReportTable(
                None,
                "Other runs (no paper table: a task without one, a variant no table has, or a metric missing)",
                metric_names,
                rows_other,
                False,
                name="Other runs",
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
        f"Paper columns: published test-set numbers of {SOURCE} (as the tasks declare them, `bertgen/data/tasks/`). "
        "Rows with split `validation` come from train.py (last validation, greedy decoding); "
        "`test` rows from evaluate.py (the task's full decoding). All scores 0-100 but Table 7's Length (words) and "
        "Quality ([-1, 1]). A run of another size than the paper's (e.g. `6L-384H`) is shown beside the paper's base "
        "(12-layer) value of its model. Cells: a run's value (`mean ±std (n=k)` over seeds), "
        f"`{NOT_RUN}` (a setup of the paper without a run), `{NOT_APPLICABLE}` (another paper's system, or a human "
        "score no run computes); a paper column's `–` is a value the paper does not give.",
        "",
    ]
    for t in tables:
        out += [f"## {t.title}", ""]
        header = ["model", "variant", "size", "split"] if t.ablation else ["model", "size", "split"]
        for c in t.columns:
            header += [c, "paper"] if t.paper_beside else [c]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" for _ in header) + "|")
        block = ""
        for r in t.rows:
            if t.paper_beside and r.block and r.block != block:
                out.append("| " + " | ".join([f"*{r.block}*"] + [""] * (len(header) - 1)) + " |")
            block = r.block
            cells = [r.label, f"`{r.variant}`" if r.variant else "–"] if t.ablation else [r.label]
            cells += [r.size or "–", r.split]
            for c in t.columns:
                cells.append(r.cells[c].text())
                if t.paper_beside:
                    cells.append(_fmt_paper((r.paper or {}).get(c)))
            out.append("| " + " | ".join(cells) + " |")
        for note in t.notes:
            out += ["", note]
        ran = [r for r in t.rows if r.runs]
        if ran:
            out += ["", "Runs:"]
        for r in ran:
            out.append(f"- {r.label} {r.size or ''} {r.split}: " + ", ".join(f"`{p.parent}`" for p in r.runs))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_png(tables: Sequence[ReportTable], path: Path) -> bool:
    """One panel per paper column that has runs (a metric of a task): each run row's score as a bar, the paper's
    value for that model beside it, labelled by model and size (``6L-384H`` for a model of another size than the
    paper's, whose bar stands beside the paper's base value). False when no paper table has rows; ImportError
    without matplotlib (an optional dependency: ``pip install 'bertgen[report]'``)."""
    panels = [
        (t, c, [r for r in t.rows if r.cells[c].mean is not None]) for t in tables if t.paper_beside for c in t.columns
    ]
    panels = [p for p in panels if p[2]]
    if not panels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    width = max(len(rows) for _, _, rows in panels)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(4.5, 0.9 * width + 1.5) * ncols, 4.2 * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (t, column, rows) in zip(axes.flat, panels):
        x = list(range(len(rows)))
        ours = [r.cells[column].mean for r in rows]
        errs = [r.cells[column].std for r in rows]
        paper = [(r.paper or {}).get(column) for r in rows]
        w = 0.38
        yerr = errs if any(errs) else None  # seeds: mean and standard deviation
        ax.bar([i - w / 2 for i in x], ours, w, yerr=yerr, capsize=3, label="bertgen run", color="#3b75af")
        ax.bar(
            [i + w / 2 for i in x],
            [float("nan") if v is None else v for v in paper],
            w,
            label="paper",
            color="#c6c6c6",
            edgecolor="#555555",
            hatch="//",
        )
        for i, v in enumerate(ours):
            ax.text(i - w / 2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x)
        ax.set_xticklabels(
            [f"{r.label}\n{r.size or '-'}{' (val)' if r.split == 'validation' else ''}" for r in rows], fontsize=8
        )
        ax.set_title(f"{t.name}: {column}", fontsize=10)
        ax.set_ylabel(column)  # not always 0-100 (Table 7's Length is in words)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)
    return True


def report(paths: Sequence[str | Path], out_dir: str | Path | None, png: bool = True) -> str:
    """Build the report for ``paths``; write report.md (+ report.png) to ``out_dir`` when given; return the markdown."""
    runs = [load_run(p) for p in find_metrics_files(paths)]
    tables = build_tables(runs + gold_runs(runs))
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
                    print("note: report.png not written: no run of a paper table to chart", file=sys.stderr)
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

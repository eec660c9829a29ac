"""Model-free baselines scored like a model: ``python evaluate.py baseline=copy task=<task> data_dir=<folder>``.

``copy``: the prediction is the source itself (no split, no fusion, no summary): what a system that learned nothing
but to copy its input scores. The text is the task's raw source as read from its files, before any tokenizer, so the
score does not depend on a vocabulary. The run record (``metrics.json``, model ``copy-source``) and
``predictions.jsonl`` are the same files ``evaluate.py`` writes for a checkpoint, so ``python -m bertgen.report``
shows the baseline as one more row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bertgen.errors import BertgenError
from bertgen.io import write_jsonl_atomic
from bertgen.run_record import RunRecord, package_versions

log = logging.getLogger("bertgen.baselines")

BASELINES: dict[str, tuple[str, Callable[[str], str]]] = {
    "copy": ("copy-source", lambda source: source),
}


class BaselineError(BertgenError):
    """A baseline that cannot run: unknown name, no local data."""


def read_split(task: Mapping[str, Any], data_dir: str | Path, split: str) -> tuple[list[tuple[str, str]], Any]:
    """(source, target) rows of a local split as the task reads them (no tokenizer), and the file entry."""
    from bertgen.data.errors import InvalidRows
    from bertgen.data.tasks import make_task

    t = make_task(task, task.get("task_options"))
    entry = t.find_local(Path(data_dir), split)
    return [(src, tgt) for _, src, tgt in t.read_local(entry, InvalidRows(skip=False))], entry


def evaluate_baseline(
    name: str,
    task: Mapping[str, Any],
    data_dir: str | Path | None,
    split: str,
    out_dir: str | Path,
    max_examples: int | None = None,
) -> RunRecord:
    """Score baseline ``name`` on ``split`` of the task's local data (``data_dir``, or ``task.compose_splits``
    materialised into ``out_dir/data``); writes ``out_dir/predictions.jsonl`` and ``out_dir/metrics.json``.
    ``max_examples``: the first N rows in file order."""
    from bertgen.data import task_data_dir, task_metrics
    from bertgen.io import hash_files

    if name not in BASELINES:
        raise BaselineError(f"baseline={name!r}: unknown; known: {', '.join(sorted(BASELINES))}")
    model_name, predict = BASELINES[name]
    out_dir = Path(out_dir)
    folder = task_data_dir(task, data_dir, out_dir)
    if folder is None:
        raise BaselineError(
            f"baseline={name} reads local files: give data_dir=<folder> (or a task with compose_splits) "
            f"for {task['name']}"
        )
    started = time.perf_counter()
    rows, entry = read_split(task, folder, split)
    n_split = len(rows)
    rows = rows[: max_examples or None]
    metrics, headline = task_metrics(task)
    preds = [predict(src) for src, _ in rows]
    metrics.update(preds, [[tgt] for _, tgt in rows], [src for src, _ in rows])
    scores = {k: float(v) for k, v in metrics.compute().items()}
    paths = list(entry) if isinstance(entry, tuple) else [entry]
    record = RunRecord(
        source="evaluate",
        task=task["name"],
        model=model_name,
        split=split,
        headline=headline,
        metrics=scores,
        examples=len(rows),
        examples_in_split=n_split,
        signatures=metrics.signatures(),
        checkpoint={"path": None, "kind": "baseline", "loaded": name, "run_dir": None},
        dataset={"split": split, "files": [p.name for p in paths], "hash": hash_files(paths), "examples": n_split},
        versions=package_versions(),
        seconds=round(time.perf_counter() - started, 3),
    )
    write_jsonl_atomic(
        out_dir / "predictions.jsonl",
        [{"source": s, "target": t, "prediction": p} for (s, t), p in zip(rows, preds)],
    )
    record.save(out_dir)
    log.info("baseline %s on %s/%s (%d rows): %s", name, task["name"], split, len(rows), scores)
    print(
        f"\n{model_name} {task['name']} {split} ({len(rows)} examples): "
        + ", ".join(f"{k}={v:.2f}" for k, v in scores.items())
    )
    print(f"metrics:      {out_dir / 'metrics.json'}")
    return record

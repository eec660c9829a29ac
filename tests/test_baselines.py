"""``python evaluate.py baseline=copy``: the copy-the-source baseline, scored and recorded like a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bertgen.data import task_metrics
from bertgen.errors import BertgenError
from bertgen.report import report
from bertgen.run_record import RunRecord

from conftest import compose, run_evaluate

ROWS = [
    ("He was born in 1950 and died in 2000 .", "He was born in 1950 . <::::> He died in 2000 ."),
    ("The town , which is old , is big .", "The town is old . <::::> It is big ."),
    ("She sang and he played .", "She sang . <::::> He played ."),
]


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "wikisplit"
    folder.mkdir()
    (folder / "test.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in ROWS))
    (folder / "validation.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in ROWS[:1]))
    return folder


def test_copy_baseline_scores_the_sources_and_writes_a_run_record(tmp_path, data):
    rec = run_evaluate(tmp_path / "out", "baseline=copy", "task=wikisplit", f"data_dir={data}", "split=test")
    metrics, _ = task_metrics("wikisplit")
    metrics.update([s for s, _ in ROWS], [[t] for _, t in ROWS], [s for s, _ in ROWS])
    expected = {k: float(v) for k, v in metrics.compute().items()}
    assert rec.model == "copy-source" and rec.source == "evaluate" and rec.split == "test"
    assert rec.metrics == pytest.approx(expected) and rec.metrics["exact"] == 0.0
    assert rec.examples == rec.examples_in_split == 3 and rec.dataset["files"] == ["test.tsv"]
    assert RunRecord.load(tmp_path / "out").metrics == rec.metrics
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in rows] == [s for s, _ in ROWS]
    assert "copy-source" in report([tmp_path / "out"], None, png=False)  # one more row of Table 3

    first = run_evaluate(tmp_path / "two", "baseline=copy", "task=wikisplit", f"data_dir={data}", "max_examples=2")
    assert first.examples == 2 and first.examples_in_split == 3  # file order


def test_copy_baseline_on_a_training_run_uses_its_task_and_composed_data(tmp_path, data):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    task = OmegaConf.to_container(compose("train", ["task=wikisplit"]).task, resolve=True)
    task["compose_splits"] = {"source_dir": str(data), "splits": {"test": ["test.tsv[1:]"]}}
    OmegaConf.save(OmegaConf.create({"task": task, "data_dir": None}), run / ".hydra" / "config.yaml")
    rec = run_evaluate(tmp_path / "out", "baseline=copy", f"ckpt={run}", "split=test")
    assert rec.examples == 2 and rec.task == "wikisplit"
    assert (tmp_path / "out" / "data" / "compose.json").is_file()


def test_baseline_errors_are_one_clear_message(tmp_path, data):
    with pytest.raises(BertgenError, match="unknown; known: copy"):
        run_evaluate(tmp_path / "a", "baseline=nope", "task=wikisplit", f"data_dir={data}")
    with pytest.raises(BertgenError, match="reads local files: give data_dir"):
        run_evaluate(tmp_path / "b", "baseline=copy", "task=wikisplit")
    with pytest.raises(BertgenError, match="not a train.py run dir"):
        run_evaluate(tmp_path / "c", "baseline=copy", f"ckpt={tmp_path}")

"""Adding a task is two files: its declaration (a `Task` subclass in a module of its own) and its config.

The toy task below lives only in this test's temporary folder: train.py trains two steps on it, evaluate.py scores its
test split and the report lays it beside the "paper" values the task declares, with nothing in the package touched.
docs/extending.md walks through the same two files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import MINILM, REPO

TASK_MODULE = '''
"""A toy task: reverse the order of the words of a sentence."""

from dataclasses import dataclass
from typing import ClassVar

from bertgen.data.readers import iter_tsv
from bertgen.data.tasks import PaperColumn, PaperResults, Task, paper_rows, register
from bertgen.data.tasks.base import expect_file


@register
@dataclass
class ReverseTask(Task):
    name: ClassVar[str] = "toy_reverse"
    local_layouts: ClassVar = {"train": ["train.tsv"], "validation": ["dev.tsv"], "test": ["test.tsv"]}
    headline: ClassVar[str] = "exact"
    paper: ClassVar = (
        PaperResults(
            90,
            "Toy reversal (test)",
            (PaperColumn("Exact", "exact", 0), PaperColumn("BLEU", "sacrebleu", 1)),
            paper_rows("base", "", ("a made-up model", "quickstart", 50.0, 60.0)),
        ),
    )
    max_source_length: int = 16
    max_target_length: int = 16
    text_style: str = "tokenized"

    @classmethod
    def metrics(cls):
        from bertgen.metrics import ExactMatch, SacreBLEU

        return {"exact": ExactMatch(), "sacrebleu": SacreBLEU(tokenize="none")}

    def _read_local(self, entry, invalid):
        for where, (source, target) in iter_tsv(expect_file(entry, self.name), invalid, 2):
            yield where, source, target
'''

TASK_CONFIG = """
# A toy task defined outside bertgen: `module` is imported and registers it.
defaults:
  - common/defaults@_here_
  - _self_
name: toy_reverse
module: toy_task
global_batch_size: 8
batch_size: 8
max_steps: 2
val_check_interval: 2
val_max_examples: 8
generation: {max_new_tokens: 16}
"""

WORDS = "the cat dog sat ran on under a mat red big small house".split()


def _write_data(folder: Path) -> None:
    folder.mkdir()
    for split, n in (("train", 64), ("dev", 16), ("test", 16)):
        rows = []
        for i in range(n):
            sentence = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(3 + i % 4)]
            rows.append(" ".join(sentence) + "\t" + " ".join(reversed(sentence)))
        (folder / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def _run(args: list[str], cwd: Path, extra_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(extra_path), str(REPO)]),
    }
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_a_task_defined_in_two_files_trains_evaluates_and_reports(tmp_path):
    plugin = tmp_path / "plugin"
    (plugin / "conf" / "task").mkdir(parents=True)
    (plugin / "toy_task.py").write_text(textwrap.dedent(TASK_MODULE))
    (plugin / "conf" / "task" / "toy_reverse.yaml").write_text(TASK_CONFIG)
    _write_data(tmp_path / "data")
    before = subprocess.run(["git", "status", "--porcelain", "bertgen", "conf"], cwd=REPO, capture_output=True)

    run = tmp_path / "run"
    r = _run(
        [
            str(REPO / "train.py"),
            "task=toy_reverse",
            "model=quickstart",
            f"model.tokenizer={MINILM}",
            f"hydra.searchpath=[file://{plugin / 'conf'}]",
            f"data_dir={tmp_path / 'data'}",
            f"cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={run}",
            "trainer.num_sanity_val_steps=0",
        ],
        tmp_path,
        plugin,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((run / "metrics.json").read_text())
    assert record["task"] == "toy_reverse" and record["task_module"] == "toy_task" and record["headline"] == "exact"
    assert record["global_step"] == 2 and set(record["metrics"]) >= {"exact", "sacrebleu"}

    out = tmp_path / "eval"
    r = _run([str(REPO / "evaluate.py"), f"ckpt={run}", "split=test", f"hydra.run.dir={out}"], tmp_path, plugin)
    assert r.returncode == 0, r.stderr[-3000:]
    evaluated = json.loads((out / "metrics.json").read_text())
    assert evaluated["task"] == "toy_reverse" and evaluated["examples"] == 16

    r = _run(["-m", "bertgen.report", str(run), str(out), "--no-png"], tmp_path, plugin)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "## Table 90 – Toy reversal (test)" in r.stdout
    assert "| model | size | split | Exact | paper | BLEU | paper |" in r.stdout
    assert "| 50 | " in r.stdout  # the declared value beside the run
    after = subprocess.run(["git", "status", "--porcelain", "bertgen", "conf"], cwd=REPO, capture_output=True)
    assert after.stdout == before.stdout  # nothing in the package or its configs was touched

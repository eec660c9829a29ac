"""The paper's central finding in miniature (``experiment=mini_wikisplit``): warm-starting both sides from a real
checkpoint (bert2bert, all-MiniLM-L6-v2) beats random initialisation (rnd2rnd) on real WikiSplit rows.

A shortened run of the experiment: both models see the same STEPS updates of batch 16 (the experiment's lr, a
proportionally shorter warm-up) and are validated once, on VAL_ROWS validation rows (loss) and greedy generation on
the shortest 50 of them. The two runs train side by side, one thread each. See
docs/experiments/mini_wikisplit.md for the full runs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bertgen.run_record import RunRecord

from conftest import run_cli, start_cli

STEPS = 240
VAL_ROWS = 200
LOSS_MARGIN = 2.0  # nats
SARI_MARGIN = 5.0  # the "clearly above"


def _start(model: str, tmp_path: Path, shared: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    run_dir = tmp_path / model
    args = [
        "experiment=mini_wikisplit",
        f"model={model}",
        f"hydra.run.dir={run_dir}",
        f"task.max_steps={STEPS}",
        f"task.val_check_interval={STEPS}",
        f"optim.warmup_steps={STEPS // 10}",
        f'task.compose_splits.splits.validation=["validation.tsv[4000:{4000 + VAL_ROWS}]"]',
        'task.compose_splits.splits.test=["test.tsv[:16]"]',
        "task.val_max_examples=50",
        "num_threads=1",  # two runs side by side on 2 cores
        "export_model=false",
        "trainer.enable_progress_bar=false",
        *extra,
    ]
    with open(tmp_path / f"{model}.log", "w") as log:  # the child keeps its own descriptor
        proc = start_cli(
            "train.py",
            args,
            tmp_path,  # not the repository: the shared folder must come from BERTGEN_SHARED
            env={"BERTGEN_SHARED": str(shared)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, run_dir


def _finish(proc: subprocess.Popen, run_dir: Path, tmp_path: Path) -> RunRecord:
    try:
        proc.wait(timeout=1500)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (tmp_path / f"{run_dir.name}.log").read_text()[-3000:]
    return RunRecord.load(run_dir)


def _pair(tmp_path: Path, shared: Path, *extra: str) -> tuple[RunRecord, RunRecord]:
    runs = {m: _start(m, tmp_path, shared, *extra) for m in ("bert2bert", "rnd2rnd")}
    try:
        return tuple(_finish(*runs[m], tmp_path) for m in ("bert2bert", "rnd2rnd"))
    finally:  # a failed first run must not leave the second one training
        for proc, _ in runs.values():
            if proc.poll() is None:
                proc.kill()


@pytest.mark.slow
def test_bert2bert_beats_rnd2rnd(tmp_path, shared_dir):
    """Measured at this length (2026-12-01, 2 cores shared with two evaluations): validation loss 2.48 vs 6.93, SARI
    42.0 vs 13.6. At 160 steps bert2bert had not yet learnt to copy (5.22, SARI 15.1): the warm start shows between
    steps 100 and 200, hence 240. A warm start that stops working (a checkpoint loaded wrongly, a collapsed encoder,
    the cross-attention rule lost) fails the margins."""
    b2b, r2r = _pair(tmp_path, shared_dir)
    assert b2b.global_step == r2r.global_step == STEPS
    assert b2b.metrics["loss"] < r2r.metrics["loss"] - LOSS_MARGIN, (b2b.metrics, r2r.metrics)
    assert b2b.metrics["sari"] > r2r.metrics["sari"] + SARI_MARGIN, (b2b.metrics, r2r.metrics)


def test_missing_shared_folder_names_bertgen_shared(tmp_path):
    r = run_cli(
        "train.py",
        ["experiment=mini_wikisplit", "model=bert2bert"],
        tmp_path,  # ../shared beside it does not exist
        timeout=300,
        env={"BERTGEN_SHARED": None},
    )
    assert r.returncode != 0
    assert "BERTGEN_SHARED" in r.stderr and "is not a folder" in r.stderr, r.stderr[-2000:]


@pytest.mark.slow
def test_smallest_data_scarcity_cell(tmp_path, shared_dir):
    """The data-scarcity miniature's smallest cell (docs/experiments/data_scarcity.md): 1% of the training pairs (90)
    for the same steps. Measured at 640 steps (2026-12-06): both models memorise the 90 targets and ignore their sources
    (val SARI 14.4 vs 14.2), and the warm start shows only in the validation loss (7.96 vs 9.55). The test holds the
    cell's setup (90 rows used, the fraction recorded) and that gap, which a checkpoint loaded wrongly would lose."""
    b2b, r2r = _pair(tmp_path, shared_dir, "task.train_fraction=0.01")
    for rec in (b2b, r2r):
        assert rec.global_step == STEPS and rec.train_fraction == pytest.approx(0.01)
        assert rec.data_stats["data/train/examples_used"] == 90
    assert b2b.metrics["loss"] < r2r.metrics["loss"] - 0.5, (b2b.metrics, r2r.metrics)

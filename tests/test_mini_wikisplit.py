"""The paper's central finding in miniature (``experiment=mini_wikisplit``): warm-starting both sides from a real
checkpoint (bert2bert, all-MiniLM-L6-v2) beats random initialisation (rnd2rnd) on real WikiSplit rows.

A shortened run of the experiment: both models see the same STEPS updates of batch 16 and are validated once, on
VAL_ROWS validation rows (loss) and greedy generation on the shortest 50 of them. See the README section
"Warm-starting in miniature" for the full runs and why SARI does not separate the two at this budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertgen.run_record import RunRecord

REPO = Path(__file__).resolve().parents[1]
STEPS = 120
VAL_ROWS = 200


def _train(model: str, tmp_path: Path, shared: Path) -> RunRecord:
    run_dir = tmp_path / model
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "BERTGEN_SHARED": str(shared),
        "BERTGEN_DATA_CACHE": str(tmp_path / "cache"),
    }
    args = [
        "experiment=mini_wikisplit",
        f"model={model}",
        f"hydra.run.dir={run_dir}",
        f"task.max_steps={STEPS}",
        f"task.val_check_interval={STEPS}",
        f'task.compose_splits.splits.validation=["validation.tsv[4000:{4000 + VAL_ROWS}]"]',
        'task.compose_splits.splits.test=["test.tsv[:16]"]',
        "task.val_max_examples=50",
        "num_threads=1",  # 2 threads on shared, busy cores ran 5x slower than 1
        "export_model=false",
        "trainer.enable_progress_bar=false",
    ]
    r = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=tmp_path,  # not the repository: the shared folder must come from BERTGEN_SHARED
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return RunRecord.load(run_dir)


@pytest.mark.slow
def test_bert2bert_beats_rnd2rnd(tmp_path, shared_dir):
    """Validation loss: measured 5.7 (bert2bert) vs 7.3 (rnd2rnd) at step 165 of the full runs, both seeds; the
    margin asserted here is 1 nat. SARI: at this budget both models ignore their source (their encoders collapse to
    a constant output, README), both score 12-15 and the order flips between seeds and steps, so a SARI loss is
    reported as an expected failure instead of a pass: the test then still guards the loss gap."""
    b2b = _train("bert2bert", tmp_path, shared_dir)
    r2r = _train("rnd2rnd", tmp_path, shared_dir)
    assert b2b.global_step == r2r.global_step == STEPS
    assert b2b.metrics["loss"] < r2r.metrics["loss"] - 1.0, (b2b.metrics, r2r.metrics)
    if not b2b.metrics["sari"] > r2r.metrics["sari"]:
        pytest.xfail(f"SARI: bert2bert {b2b.metrics['sari']:.2f} <= rnd2rnd {r2r.metrics['sari']:.2f} (see README)")


def test_missing_shared_folder_names_bertgen_shared(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "BERTGEN_SHARED"}
    r = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "experiment=mini_wikisplit", "model=bert2bert"],
        cwd=tmp_path,  # ../shared beside it does not exist
        capture_output=True,
        text=True,
        timeout=300,
        env={**env, "HF_HUB_OFFLINE": "1", "BERTGEN_DATA_CACHE": str(tmp_path / "cache")},
    )
    assert r.returncode != 0
    assert "BERTGEN_SHARED" in r.stderr and "is not a folder" in r.stderr, r.stderr[-2000:]

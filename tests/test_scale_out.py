"""Scale-out through existing engines, on CPU: Hydra's submitit launcher (local executor), the Optuna sweeper, and
FSDP over two CPU processes. Slow: each runs real (tiny) trainings."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from bertgen.run_record import RunRecord

from conftest import TINY_QUICKSTART, run_cli

pytestmark = pytest.mark.slow
TINY = [*TINY_QUICKSTART, "task.val_max_examples=8", "batch_size=16", "global_batch_size=16", "export_model=false"]


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="needs the sweep extra (hydra-submitit-launcher)",
)
def test_submitit_local_launcher_runs_a_two_job_sweep(tmp_path):
    r = run_cli(
        "train.py",
        [
            "-m",
            "hydra/launcher=submitit_local",
            *TINY,
            "debug=fdr",
            "optim.lr=1e-3,3e-3",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
            "hydra.launcher.timeout_min=10",
        ],
        tmp_path,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    records = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert len(records) == 2, list((tmp_path / "sweep").rglob("*"))[:20]
    overrides = sorted((p.parent / ".hydra" / "overrides.yaml").read_text() for p in records)
    assert "optim.lr=0.001" in overrides[0] and "optim.lr=0.003" in overrides[1]
    assert list((tmp_path / "sweep").rglob("*_submitted.pkl")) or list((tmp_path / "sweep").rglob(".submitit"))


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
    reason="needs the sweep extra (hydra-optuna-sweeper)",
)
def test_optuna_study_of_three_trials_selects_by_the_configured_metric(tmp_path):
    r = run_cli(
        "train.py",
        [
            "-m",
            "hparams_search=optuna",
            *TINY,
            "trainer.max_steps=4",
            "task.val_check_interval=2",
            "hydra.sweeper.n_trials=3",
            "optimized_metric=val/sari",
            f"hydra.sweep.dir={tmp_path / 'study'}",
        ],
        tmp_path,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    records = {p.parent.name: RunRecord.load(p) for p in (tmp_path / "study").glob("*/metrics.json")}
    assert len(records) == 3
    result = yaml.safe_load((tmp_path / "study" / "optimization_results.yaml").read_text())
    values = [rec.value("val/sari") for rec in records.values()]
    assert result["best_value"] == pytest.approx(max(values))  # the study maximised what optimized_metric names


def test_fsdp_needs_gpus_and_says_so_before_any_work(tmp_path):
    """Lightning 2.6's FSDPStrategy requires a CUDA accelerator; on CPU the run stops at once with what to use."""
    run = tmp_path / "run"
    r = run_cli(
        "train.py",
        [*TINY, "trainer=ddp_cpu", "trainer.strategy=fsdp", "batch_size=8", f"hydra.run.dir={run}"],
        tmp_path,
        timeout=900,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "trainer.strategy=fsdp needs CUDA GPUs" in r.stderr
    assert not (run / "data").exists()
    gpu = run_cli(
        "train.py",
        [*TINY, "trainer=ddp", "trainer.strategy=fsdp", "trainer.max_steps=0", f"hydra.run.dir={run}"],
        tmp_path,
        timeout=900,
    )
    assert "needs CUDA GPUs" not in gpu.stderr  # the GPU configs pass the check (and need a GPU to run)

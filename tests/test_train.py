"""train.py end to end on CPU: every model option, DDP vs one process, bf16, exact resume, sweeps, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from bertgen.run_record import RunRecord

from conftest import MINILM, REPO, SHARED, TINY_QUICKSTART, compose, run_cli

tf = pytest.importorskip("transformers")

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)
SMALL_DATA = [
    "task.synthetic.train=256",
    "task.synthetic.validation=16",
    "task.synthetic.test=16",
    "task.val_generation.max_new_tokens=8",
    "task.val_max_examples=16",
    "num_workers=0",
]
MODELS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))


def compose_cfg(run_dir: Path, overrides: list[str]) -> DictConfig:
    """conf/train.yaml as train.py's @hydra.main would hand it over for a run in ``run_dir``."""
    cfg = compose("train", [f"hydra.run.dir={run_dir}", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def run(run_dir: Path, overrides: list[str]) -> dict:
    from train import train

    return train(compose_cfg(run_dir, [f"cache_dir={run_dir / 'cache'}", *overrides]))  # no writes to ~/.cache


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Tiny random BERT / RoBERTa / GPT-2 checkpoints with real tokenizer files, written by transformers."""
    root = tmp_path_factory.mktemp("ckpt")
    tok = SHARED / "data" / "tokenizers"
    torch.manual_seed(0)
    out = {}
    bert = root / "bert"
    tf.BertForMaskedLM(tf.BertConfig(vocab_size=30522, max_position_embeddings=64, **TINY)).save_pretrained(bert)
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(MINILM / f, bert / f)
    out["bert"] = bert
    rob = root / "roberta"
    tf.RobertaForMaskedLM(
        tf.RobertaConfig(vocab_size=50265, max_position_embeddings=66, type_vocab_size=1, **TINY)
    ).save_pretrained(rob)
    shutil.copy(tok / "roberta-base-vocab.json", rob / "vocab.json")
    shutil.copy(tok / "gpt2-merges.txt", rob / "merges.txt")
    out["roberta"] = rob
    gpt = root / "gpt2"
    tf.GPT2LMHeadModel(
        tf.GPT2Config(vocab_size=50257, n_positions=128, n_embd=32, n_layer=1, n_head=4)
    ).save_pretrained(gpt)
    shutil.copy(tok / "gpt2-vocab.json", gpt / "vocab.json")
    shutil.copy(tok / "gpt2-merges.txt", gpt / "merges.txt")
    out["gpt2"] = gpt
    return out


def local_model_overrides(model: str, ckpts: dict[str, Path], tmp: Path) -> list[str]:
    """Point a model config's hub ids at the tiny local checkpoints and shrink its random sides."""
    cfg = compose_cfg(tmp, [f"model={model}"]).model

    def family(hub_id: str) -> str:
        return "roberta" if "roberta" in hub_id else "gpt2" if "gpt2" in hub_id else "bert"

    out = []
    for key in ("encoder", "decoder", "tokenizer", "target_tokenizer", "pretrained"):
        value = cfg.get(key)
        if isinstance(value, str):
            out.append(f"model.{key}={ckpts[family(value)]}")
        elif isinstance(value, DictConfig) and "hidden_size" in value:
            out += [f"model.{key}.{k}={v}" for k, v in TINY.items()]
    return out


@pytest.mark.parametrize("model", MODELS)
def test_every_model_builds_and_runs_fast_dev_run(model, tiny_checkpoints, tmp_path):
    res = run(
        tmp_path,
        [
            "task=quickstart",
            f"model={model}",
            "debug=fdr",
            "trainer.enable_progress_bar=false",
            *SMALL_DATA,
            *local_model_overrides(model, tiny_checkpoints, tmp_path),
        ],
    )
    assert res["record"].global_step == 1
    assert torch.isfinite(torch.tensor(res["metrics"]["train/loss"]))
    assert "val/sari" in res["metrics"] and "val/loss" in res["metrics"]
    assert (tmp_path / "metrics.json").is_file()
    preds = list((tmp_path / "predictions").glob("*.jsonl"))
    assert preds and set(json.loads(preds[0].read_text().splitlines()[0])) == {"source", "target", "prediction"}


def test_bf16_mixed_with_gradient_checkpointing_runs_on_cpu(tmp_path):
    res = run(
        tmp_path,
        [
            "experiment=quickstart",
            "debug=fdr",
            "trainer.precision=bf16-mixed",
            "gradient_checkpointing=true",
            "trainer.enable_progress_bar=false",
            *SMALL_DATA,
        ],
    )
    assert torch.isfinite(torch.tensor(res["metrics"]["train/loss"]))


def test_wandb_logger_works_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run(
        tmp_path,
        [
            "experiment=quickstart",
            "logger=wandb",
            "trainer.max_steps=2",
            "task.val_check_interval=2",
            "trainer.enable_progress_bar=false",
            *SMALL_DATA,
        ],
    )
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and any(runs[0].rglob("*.wandb"))


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


# not conftest's TINY_QUICKSTART: 256 training rows (16 batches of 16 an epoch, what the resume test counts on)
QUICK = [
    "experiment=quickstart",
    "trainer.enable_progress_bar=false",
    "export_model=false",
    "logger=csv",
    "model.overrides.hidden_dropout_prob=0.1",
    *SMALL_DATA,
]


@pytest.mark.parametrize("cut, total", [(6, 9), (16, 19)])
def test_resume_mid_epoch_ends_with_the_same_weights(tmp_path, cut, total):
    common = [
        *QUICK,
        "deterministic=true",
        "task.val_check_interval=3",
        "batch_size=16",
        "global_batch_size=16",
        "callbacks.checkpoint.every_n_train_steps=1",
    ]
    # 256 examples / 16 = 16 batches per epoch: step 6 is mid-epoch, step 16 the epoch's last batch
    full = run(tmp_path / "full", [*common, f"trainer.max_steps={total}"])
    run(tmp_path / "cut", [*common, f"trainer.max_steps={cut}"])  # "killed" after its step-`cut` checkpoint
    resumed = run(tmp_path / "cut", [*common, f"trainer.max_steps={total}", "ckpt_path=last"])
    assert full["record"].global_step == resumed["record"].global_step == total
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process_with_the_same_global_batch(tmp_path):
    # no dropout: the two runs then compute the same function; global batch 16 = 2 ranks x 8 = 1 process x 8 x 2 accum.
    common = [
        *QUICK,
        "model.overrides.hidden_dropout_prob=0.0",
        "model.overrides.attention_probs_dropout_prob=0.0",
        "trainer.max_steps=4",
        "task.val_check_interval=4",
        "batch_size=8",
        "global_batch_size=16",
    ]
    one = run(tmp_path / "one", [*common, "trainer.devices=1"])
    two = run(tmp_path / "two", [*common, "trainer=ddp_cpu", "trainer.devices=2"])
    assert one["record"].global_step == two["record"].global_step == 4
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=k)
    assert abs(one["metrics"]["val/loss"] - two["metrics"]["val/loss"]) < 1e-4


def test_offline_hub_checkpoint_fails_with_one_clear_message(tmp_path):
    r = run_cli("train.py", ["task=discofuse", "model=bert2bert", f"hydra.run.dir={tmp_path}"], tmp_path, timeout=120)
    assert r.returncode != 0
    assert "google-bert/bert-base-uncased" in r.stderr and "hint:" in r.stderr
    assert "Traceback" not in r.stderr


def test_offline_missing_dataset_fails_with_one_clear_message(tmp_path):
    r = run_cli(
        "train.py",
        ["task=wikisplit", "model=quickstart", "model.tokenizer=" + str(MINILM), f"hydra.run.dir={tmp_path}"],
        tmp_path,
        timeout=120,
    )
    assert r.returncode != 0
    assert "wikisplit" in r.stderr.lower() and "data_dir" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_override_lists_the_valid_choices(tmp_path):
    r = run_cli("train.py", ["model=bert3bert", f"hydra.run.dir={tmp_path}"], tmp_path, timeout=60)
    assert r.returncode != 0
    assert "bert2bert" in r.stderr and "bertshare" in r.stderr  # the available options are listed


@pytest.mark.slow
def test_multirun_sweep_runs_two_jobs(tmp_path):
    r = run_cli(
        "train.py",
        ["-m", *TINY_QUICKSTART, "optim.lr=1e-3,3e-3", "debug=fdr", f"hydra.sweep.dir={tmp_path}"],
        tmp_path,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted(p.parent for p in tmp_path.glob("*/metrics.json"))
    assert len(runs) == 2
    overrides = sorted((p / ".hydra" / "overrides.yaml").read_text() for p in runs)
    assert "optim.lr=0.001" in overrides[0] and "optim.lr=0.003" in overrides[1]


@pytest.mark.slow
def test_quickstart_learns_sentence_fusion(tmp_path):
    """The README's main job. Measured (2 CPU cores, seed 0): SARI 27.3 at step 150 -> 91.6 at step 900, Exact 73,
    about 90 s; the thresholds leave room for other CPUs and BLAS builds."""
    r = run_cli(
        "train.py",
        ["experiment=quickstart", f"hydra.run.dir={tmp_path}", "trainer.enable_progress_bar=false"],
        tmp_path,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    record = RunRecord.load(tmp_path)
    assert record.best_score >= 80.0 and record.metrics["exact"] >= 50.0, record
    import csv

    sari = [
        float(row["val/sari"]) for row in csv.DictReader(open(tmp_path / "logs" / "metrics.csv")) if row.get("val/sari")
    ]
    assert sari[0] < 50.0 and max(sari) - sari[0] > 30.0, sari  # it visibly rises
    for line in ("metrics:", "predictions:", "model:"):
        assert line in r.stdout
    assert (tmp_path / "model" / "config.json").is_file() and list((tmp_path / "predictions").glob("*.jsonl"))

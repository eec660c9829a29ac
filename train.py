"""Train a warm-started sequence-to-sequence model: ``python train.py task=discofuse model=bert2bert``.

The offline demo: ``python train.py experiment=quickstart``. Configuration lives in ``conf/`` (Hydra); this file is
the only place besides evaluate.py that reads it, and hands plain arguments to the library.
Outputs (all in the run dir): ``checkpoints/`` (last.ckpt and the best), ``metrics.json``, ``predictions/*.jsonl``,
``model/`` (the exported best model), ``.hydra/`` (the composed config), ``logs/`` (CSV metrics).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("bertgen.train")

def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "something the run needs is not here" rather than a bug: one clear line, no traceback."""
    from bertgen.data import DataFormatError, DatasetUnavailableError
    from bertgen.hub import CheckpointNotFoundError
    from bertgen.tokenization import TokenizerNotFoundError

    return (CheckpointNotFoundError, DatasetUnavailableError, TokenizerNotFoundError, DataFormatError)


def special_tokens(tok) -> dict[str, int | None]:
    """Start/eos/pad of the decoder side: <s>/</s>/<pad> when the vocabulary has them, BERT's [CLS]/[SEP]/[PAD]
    otherwise; GPT-2 (no pad) pads with its end-of-text token (padding is masked and never scored)."""
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
    eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    if start is None or eos is None:
        raise ValueError(f"the target tokenizer has no start/end tokens (bos/cls, eos/sep): {tok!r}")
    return {"decoder_start_token_id": start, "eos_token_id": eos, "pad_token_id": pad}


def load_tokenizers(cfg: DictConfig, run_dir: Path, data_dir: Path | None):
    from bertgen.tokenization import load_tokenizer, train_sentencepiece

    def one(spec, name):
        if spec is None:
            return None
        if isinstance(spec, (dict, DictConfig)) and "train_sentencepiece" in spec:
            opts = dict(spec["train_sentencepiece"])
            if not cfg.task.get("synthetic"):
                raise ValueError("tokenizer.train_sentencepiece is supported for the synthetic quickstart corpus only")
            from bertgen.data.synthetic import synthetic_texts

            return train_sentencepiece(synthetic_texts(data_dir), output_dir=run_dir / name, **opts)
        return load_tokenizer(str(spec))

    src = one(cfg.model.tokenizer, "tokenizer")
    tgt = one(cfg.model.get("target_tokenizer"), "target_tokenizer") or src
    return src, tgt


def model_spec(cfg: DictConfig, src_tok, tgt_tok, special: dict[str, int | None]) -> dict[str, Any]:
    """The model config with random sides completed from the tokenizers (vocabulary size, special tokens)."""
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    for side, tok in (("encoder", src_tok), ("decoder", tgt_tok)):
        value = spec.get(side)
        if isinstance(value, dict):
            if value.get("vocab_size") is None:
                value["vocab_size"] = tok.vocab_size
            value.setdefault("pad_token_id", special["pad_token_id"] if side == "decoder" else (tok.pad_token_id or 0))
            value.setdefault("bos_token_id", tok.bos_token_id)
            value.setdefault("eos_token_id", tok.eos_token_id)
    return {k: spec.get(k) for k in ("kind", "encoder", "decoder", "pretrained", "tie_encoder_decoder", "share_embeddings", "overrides")}


def world_size(trainer_cfg: dict[str, Any]) -> int:
    devices = trainer_cfg.get("devices", 1)
    if devices in ("auto", -1, "-1"):
        import torch

        devices = torch.cuda.device_count() if trainer_cfg.get("accelerator") in ("gpu", "cuda") else 1
    n = len(devices) if isinstance(devices, (list, tuple)) else int(devices)
    return max(1, n) * int(trainer_cfg.get("num_nodes", 1))


def accumulation(global_batch: int | None, batch_size: int | None, world: int, max_tokens: int | None) -> int:
    """Gradient accumulation that keeps the paper's global batch when devices change."""
    if max_tokens or not global_batch or not batch_size:
        return 1
    per_step = batch_size * world
    if global_batch % per_step:
        raise ValueError(
            f"global_batch_size {global_batch} is not a multiple of batch_size {batch_size} x {world} devices; "
            "change batch_size or global_batch_size"
        )
    return global_batch // per_step


def resolve_ckpt(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``last``: this run dir's last.ckpt, else the newest last.ckpt of earlier runs of the same task and model."""
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path != "last":
        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(f"ckpt_path {ckpt_path} does not exist")
        return ckpt_path
    own = run_dir / "checkpoints" / "last.ckpt"
    if own.is_file():
        return str(own)
    candidates = sorted(run_dir.parent.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"ckpt_path=last: no checkpoints/last.ckpt in {run_dir} or its sibling run dirs")
    log.info("resuming from the newest earlier run: %s", candidates[-1])
    return str(candidates[-1])


def train(cfg: DictConfig) -> dict[str, Any]:
    import lightning as L
    import torch
    from hydra.core.hydra_config import HydraConfig
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    from bertgen.callbacks import ExportBestModel, GenerationEvaluator, write_json_atomic
    from bertgen.data import DATAMODULES
    from bertgen.lit_module import Seq2SeqModule
    from bertgen.metrics import task_metrics

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    L.seed_everything(cfg.seed, workers=True)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)

    data_dir = Path(cfg.data_dir) if cfg.data_dir else None
    if cfg.task.get("synthetic") and data_dir is None:
        from bertgen.data.synthetic import write_synthetic_fusion

        data_dir = run_dir / "data"
        write_synthetic_fusion(data_dir, dict(cfg.task.synthetic), seed=cfg.seed)
        log.info("wrote the SYNTHETIC quickstart corpus to %s", data_dir)

    src_tok, tgt_tok = load_tokenizers(cfg, run_dir, data_dir)
    special = special_tokens(tgt_tok)
    if cfg.model.kind == "decoder_only":
        special["sep_token_id"] = special["eos_token_id"]  # source <eos> target: GPT-2 has no separator token

    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    world = world_size(trainer_cfg)
    dm_cls = DATAMODULES.get(cfg.task.datamodule)
    if dm_cls is None:
        raise ValueError(f"unknown datamodule {cfg.task.datamodule!r}; known: {sorted(DATAMODULES)}")
    dm = dm_cls(
        src_tok,
        target_tokenizer=tgt_tok if tgt_tok is not src_tok else None,
        data_dir=data_dir,
        task_options=OmegaConf.to_container(cfg.task.task_options, resolve=True),
        cache_dir=cfg.cache_dir,
        batch_size=cfg.batch_size if not cfg.max_tokens else None,
        max_tokens=cfg.max_tokens,
        pad_to_multiple_of=8 if trainer_cfg.get("accelerator") in ("gpu", "cuda") else None,
        train_fraction=cfg.task.train_fraction,
        fraction_seed=cfg.task.fraction_seed,
        seed=cfg.seed,
        num_workers=cfg.num_workers,
    )
    dm.prepare_data()  # fails here, at once, when the data is neither local nor downloadable

    lit = Seq2SeqModule(
        model=model_spec(cfg, src_tok, tgt_tok, special),
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        special_tokens=special,
        generation=OmegaConf.to_container(cfg.task.generation, resolve=True),
        label_smoothing=cfg.label_smoothing,
        gradient_checkpointing=cfg.gradient_checkpointing,
        compile=cfg.compile,
    )
    n_params = sum(p.numel() for p in lit.model.parameters())
    log.info("model %s: %.1fM parameters", cfg.model.name, n_params / 1e6)

    _, headline = task_metrics(cfg.task.metrics)
    cb_cfg = cfg.callbacks
    ckpt_cb = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="best-step{step}-{val/" + headline + ":.2f}",
        monitor=f"val/{headline}", mode="max", save_top_k=cb_cfg.checkpoint.save_top_k, auto_insert_metric_name=False,
    )
    # last.ckpt is always the newest state (Lightning's save_last only refreshes it when a best checkpoint is saved)
    last_cb = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1, enable_version_counter=False,
        every_n_train_steps=cb_cfg.checkpoint.every_n_train_steps,
    )
    callbacks: list[Any] = [
        ckpt_cb,
        last_cb,
        GenerationEvaluator(
            cfg.task.metrics, run_dir, tgt_tok, generation=OmegaConf.to_container(cfg.task.val_generation, resolve=True),
            every_n_validations=cb_cfg.generation_eval.every_n_validations,
            max_examples=cb_cfg.generation_eval.max_examples,
        ),
    ]
    if cfg.export_model:
        callbacks.append(ExportBestModel(run_dir / "model", src_tok, tgt_tok))
    if cb_cfg.lr_monitor and cfg.logger:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if cb_cfg.get("early_stopping"):
        callbacks.append(EarlyStopping(monitor=f"val/{headline}", mode="max", **cb_cfg.early_stopping))
    loggers = [hydra.utils.instantiate(v) for v in (cfg.logger or {}).values()]

    accumulate = trainer_cfg.pop("accumulate_grad_batches", None) or accumulation(
        cfg.global_batch_size, cfg.batch_size, world, cfg.max_tokens)
    trainer = L.Trainer(
        **trainer_cfg, callbacks=callbacks, logger=loggers or False, accumulate_grad_batches=accumulate,
        deterministic=bool(cfg.deterministic), default_root_dir=str(run_dir),
    )
    log.info("global batch: %s x %d devices x %d accumulation", cfg.batch_size if not cfg.max_tokens else f"{cfg.max_tokens} tokens", world, accumulate)
    # The DataModule's batch sampler resumes mid-epoch itself (its state is in the checkpoint); Lightning cannot see
    # that and warns that the dataloader is not resumable.
    warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
    trainer.fit(lit, datamodule=dm, ckpt_path=resolve_ckpt(cfg.ckpt_path, run_dir))

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    global_step = trainer.global_step
    last = run_dir / "checkpoints" / "last.ckpt"
    if global_step == 0 and last.is_file():  # spawn strategies train in child processes; the checkpoint knows
        global_step = torch.load(last, map_location="cpu", mmap=True, weights_only=False)["global_step"]
    best = ckpt_cb.best_model_score
    result = {
        "metrics": metrics,
        "headline": f"val/{headline}",
        "best_score": float(best) if best is not None else None,
        "best_checkpoint": ckpt_cb.best_model_path or None,
        "global_step": global_step,
        "task": cfg.task.name,
        "model": cfg.model.name,
        "parameters": n_params,
        "train_fraction": cfg.task.train_fraction,
        "data_stats": getattr(dm, "data_stats", {}),
    }
    if cfg.test_after_training:
        trainer.test(lit, datamodule=dm, ckpt_path="best" if ckpt_cb.best_model_path else None)
        result["test_metrics"] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    if trainer.is_global_zero:
        flat = {**metrics, "best_score": result["best_score"]}
        write_json_atomic(run_dir / "metrics.json", {**flat, "_run": {k: v for k, v in result.items() if k != "metrics"}})
        print(f"\nrun dir:      {run_dir}")
        print(f"metrics:      {run_dir / 'metrics.json'}  ({result['headline']} best = {result['best_score']})")
        print(f"predictions:  {run_dir / 'predictions'}")
        if cfg.export_model:
            print(f"model:        {run_dir / 'model'}")
        print(f"checkpoints:  {run_dir / 'checkpoints'}")
    return result


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        result = train(cfg)
    except _user_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        print(
            "hint: without network, point the run at local copies: model.encoder=<folder> model.decoder=<folder> "
            "model.tokenizer=<folder> (checkpoints, e.g. from `huggingface-cli download`) and data_dir=<folder> "
            "(the task's files in their release format; see the task's accepted layouts in bertgen/data/tasks.py).",
            file=sys.stderr,
        )
        sys.exit(1)
    return result.get("best_score")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

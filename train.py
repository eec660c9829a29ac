"""Train a warm-started sequence-to-sequence model: ``python train.py task=discofuse model=bert2bert``.

The offline demo: ``python train.py experiment=quickstart``. Configuration lives in ``conf/`` (Hydra); the logic in
the ``bertgen`` package. Outputs (all in the run dir): ``checkpoints/`` (last.ckpt and the best), ``metrics.json``
(the run record, `bertgen.run_record.RunRecord`), ``predictions/*.jsonl``, ``model/`` (the exported best model),
``.hydra/`` (the composed config), ``logs/`` (CSV metrics).
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
OFFLINE_HINT = (
    "without network, point the run at local copies: model.encoder=<folder> model.decoder=<folder> "
    "model.tokenizer=<folder> (e.g. from `huggingface-cli download <id> --local-dir <folder>`)"
)


def train(cfg: DictConfig) -> dict[str, Any]:
    import lightning as L
    import torch
    from hydra.core.hydra_config import HydraConfig

    from bertgen import training
    from bertgen.callbacks import build_callbacks
    from bertgen.checkpoint_io import SafeCheckpointIO
    from bertgen.checks import check_model_and_data
    from bertgen.data import make_datamodule, task_data_dir
    from bertgen.lit_module import Seq2SeqModule
    from bertgen.metrics import task_metrics
    from bertgen.run_record import RunRecord, metrics_by_split

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # Hydra's handlers print them: not twice
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    c = {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for k, v in cfg.items()
        if k != "hydra"
    }
    task, model_cfg = c["task"], c["model"]
    training.validate_config(c)  # a bad value fails here, naming its key, before any data or model work
    trainer_args = training.trainer_arguments(c["trainer"])
    _, headline = task_metrics(task["metrics"])
    if c.get("num_threads"):
        torch.set_num_threads(int(c["num_threads"]))
    L.seed_everything(c["seed"], workers=True)
    if c["deterministic"]:
        torch.use_deterministic_algorithms(True)

    data_dir = task_data_dir(task, c["data_dir"], run_dir, c["seed"])
    src_tok, tgt_tok = training.load_tokenizers(model_cfg, task, run_dir, data_dir)
    special = training.special_tokens(tgt_tok, decoder_only=model_cfg["kind"] == "decoder_only")
    world = training.world_size(trainer_args)
    dm = make_datamodule(
        task,
        src_tok,
        tgt_tok,
        data_dir=data_dir,
        cache_dir=c["cache_dir"],
        batch_size=c["batch_size"],
        max_tokens=c["max_tokens"],
        seed=c["seed"],
        num_workers=c["num_workers"],
        skip_invalid=c["skip_invalid"],
        pad_to_multiple_of=8 if trainer_args.get("accelerator") in ("gpu", "cuda") else None,
    )
    src_tok, tgt_tok = dm.tokenizers  # prepared for the task's text (e.g. WikiSplit's <::::> as one token)
    lit = Seq2SeqModule(
        model=training.model_spec(model_cfg, src_tok, tgt_tok, special),
        optim=c["optim"],
        special_tokens=special,
        generation=task["generation"],
        label_smoothing=c["label_smoothing"],
        gradient_checkpointing=c["gradient_checkpointing"],
        compile=c["compile"],
    )
    check_model_and_data(
        lit.model,
        src_tok,
        tgt_tok,
        max_source_length=dm.task.max_source_length,
        max_target_length=dm.task.max_target_length,
        where=f"model {model_cfg['name']}",
    )
    dm.prepare_data()  # fails here, at once, when the data is neither local nor downloadable
    n_params = sum(p.numel() for p in lit.model.parameters())
    log.info("model %s: %.1fM parameters", model_cfg["name"], n_params / 1e6)

    cb = c["callbacks"]
    callbacks, best_cb = build_callbacks(
        run_dir,
        metrics_task=task["metrics"],
        tokenizer=src_tok,
        target_tokenizer=tgt_tok,
        val_generation=task["val_generation"],
        checkpoint=cb["checkpoint"],
        generation_eval=cb["generation_eval"],
        export_model=c["export_model"],
        lr_monitor=bool(cb["lr_monitor"] and c["logger"]),
        early_stopping=cb.get("early_stopping"),
        decode_options={"convention": dm.text_convention},
    )
    loggers = [hydra.utils.instantiate(v) for v in (cfg.logger or {}).values()]
    accumulate = trainer_args.pop("accumulate_grad_batches", None) or training.accumulation(
        c["global_batch_size"], c["batch_size"], world, c["max_tokens"]
    )
    trainer_args["plugins"] = [SafeCheckpointIO(), *(trainer_args.get("plugins") or [])]  # loud writes, safe reads
    trainer = L.Trainer(
        **trainer_args,
        callbacks=callbacks,
        logger=loggers or False,
        accumulate_grad_batches=accumulate,
        deterministic=bool(c["deterministic"]),
        default_root_dir=str(run_dir),
    )
    per_step = f"{c['max_tokens']} tokens" if c["max_tokens"] else c["batch_size"]
    log.info("global batch: %s x %d devices x %d accumulation", per_step, world, accumulate)
    # The DataModule's batch sampler resumes mid-epoch itself (its state is in the checkpoint); Lightning cannot see
    # that and warns that the dataloader is not resumable.
    warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")
    trainer.fit(lit, datamodule=dm, ckpt_path=training.resolve_ckpt(c["ckpt_path"], run_dir))

    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    global_step = trainer.global_step
    last = run_dir / "checkpoints" / "last.ckpt"
    if global_step == 0 and last.is_file():  # spawn strategies train in child processes; the checkpoint knows
        global_step = int(torch.load(last, map_location="cpu", mmap=True, weights_only=True)["global_step"])
    test_metrics: dict[str, float] = {}
    if c["test_after_training"]:
        trainer.test(lit, datamodule=dm, ckpt_path="best" if best_cb.best_model_path else None)
        test_metrics = metrics_by_split({k: float(v) for k, v in trainer.callback_metrics.items()}).get("test", {})
    best = best_cb.best_model_score
    record = RunRecord(
        source="train",
        task=task["name"],
        metrics_task=task["metrics"],
        model=model_cfg["name"],
        split="validation",
        metrics=metrics_by_split(logged).get("validation", {}),
        headline=headline,
        test_metrics=test_metrics,
        train_fraction=float(task["train_fraction"]),
        best_score=float(best) if best is not None else None,
        best_checkpoint=best_cb.best_model_path or None,
        global_step=int(global_step),
        parameters=n_params,
        data_stats=dict(getattr(dm, "data_stats", {})),
    )
    if trainer.is_global_zero:
        record.save(run_dir)
        print(f"\nrun dir:      {run_dir}")
        print(f"metrics:      {run_dir / 'metrics.json'}  (val/{headline} best = {record.best_score})")
        if (run_dir / "predictions").is_dir():
            print(f"predictions:  {run_dir / 'predictions'}")
        if c["export_model"] and (run_dir / "model").is_dir():
            print(f"model:        {run_dir / 'model'}")
        print(f"checkpoints:  {run_dir / 'checkpoints'}")
    return {"metrics": logged, "record": record}


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from bertgen.errors import BertgenError, report
    from bertgen.hub import CheckpointNotFoundError

    try:
        result = train(cfg)
    except BertgenError as e:
        print(report(e), file=sys.stderr)
        if isinstance(e, CheckpointNotFoundError):
            print(f"hint: {OFFLINE_HINT}", file=sys.stderr)
        sys.exit(1)
    return result["record"].value(cfg.get("optimized_metric"))  # what a sweeper (Optuna) maximises


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

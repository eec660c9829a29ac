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
    from hydra.core.hydra_config import HydraConfig
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from bertgen import training
    from bertgen.callbacks import PREEMPTED_EXIT, build_callbacks
    from bertgen.checkpoints import RunDirLock, check_resume, is_global_zero_process, resolve_resume
    from bertgen.data import make_datamodule, task_data_dir

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    keys = [k for k in cfg if k != "hydra"]  # tests compose with the hydra node, which resolves only in an app
    c = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in keys}
    task, model_cfg = c["task"], c["model"]
    training.validate_config(c)  # a bad value fails here, naming its key, before any data or model work
    trainer_args = training.trainer_arguments(c["trainer"])
    resume = resolve_resume(c["ckpt_path"], run_dir)  # read-only
    lock = RunDirLock(run_dir).acquire() if is_global_zero_process() else None  # one run per run dir
    try:
        training.setup_process(c)
        data_dir = task_data_dir(task, c["data_dir"], run_dir, c["seed"], existing=run_dir if resume else None)
        src_tok, tgt_tok = training.load_tokenizers(model_cfg, task, run_dir, data_dir, resuming=resume is not None)
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
        lit = training.build_module(c, dm)  # checked against the tokenizers, lengths and decoding settings
        lit.fingerprints = training.run_fingerprints(dm, lit)
        if resume:  # the same tokenizers, architecture and encoding, or nothing is written
            check_resume(resume, lit.fingerprints, list(hc.overrides.task), run_dir)
        if is_global_zero_process():
            training.write_run_config(cfg, run_dir)
        dm.prepare_data()  # fails here, at once, when the data is neither local nor downloadable

        cb = c["callbacks"]
        callbacks, best_cb = build_callbacks(
            run_dir,
            task=task,
            tokenizer=dm.tokenizers[0],
            target_tokenizer=dm.tokenizers[1],
            val_generation=task["val_generation"],
            checkpoint=cb["checkpoint"],
            generation_eval=cb["generation_eval"],
            export_model=c["export_model"],
            lr_monitor=bool(cb["lr_monitor"] and c["logger"]),
            early_stopping=cb.get("early_stopping"),
        )
        loggers = [hydra.utils.instantiate(v) for v in (cfg.logger or {}).values()]
        trainer = training.make_trainer(c, trainer_args, callbacks, loggers, run_dir)
        try:
            trainer.fit(lit, datamodule=dm, ckpt_path=resume)
        except SIGTERMException:  # pre-empted: the state at this step is saved; say so and fail
            _, record = training.training_record(c, trainer, lit, dm, best_cb, run_dir, status="preempted")
            if trainer.is_global_zero:
                record.save(run_dir)
                last = run_dir / "checkpoints" / "last.ckpt"
                print(
                    f"\npre-empted (SIGTERM) at step {record.global_step}: saved {last}; continue with the same "
                    f"overrides plus hydra.run.dir={run_dir} ckpt_path=last",
                    file=sys.stderr,
                )
            sys.exit(PREEMPTED_EXIT)

        logged, record = training.training_record(c, trainer, lit, dm, best_cb, run_dir, test=c["test_after_training"])
        if trainer.is_global_zero:
            record.save(run_dir)
            training.print_summary(run_dir, record)
        return {"metrics": logged, "record": record}
    finally:
        if lock is not None:
            lock.release()


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

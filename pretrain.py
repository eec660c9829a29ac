"""MLM pre-training of a BERT: ``python pretrain.py tokenizer=<folder> data.task=wmt14_en_de data.data_dir=...``.

BERT's recipe (15% of the pieces; 80% [MASK], 10% random, 10% kept; sequences packed within documents), from plain
text files or a task's rows, from random weights or a checkpoint (``checkpoint=<folder>``). Configuration lives in
``conf/pretrain.yaml``; the logic in ``bertgen.pretraining``. Outputs (in the run dir): ``checkpoints/`` (last.ckpt
and the best by held-out loss), ``pretrain_metrics.json`` (the run record), ``model/`` (a ``BertForMaskedLM`` folder
with the tokenizer: ``python train.py model=bert2rnd model.checkpoint=<run dir>/model``), ``.hydra/``, ``logs/``.
Resume with the same overrides plus ``hydra.run.dir=<run dir> ckpt_path=last``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("bertgen.pretrain")


def pretrain(cfg: DictConfig) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from bertgen import pretraining, training
    from bertgen.callbacks import PREEMPTED_EXIT
    from bertgen.checkpoints import RunDirLock, check_resume, is_global_zero_process, resolve_resume
    from bertgen.io import write_json_atomic

    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    c = {k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k] for k in cfg}
    c.pop("hydra", None)
    c["max_tokens"] = None  # what bertgen.training.make_trainer reads: batches are counted in sequences
    masking = pretraining.validate_config(c)  # a bad value fails here, naming its key, before any work
    trainer_args = training.trainer_arguments(c["trainer"])
    tok = pretraining.load_tokenizer_for(c)
    model_config = pretraining.model_config(c, tok)  # vocabulary and max_length checked before any data is read
    resume = resolve_resume(c["ckpt_path"], run_dir)
    lock = RunDirLock(run_dir).acquire() if is_global_zero_process() else None
    try:
        training.setup_process(c)
        gpu = trainer_args.get("accelerator") in ("gpu", "cuda")
        dm = pretraining.build_data(c, tok, masking, pad_to_multiple_of=8 if gpu else None)
        lit = pretraining.MLMModule(
            model_config, optim=c["optim"], init_checkpoint=c.get("checkpoint"), compile=c["compile"]
        )
        lit.fingerprints = pretraining.fingerprints(tok, dm, lit, masking, c["max_length"])
        if resume:  # the same tokenizer, architecture, data and masking, or nothing is written
            check_resume(resume, lit.fingerprints, list(hc.overrides.task), run_dir)
        if is_global_zero_process():
            training.write_run_config(cfg, run_dir)
        info = {"tokenizer": str(c.get("tokenizer") or c.get("checkpoint")), "data": c["data"], "mlm": c["mlm"]}
        info["max_length"], info["init_checkpoint"] = c["max_length"], c.get("checkpoint")
        callbacks, best_cb = pretraining.build_callbacks(run_dir, c, tok, info)
        loggers = [hydra.utils.instantiate(v) for v in (cfg.logger or {}).values()]
        trainer = training.make_trainer(c, trainer_args, callbacks, loggers, run_dir)
        log.info("BERT %.1fM parameters", sum(p.numel() for p in lit.model.parameters()) / 1e6)
        try:
            trainer.fit(lit, datamodule=dm, ckpt_path=resume)
        except SIGTERMException:
            rec = pretraining.record(trainer, lit, dm, best_cb, run_dir, status="preempted")
            if trainer.is_global_zero:
                write_json_atomic(run_dir / pretraining.RECORD, rec)
                print(
                    f"\npre-empted (SIGTERM) at step {rec['global_step']}: continue with the same overrides plus "
                    f"hydra.run.dir={run_dir} ckpt_path=last",
                    file=sys.stderr,
                )
            sys.exit(PREEMPTED_EXIT)
        rec = pretraining.record(trainer, lit, dm, best_cb, run_dir)
        if trainer.is_global_zero:
            write_json_atomic(run_dir / pretraining.RECORD, rec)
            print(f"\nrun dir:  {run_dir}")
            print(f"record:   {run_dir / pretraining.RECORD}  {json.dumps(rec['metrics'])}")
            if (run_dir / "model").is_dir():
                print(f"model:    {run_dir / 'model'}  (train.py model=bert2rnd model.checkpoint={run_dir / 'model'})")
        return rec
    finally:
        if lock is not None:
            lock.release()


@hydra.main(config_path="conf", config_name="pretrain", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from bertgen.errors import BertgenError, report

    try:
        pretrain(cfg)
    except BertgenError as e:
        print(report(e), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

"""Lightning callbacks: generation-based evaluation during validation and test, export of the best model, and the
one function that builds a run's callbacks."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from bertgen.data.tasks import task_metrics
from bertgen.decoding import decode_batch
from bertgen.io import write_jsonl_atomic

log = logging.getLogger("bertgen")


class GenerationEvaluator(L.Callback):
    """Generate during validation (and test), score with the task's metrics, log them and write the predictions.

    Args:
      task: the task (name or config) whose metrics score the text (``bertgen.data.tasks.task_metrics``).
      output_dir: predictions go to ``output_dir/predictions/<val|test>_step<N>.jsonl`` (source/target/prediction).
      tokenizer: the target tokenizer as prepared for the task (it carries the task's text convention).
      generation: validation decoding settings over the module's own (``Seq2SeqModule.hparams.generation``, the
        task's full settings, which test uses as they are). Default greedy: ``num_beams=1``.
      every_n_validations: generate on every n-th validation run only (the loss is always computed).
      max_examples: generate for at most this many validation examples per rank (a fixed subset, since the
        validation order is deterministic); None = all. Test always decodes the whole split.
    """

    def __init__(
        self,
        task: str,
        output_dir: str | Path,
        tokenizer,
        generation: Mapping[str, Any] | None = None,
        every_n_validations: int = 1,
        max_examples: int | None = None,
    ):
        self.task = task
        self.output_dir = Path(output_dir)
        self.tokenizer = tokenizer
        self.generation = dict(generation or {"num_beams": 1})
        self.every = max(1, int(every_n_validations))
        self.max_examples = max_examples
        self.metrics, self.headline = task_metrics(task)
        self._runs = 0
        self._active = False
        self._seen = 0
        self._rows: list[dict[str, str]] = []

    # ---- one pass over a split ----------------------------------------------------------------------------------
    def _start(self, pl_module) -> None:
        self.metrics = self.metrics.to(pl_module.device)
        self.metrics.reset()
        self._seen, self._rows = 0, []

    def _batch(self, trainer, pl_module, batch, split: str, settings: Mapping[str, Any], limit: int | None) -> None:
        if limit is not None and self._seen >= limit:
            return
        rows = decode_batch(pl_module.model, self.tokenizer, batch, trainer.datamodule, split, settings, self.metrics)
        self._rows += rows.values()
        self._seen += len(rows)

    def _end(self, trainer, pl_module, prefix: str) -> None:
        scores = {k: float(v) for k, v in self.metrics.compute().items()}  # synced across ranks by torchmetrics
        for k, v in scores.items():
            pl_module.log(f"{prefix}/{k}", v, prog_bar=k == self.headline, sync_dist=False, rank_zero_only=False)
        rows = self._rows
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[list[dict[str, str]]] = [None] * trainer.world_size  # type: ignore[list-item]
            torch.distributed.all_gather_object(gathered, rows)
            rows = [r for part in gathered for r in part]
        if trainer.is_global_zero:
            write_jsonl_atomic(self.output_dir / "predictions" / f"{prefix}_step{trainer.global_step}.jsonl", rows)
            log.info(
                "%s at step %d: %s", prefix, trainer.global_step, ", ".join(f"{k}={v:.2f}" for k, v in scores.items())
            )

    # ---- validation ----------------------------------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._active = not trainer.sanity_checking and self._runs % self.every == 0
        if not trainer.sanity_checking:
            self._runs += 1
        if self._active:
            self._start(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._active:
            settings = {**(pl_module.hparams.generation or {}), **self.generation}
            self._batch(trainer, pl_module, batch, "validation", settings, self.max_examples)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._active:
            self._end(trainer, pl_module, "val")

    # ---- test: the task's full decoding settings, the whole split ----------------------------------------------------
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start(pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch(trainer, pl_module, batch, "test", dict(pl_module.hparams.generation or {}), None)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, pl_module, "test")


class ExportBestModel(L.Callback):
    """At the end of training export the best checkpoint (or the last weights) as a plain model folder."""

    def __init__(self, directory: str | Path, tokenizer=None, target_tokenizer=None):
        self.directory = Path(directory)
        self.tokenizer = tokenizer
        self.target_tokenizer = target_tokenizer
        self.exported_from: str | None = None

    def on_fit_end(self, trainer, pl_module) -> None:
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
        state = None
        if best and Path(best).is_file():  # weights only: a checkpoint file must never be able to run code
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        if trainer.is_global_zero:
            if state is not None:
                current = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
                pl_module.load_state_dict(state)
                pl_module.export(self.directory, self.tokenizer, self.target_tokenizer)
                pl_module.load_state_dict(current)
                self.exported_from = best
            else:
                pl_module.export(self.directory, self.tokenizer, self.target_tokenizer)
                self.exported_from = "last weights"
            log.info("exported model (%s) to %s", self.exported_from, self.directory)
        trainer.strategy.barrier()


def build_callbacks(
    run_dir: str | Path,
    *,
    task,
    tokenizer,
    target_tokenizer,
    val_generation: Mapping[str, Any] | None,
    checkpoint: Mapping[str, Any],
    generation_eval: Mapping[str, Any],
    export_model: bool = True,
    lr_monitor: bool = True,
    early_stopping: Mapping[str, Any] | None = None,
) -> tuple[list[L.Callback], Any]:
    """A run's callbacks (``conf/callbacks``) and its best-checkpoint callback.

    ``checkpoint``: ``save_top_k`` (best by the task's headline metric) and ``every_n_train_steps`` (how often
    ``last.ckpt`` is refreshed; it is always the newest state, where Lightning's ``save_last`` only refreshes it
    when a best checkpoint is saved). ``generation_eval``: ``every_n_validations`` and ``max_examples``.
    """
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint

    _, headline = task_metrics(task)
    folder = Path(run_dir) / "checkpoints"
    best = ModelCheckpoint(
        dirpath=folder,
        filename="best-step{step}-{val/" + headline + ":.2f}",
        monitor=f"val/{headline}",
        mode="max",
        save_top_k=checkpoint.get("save_top_k", 1),
        auto_insert_metric_name=False,
    )
    last = ModelCheckpoint(
        dirpath=folder,
        filename="last",
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
        every_n_train_steps=checkpoint.get("every_n_train_steps"),
    )
    callbacks: list[L.Callback] = [
        best,
        last,
        GenerationEvaluator(
            task,
            run_dir,
            target_tokenizer,
            generation=val_generation,
            every_n_validations=generation_eval.get("every_n_validations", 1),
            max_examples=generation_eval.get("max_examples"),
        ),
    ]
    if export_model:
        callbacks.append(ExportBestModel(Path(run_dir) / "model", tokenizer, target_tokenizer))
    if lr_monitor:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if early_stopping:
        callbacks.append(EarlyStopping(monitor=f"val/{headline}", mode="max", **early_stopping))
    return callbacks, best

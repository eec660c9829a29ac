"""Lightning callbacks: generation-based evaluation during validation and test, export of the best model, and the
one function that builds a run's callbacks."""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

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


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint whose best-k tracking survives a resume from another folder (a copied or moved run
    dir: Lightning then drops the restored best scores) and a checkpoint without that state: the best checkpoints are
    found from the ``best-*-<score>.ckpt`` files on disk."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        moved = state_dict.get("dirpath", self.dirpath) != self.dirpath
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The dirpath has changed")  # handled here
            super().load_state_dict(state_dict)
        if moved or not Path(self.best_model_path or "").is_file():
            # Lightning keeps the old dir's best_model_path: the files on disk here are the truth
            self.best_k_models, self.best_model_path, self.best_model_score = {}, "", None
            self.kth_best_model_path = ""
            self.kth_value = torch.tensor(torch.inf if self.mode == "min" else -torch.inf)
            self._from_disk()

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._from_disk()

    def _from_disk(self) -> None:
        if self.best_k_models or self.dirpath is None:
            return
        scored = {}
        for f in Path(self.dirpath).glob("best-*.ckpt"):
            m = re.search(r"-(-?\d+(?:\.\d+)?)\.ckpt$", f.name)
            if m:
                scored[str(f)] = torch.tensor(float(m.group(1)))
        if not scored:
            return
        self.best_k_models = scored
        pick = max if self.mode == "max" else min
        self.best_model_path = pick(scored, key=lambda k: float(scored[k]))
        self.best_model_score = scored[self.best_model_path]
        self.kth_best_model_path = (min if self.mode == "max" else max)(scored, key=lambda k: float(scored[k]))
        self.kth_value = scored[self.kth_best_model_path]
        log.info("best checkpoints found on disk in %s: best %s", self.dirpath, self.best_model_path)


class Preemption(L.Callback):
    """SIGTERM (what SLURM and Kubernetes send before pre-emption) or an interrupt: save the state at the current step
    as ``checkpoints/last.ckpt`` (atomically, as every checkpoint), so ``ckpt_path=last`` continues from there. The
    entry point then exits non-zero (`PREEMPTED_EXIT`) with a run record marked preempted. A fit that ends normally
    also leaves its final state there (Lightning saves only at validation or epoch ends), so a finished run can be
    continued with more steps."""

    def __init__(self, last_checkpoint: str | Path, last_callback: ModelCheckpoint | None = None):
        self.path = Path(last_checkpoint)
        self.last_callback = last_callback
        self.saved_step: int | None = None

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step == 0 or trainer.sanity_checking:
            return
        if getattr(self.last_callback, "_last_global_step_saved", None) == trainer.global_step:
            return  # already saved at this step
        trainer.save_checkpoint(self.path)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or trainer.state.fn != "fit":
            return
        if trainer.sanity_checking or trainer.global_step == 0:
            return  # nothing trained yet: nothing to keep
        trainer.save_checkpoint(self.path)
        self.saved_step = trainer.global_step
        log.warning("interrupted (%s): saved step %d to %s", type(exception).__name__, trainer.global_step, self.path)


def checkpoint_callbacks(
    folder: Path, monitor: str, mode: str, score_format: str, checkpoint: Mapping[str, Any]
) -> tuple[BestCheckpoint, ModelCheckpoint, Preemption]:
    """A run's checkpointing in ``folder``: the best ``save_top_k`` by ``monitor`` (``best-step<N>-<score>.ckpt``,
    ``score_format`` the filename template of the score), ``last.ckpt`` at every validation and every
    ``every_n_train_steps`` / ``every_n_minutes``, and the state at a SIGTERM or the end of the fit (`Preemption`)."""
    from datetime import timedelta

    best = BestCheckpoint(
        dirpath=folder,
        filename="best-step{step}-" + score_format,
        monitor=monitor,
        mode=mode,
        save_top_k=checkpoint.get("save_top_k", 1),
        auto_insert_metric_name=False,
    )
    minutes = checkpoint.get("every_n_minutes")
    last = ModelCheckpoint(
        dirpath=folder,
        filename="last",
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
        every_n_train_steps=checkpoint.get("every_n_train_steps"),
        train_time_interval=timedelta(minutes=minutes) if minutes else None,
    )
    return best, last, Preemption(folder / "last.ckpt", last)


PREEMPTED_EXIT = 143  # 128 + SIGTERM: what a killed process reports, so a scheduler sees a failure


class ExportBestModel(L.Callback):
    """At the end of training export the best checkpoint (or the last weights) as a plain model folder, with the
    task's conventions (``bertgen.json``: the task of the run's DataModule, else ``task``, a task config)."""

    def __init__(self, directory: str | Path, tokenizer=None, target_tokenizer=None, task=None):
        self.directory = Path(directory)
        self.tokenizer = tokenizer
        self.target_tokenizer = target_tokenizer
        self.task = task
        self.exported_from: str | None = None

    def _task(self, trainer):
        from bertgen.data.tasks import Task, make_task

        task = getattr(getattr(trainer, "datamodule", None), "task", None)  # exactly what the model was fed
        if isinstance(task, Task):
            return task
        if self.task is None:
            return None
        spec = self.task
        return make_task(spec, spec.get("task_options") if isinstance(spec, Mapping) else None)

    def on_fit_end(self, trainer, pl_module) -> None:
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
        task = self._task(trainer)
        state = None
        if best and Path(best).is_file():  # weights only: a checkpoint file must never be able to run code
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        if trainer.is_global_zero:
            if state is not None:
                current = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
                pl_module.load_state_dict(state)
                pl_module.export(self.directory, self.tokenizer, self.target_tokenizer, task)
                pl_module.load_state_dict(current)
                self.exported_from = best
            else:
                pl_module.export(self.directory, self.tokenizer, self.target_tokenizer, task)
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

    ``checkpoint``: ``save_top_k`` (best by the task's headline metric), ``every_n_train_steps`` or
    ``every_n_minutes`` (how often ``last.ckpt`` is refreshed besides every validation, so a kill loses bounded
    work; it is always the newest state, where Lightning's ``save_last`` only refreshes it when a best checkpoint is
    saved). ``generation_eval``: ``every_n_validations`` and ``max_examples``. A SIGTERM saves ``last.ckpt`` too
    (`Preemption`).
    """
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor

    _, headline = task_metrics(task)
    best, last, preemption = checkpoint_callbacks(
        Path(run_dir) / "checkpoints", f"val/{headline}", "max", "{val/" + headline + ":.2f}", checkpoint
    )
    callbacks: list[L.Callback] = [
        best,
        last,
        preemption,
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
        callbacks.append(ExportBestModel(Path(run_dir) / "model", tokenizer, target_tokenizer, task))
    if lr_monitor:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if early_stopping:
        callbacks.append(EarlyStopping(monitor=f"val/{headline}", mode="max", **early_stopping))
    return callbacks, best

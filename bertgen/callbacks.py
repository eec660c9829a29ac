"""Lightning callbacks: generation-based evaluation during validation, and export of the best model."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch

from bertgen.metrics import task_metrics

log = logging.getLogger("bertgen")

SPLIT_SEPARATOR = "<::::>"  # WikiSplit / released checkpoints' sentence separator


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file and rename it into place: a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl_atomic(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def decode_predictions(tokenizer, sequences: torch.Tensor, eos_token_id: int | None, drop_ids: set[int]) -> list[str]:
    """Generated ids -> text: cut at the first EOS, drop start/pad ids, keep the sentence separator with spaces."""
    out = []
    for seq in sequences.tolist():
        if eos_token_id is not None and eos_token_id in seq[1:]:
            seq = seq[: seq.index(eos_token_id, 1)]
        ids = [t for t in seq if t not in drop_ids]
        text = tokenizer.decode(ids, skip_special_tokens=False)
        if SPLIT_SEPARATOR in text:
            text = text.replace(SPLIT_SEPARATOR, f" {SPLIT_SEPARATOR} ")
        out.append(" ".join(text.split()))
    return out


class GenerationEvaluator(L.Callback):
    """Generate during validation, score with the task's metrics, log them and write the predictions.

    Args:
      task: metrics registry name (``bertgen.metrics.task_metrics``).
      output_dir: predictions go to ``output_dir/predictions/<prefix>_step<N>.jsonl`` (fields source/target/prediction).
      generation: decoding settings for validation (default greedy: ``num_beams=1``; the task's full beam settings
        are for evaluate.py).
      every_n_validations: generate on every n-th validation run only (the loss is always computed).
      max_examples: generate for at most this many validation examples per rank (a fixed subset, since the
        validation order is deterministic); None = all.
    """

    def __init__(
        self,
        task: str,
        output_dir: str | Path,
        tokenizer,
        generation: dict[str, Any] | None = None,
        every_n_validations: int = 1,
        max_examples: int | None = None,
        split: str = "validation",
        prefix: str = "val",
    ):
        self.task = task
        self.output_dir = Path(output_dir)
        self.tokenizer = tokenizer
        self.generation = dict(generation or {"num_beams": 1})
        self.every = max(1, int(every_n_validations))
        self.max_examples = max_examples
        self.split = split
        self.prefix = prefix
        self.metrics, self.headline = task_metrics(task)
        self._runs = 0
        self._active = False
        self._seen = 0
        self._rows: list[dict[str, str]] = []

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._active = not trainer.sanity_checking and self._runs % self.every == 0
        if not trainer.sanity_checking:
            self._runs += 1
        if self._active:
            self.metrics = self.metrics.to(pl_module.device)
            self.metrics.reset()
            self._seen, self._rows = 0, []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not self._active or (self.max_examples is not None and self._seen >= self.max_examples):
            return
        dm = trainer.datamodule
        seqs = pl_module.generate(batch, **self.generation)
        cfg = pl_module.model.config
        eos = cfg.eos_token_id
        drop = {t for t in (cfg.pad_token_id, getattr(cfg, "decoder_start_token_id", None), getattr(cfg, "bos_token_id", None)) if t is not None}
        preds = decode_predictions(self.tokenizer, seqs, eos, drop)
        idx = batch["index"].tolist()
        sources = [dm.source_text(self.split, i) for i in idx]
        targets = [dm.target_text(self.split, i) for i in idx]
        self.metrics.update(preds, [[t] for t in targets], sources)
        self._rows += [{"source": s, "target": t, "prediction": p} for s, t, p in zip(sources, targets, preds)]
        self._seen += len(idx)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self._active:
            return
        scores = {k: float(v) for k, v in self.metrics.compute().items()}  # synced across ranks by torchmetrics
        for k, v in scores.items():
            pl_module.log(f"{self.prefix}/{k}", v, prog_bar=k == self.headline, sync_dist=False, rank_zero_only=False)
        rows = self._rows
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[list[dict[str, str]]] = [None] * trainer.world_size  # type: ignore[list-item]
            torch.distributed.all_gather_object(gathered, rows)
            rows = [r for part in gathered for r in part]
        if trainer.is_global_zero:
            write_jsonl_atomic(self.output_dir / "predictions" / f"{self.prefix}_step{trainer.global_step}.jsonl", rows)
            log.info("%s at step %d: %s", self.prefix, trainer.global_step,
                     ", ".join(f"{k}={v:.2f}" for k, v in scores.items()))


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
        if best and Path(best).is_file():
            state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
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

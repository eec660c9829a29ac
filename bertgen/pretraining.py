"""Masked-language-model pre-training of a bertgen BERT (``python pretrain.py``): the custom checkpoints of the
paper's Table 4 (a BERT pre-trained on English + German with a vocabulary of the WMT14 training data).

BERT's recipe (Devlin et al. 2019; google-research/bert ``create_pretraining_data.py``), without next-sentence
prediction:

* data: plain text files, one sentence per line and a blank line between documents (BERT's input format), or the
  sources and/or targets of a task's rows (``bertgen.data.vocab.task_rows``: each field's rows in corpus order form
  one document, or each row its own with ``data.row_documents=true``);
* packing: ``[CLS] s1 s2 ... [SEP]`` with whole sentences up to ``max_length`` tokens, never across a document
  boundary; with probability ``mlm.short_seq_prob`` (0.1) a sequence aims at a random shorter length, as BERT does;
  a sentence longer than a sequence is cut into pieces;
* masking: ``round(15%)`` of the pieces of a sequence (at most ``mlm.max_predictions``), never [CLS]/[SEP]; of
  those 80% become [MASK], 10% a random piece (any non-special id), 10% stay; ``mlm.whole_word=true`` chooses whole
  words (a piece and its ``##`` continuations) as BERT's whole-word-masking models do. Masks are drawn afresh each
  epoch from ``(seed, epoch, sequence)`` alone (dynamic masking, RoBERTa's improvement; deterministic, so a resumed
  run draws exactly the masks an uninterrupted one draws); validation masks are fixed.

Training runs through the machinery of ``train.py`` (`bertgen.training`: process set-up, the Trainer with bertgen's
checkpoint IO; `bertgen.checkpoints`: run-dir lock, resume, fingerprints; `bertgen.callbacks`: pre-emption and the
best checkpoint): bf16, DDP, exact resume. Validation logs the held-out MLM loss (``val/loss``) and masked-token
accuracy (``val/accuracy``, %), and the best checkpoint by ``val/loss`` is exported as ``<run dir>/model``: a
`BertForMaskedLM` folder with the tokenizer, which ``model.checkpoint=`` of the BERT variants and transformers load.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torchmetrics import MeanMetric

from bertgen.data.errors import DataFormatError
from bertgen.data.mlm import (
    LABEL_PAD,
    Masking,
    MLMDataModule,
    PackedSequences,
    Vocabulary,
    encode_documents,
    pack_documents,
    read_text_documents,
    task_documents,
)
from bertgen.errors import ConfigError
from bertgen.lit_module import ExactResume
from bertgen.model import BertMLM, ModelConfig
from bertgen.optim import lightning_optimizers

log = logging.getLogger("bertgen.pretrain")

RECORD = "pretrain_metrics.json"  # the run record of a pre-training run


# ===================================================================================================================
# The LightningModule
# ===================================================================================================================
class MLMModule(ExactResume, L.LightningModule):
    """MLM loss, held-out loss and masked-token accuracy, optimiser and schedule around a `BertMLM`.

    ``model_config``: the architecture (a transformers ``config.json`` dict, so ``load_from_checkpoint`` needs
    nothing else); ``init_checkpoint``: a BERT folder the weights start from (continued pre-training; on resume
    the weights come from the Lightning checkpoint); ``optim``: as `bertgen.lit_module.Seq2SeqModule`'s.
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        optim: dict[str, Any] | None = None,
        init_checkpoint: str | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if init_checkpoint:
            overrides = {k: v for k, v in model_config.items() if "dropout" in k}
            self.model = BertMLM.from_pretrained(init_checkpoint, **overrides)
        else:
            self.model = BertMLM(ModelConfig.from_hf_dict(model_config))
        self._compiled = None
        self._last_step_time: float | None = None
        self.fingerprints: dict[str, str] = {}
        self.val_loss, self.val_accuracy = MeanMetric(), MeanMetric()

    def configure_model(self) -> None:
        if self.hparams.compile and self._compiled is None:
            self.__dict__["_compiled"] = torch.compile(self.model)

    def forward(self, batch: dict[str, torch.Tensor]):
        model = self._compiled or self.model
        return model(batch["input_ids"], batch["attention_mask"], batch["labels"], return_logits=False)

    def training_step(self, batch, batch_idx):
        out = self(batch)
        bs = batch["input_ids"].shape[0]
        self.log("train/loss", out.loss, prog_bar=True, batch_size=bs)
        now = time.perf_counter()
        if self._last_step_time is not None:
            tps = int(batch["attention_mask"].sum()) * self.trainer.world_size / max(now - self._last_step_time, 1e-9)
            self.log("train/tokens_per_s", tps, prog_bar=True, batch_size=bs, sync_dist=False)
        self._last_step_time = now
        return out.loss

    def on_train_epoch_start(self) -> None:
        self._last_step_time = None

    def validation_step(self, batch, batch_idx):
        keep = batch["labels"] != LABEL_PAD
        h = self.model.bert(batch["input_ids"], batch["attention_mask"])
        logits = self.model.bert.logits(h[keep]).float()
        target = batch["labels"][keep]
        n = target.numel()
        if n == 0:
            return None
        loss = torch.nn.functional.cross_entropy(logits, target)
        acc = (logits.argmax(-1) == target).float().mean() * 100
        # token-weighted over the whole split and across ranks (MeanMetric sums value x weight)
        self.val_loss.update(loss.detach(), weight=n)
        self.val_accuracy.update(acc.detach(), weight=n)
        bs = batch["input_ids"].shape[0]
        self.log("val/loss", self.val_loss, prog_bar=True, batch_size=bs)
        self.log("val/accuracy", self.val_accuracy, prog_bar=True, batch_size=bs)
        return loss

    def configure_optimizers(self):
        # BERT's pre-training optimiser (Devlin et al. 2019, A.2: weight decay 0.01, 10k warm-up; eps 1e-6 as its code)
        defaults = {"name": "adamw", "eps": 1e-6, "weight_decay": 0.01, "warmup_steps": 10_000}
        return lightning_optimizers(
            self.model, dict(self.hparams.optim or {}), self.trainer, self.model.config.hidden_size, defaults
        )

    def export(
        self, directory: str | Path, tokenizer=None, info: dict[str, Any] | None = None, tokenizer_dir=None
    ) -> Path:
        """The model as a `BertForMaskedLM` folder with the tokenizer (and ``bertgen_pretrain.json``, how it was
        pre-trained); ``tokenizer_dir``: the tokenizer's folder, whose ``vocab.txt`` is copied too."""
        directory = Path(directory)
        copy.deepcopy(self.model).cpu().save_pretrained(directory)
        if tokenizer is not None:
            tokenizer.save(directory)
            vocab_txt = Path(tokenizer_dir) / "vocab.txt" if tokenizer_dir else None
            if vocab_txt is not None and vocab_txt.is_file():  # what BertTokenizer (slow) reads
                (directory / "vocab.txt").write_bytes(vocab_txt.read_bytes())
        if info is not None:
            (directory / "bertgen_pretrain.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return directory


class ExportMLM(L.Callback):
    """At the end of training export the best checkpoint (lowest held-out loss), else the last weights."""

    def __init__(self, directory: str | Path, tokenizer, info: dict[str, Any], tokenizer_dir=None) -> None:
        self.directory, self.tokenizer, self.info = Path(directory), tokenizer, info
        self.tokenizer_dir = tokenizer_dir
        self.exported_from: str | None = None

    def on_fit_end(self, trainer, pl_module) -> None:
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
        state = None
        if best and Path(best).is_file():
            state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        if trainer.is_global_zero:
            current = None
            if state is not None:
                current = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
                pl_module.load_state_dict(state)
            self.exported_from = best if state is not None else "last weights"
            info = {**self.info, "exported_from": self.exported_from}
            pl_module.export(self.directory, self.tokenizer, info, self.tokenizer_dir)
            if current is not None:
                pl_module.load_state_dict(current)
            log.info("exported the MLM model (%s) to %s", self.exported_from, self.directory)
        trainer.strategy.barrier()


# ===================================================================================================================
# A run, as plain functions of plain config values (pretrain.py calls them in order)
# ===================================================================================================================
def _check(key: str, value: Any, kind, **kw) -> None:
    from bertgen.training import _check as check

    check(key, value, kind, **kw)


def validate_config(c: Mapping[str, Any]) -> Masking:
    """Types, ranges and consistency of a composed pretrain config; returns the masking recipe."""
    _check("seed", c.get("seed"), int, low=0, high=2**32 - 1)
    _check("max_length", c.get("max_length"), int, low=3)
    _check("batch_size", c.get("batch_size"), int, low=1)
    _check("global_batch_size", c.get("global_batch_size"), int, low=1, optional=True)
    _check("num_workers", c.get("num_workers"), int, low=0)
    _check("num_threads", c.get("num_threads"), int, low=1, optional=True)
    for key in ("deterministic", "export_model", "compile"):
        _check(key, c.get(key), bool)
    data = c.get("data") or {}
    _check("data.max_rows", data.get("max_rows"), int, low=1, optional=True)
    _check("data.val_fraction", data.get("val_fraction"), (int, float), low=0, low_open=True, high=0.5)
    _check("data.val_max_sequences", data.get("val_max_sequences"), int, low=1, optional=True)
    if not data.get("files") and not data.get("task"):
        raise ConfigError("data: give data.files=[...] (plain text) or data.task=<task> (its rows), or both")
    if data.get("task"):
        from bertgen.data.vocab import parse_fields

        parse_fields(data.get("fields") or ())
    trainer = c.get("trainer") or {}
    _check("trainer.max_steps", trainer.get("max_steps"), int, low=-1)
    if trainer.get("max_steps") == 0:
        raise ConfigError("trainer.max_steps=0: nothing would be trained")
    if c.get("tokenizer") is None and not c.get("checkpoint"):
        raise ConfigError("tokenizer is not set: a tokenizer folder (bertgen-data vocab --out) or a checkpoint's")
    from bertgen.training import PRECISIONS, accumulation, world_size

    precision = trainer.get("precision")
    if precision is not None and str(precision) not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if not trainer.get("accumulate_grad_batches"):
        accumulation(c.get("global_batch_size"), c.get("batch_size"), world_size(trainer), None)
    m = dict(c.get("mlm") or {})
    return Masking(**m)


def model_config(c: Mapping[str, Any], tok) -> dict[str, Any]:
    """The architecture (a ``config.json`` dict) of a random start (``model``) or of ``checkpoint``, checked against
    the tokenizer and ``max_length`` before any data is read."""
    from bertgen.model.config import read_model_config
    from bertgen.training import vocab_rows

    rows = vocab_rows(tok)
    if c.get("checkpoint"):
        from bertgen.hub import fetch_folder

        folder = fetch_folder(c["checkpoint"], what="BERT checkpoint")
        cfg = read_model_config(folder)
        if not isinstance(cfg, ModelConfig) or cfg.family != "bert":
            raise ConfigError(f"checkpoint={c['checkpoint']}: not a BERT model (MLM pre-training continues a BERT)")
        if cfg.vocab_size != rows:
            raise ConfigError(
                f"checkpoint={c['checkpoint']} has a vocabulary of {cfg.vocab_size:,} rows but tokenizer="
                f"{c.get('tokenizer')} has {rows:,}: its ids would mean other pieces. Pre-train with the checkpoint's "
                "own tokenizer (leave tokenizer unset), or from random weights (checkpoint=null)"
            )
        if c.get("tokenizer") and _own_vocab(folder) not in (None, tok.get_vocab()):
            raise ConfigError(
                f"checkpoint={c['checkpoint']} was trained with another vocabulary than tokenizer={c['tokenizer']} "
                "(the same size, other pieces): its ids would mean other pieces. Leave tokenizer unset to use the "
                "checkpoint's own"
            )
        overrides = {k: v for k, v in (c.get("model") or {}).items() if "dropout" in k and v is not None}
        cfg = cfg.replace(**overrides)
    else:
        spec = {k: v for k, v in dict(c.get("model") or {}).items() if v is not None}
        spec.setdefault("family", "bert")
        if spec.get("vocab_size") is None:
            spec["vocab_size"] = rows
        elif spec["vocab_size"] < rows:
            raise ConfigError(f"model.vocab_size={spec['vocab_size']} is smaller than the tokenizer's {rows:,} ids")
        spec.setdefault("pad_token_id", tok.pad_token_id if tok.pad_token_id is not None else 0)
        try:
            cfg = ModelConfig.coerce(spec)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"model: {e}") from None
        if cfg.family != "bert":
            raise ConfigError(f"model.family={cfg.family!r}: MLM pre-training builds a BERT (family bert)")
    if c["max_length"] > cfg.max_position_embeddings:
        raise ConfigError(
            f"max_length={c['max_length']} is above the model's max_position_embeddings="
            f"{cfg.max_position_embeddings}: lower max_length or raise model.max_position_embeddings"
        )
    return cfg.replace(is_decoder=False, add_cross_attention=False).to_hf_dict()


def _own_vocab(folder: Path) -> dict[str, int] | None:
    """The vocabulary of the tokenizer a checkpoint folder carries, if it carries one."""
    from bertgen.checkpoints import TOKENIZER_FILES
    from bertgen.tokenization import load_tokenizer

    if not any((Path(folder) / f).is_file() for f in TOKENIZER_FILES):
        return None
    return load_tokenizer(folder).get_vocab()


def load_tokenizer_for(c: Mapping[str, Any]):
    from bertgen.tokenization import load_tokenizer

    return load_tokenizer(str(c.get("tokenizer") or c["checkpoint"]))


def build_data(c: Mapping[str, Any], tok, masking: Masking, pad_to_multiple_of: int | None = None) -> MLMDataModule:
    """Read, tokenise and pack the training and held-out text (see the module docstring)."""
    data = dict(c["data"])
    vocab = Vocabulary.of(tok)
    seed, max_length = int(c["seed"]), int(c["max_length"])

    def documents(split: str) -> Iterator[list[list[int]]]:
        if split == "train" and data.get("files"):
            yield from encode_documents(tok, read_text_documents(data["files"]))
        if split == "validation" and data.get("val_files"):
            yield from encode_documents(tok, read_text_documents(data["val_files"]))
        if data.get("task") and (split == "train" or data.get("val_split")):
            from bertgen.data.tasks import make_task

            task = make_task(data["task"], data.get("task_options") or {})
            prepared = task.text_convention.prepare(tok)  # the task's text as fine-tuning will encode it
            docs = task_documents(
                data["task"],
                "train" if split == "train" else data["val_split"],
                data.get("fields") or ("source", "target"),
                data_dir=data.get("data_dir"),
                options=data.get("task_options"),
                max_rows=data.get("max_rows") if split == "train" else data.get("val_max_sequences"),
                seed=seed,
                row_documents=bool(data.get("row_documents")),
            )
            yield from encode_documents(prepared, docs)

    train = pack_documents(documents("train"), max_length, vocab, masking.short_seq_prob, seed)
    if not train:
        where = data.get("files") or f"task {data.get('task')} ({data.get('data_dir') or 'its official release'})"
        raise DataFormatError(f"data: the training text in {where} is empty: nothing to pre-train on")
    has_val = bool(data.get("val_files")) or bool(data.get("task") and data.get("val_split"))
    val = pack_documents(documents("validation"), max_length, vocab, 0.0, seed) if has_val else []
    if not val:  # hold out a fraction of the training sequences (seeded)
        order = np.random.default_rng([seed, 7]).permutation(len(train))
        n = max(1, int(len(train) * float(data.get("val_fraction") or 0.01)))
        held = set(order[:n].tolist())
        val = [s for i, s in enumerate(train) if i in held]
        train = [s for i, s in enumerate(train) if i not in held]
        if not train:
            raise DataFormatError("data: too little text to hold out a validation part; add text or val_files")
    cap = data.get("val_max_sequences")
    if cap is not None and len(val) > cap:
        val = val[:cap]
    log.info(
        "pre-training data: %d training and %d held-out sequences of <= %d tokens (%d training tokens)",
        len(train),
        len(val),
        max_length,
        sum(len(s) for s in train),
    )
    return MLMDataModule(
        PackedSequences(train, vocab, masking, seed),
        PackedSequences(val, vocab, masking, seed + 1, fixed=True),
        batch_size=int(c["batch_size"]),
        seed=seed,
        num_workers=int(c["num_workers"]),
        pad_to_multiple_of=pad_to_multiple_of,
    )


def fingerprints(tok, dm: MLMDataModule, lit: MLMModule, masking: Masking, max_length: int) -> dict[str, str]:
    """What makes a pre-training checkpoint's weights mean something (`bertgen.checkpoints.check_resume`'s keys): the
    tokenizer, the architecture, the data with its masking."""
    from bertgen.data.cache import tokenizer_fingerprint

    def digest(obj: Any) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]

    fp = tokenizer_fingerprint(tok)
    config = {k: v for k, v in lit.hparams["model_config"].items() if "dropout" not in k}
    data = {"train": dm.train_set.digest(), "masking": dataclasses.asdict(masking), "max_length": max_length}
    return {
        "source_tokenizer": fp,
        "target_tokenizer": fp,
        "model": digest(config),
        "encode": digest(data),
        "task": "mlm-pretraining",
    }


def build_callbacks(run_dir: Path, c: Mapping[str, Any], tok, info: dict[str, Any]) -> tuple[list, Any]:
    """The best checkpoint by held-out loss, ``last.ckpt`` (always the newest state), pre-emption, the export and the
    learning-rate monitor."""

    from lightning.pytorch.callbacks import LearningRateMonitor

    from bertgen.callbacks import checkpoint_callbacks

    cb = dict(c.get("callbacks") or {})
    ck = dict(cb.get("checkpoint") or {})
    best, last, preemption = checkpoint_callbacks(run_dir / "checkpoints", "val/loss", "min", "{val/loss:.4f}", ck)
    callbacks: list = [best, last, preemption]
    if c.get("export_model", True):
        tok_dir = Path(str(c.get("tokenizer") or c.get("checkpoint")))
        callbacks.append(ExportMLM(run_dir / "model", tok, info, tok_dir if tok_dir.is_dir() else None))
    if cb.get("lr_monitor", True) and c.get("logger"):
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return callbacks, best


def record(trainer, lit: MLMModule, dm: MLMDataModule, best_cb, run_dir: Path, status: str | None = None) -> dict:
    """The run record (``pretrain_metrics.json``): the last held-out loss and accuracy, the best checkpoint, steps,
    data and parameter counts."""
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
    step = trainer.global_step
    last = run_dir / "checkpoints" / "last.ckpt"
    if step == 0 and last.is_file():  # spawn strategies train in child processes
        step = int(torch.load(last, map_location="cpu", mmap=True, weights_only=True)["global_step"])
    out = {
        "source": "pretrain",
        "metrics": {k.split("/", 1)[1]: v for k, v in logged.items() if k.startswith("val/")},
        "best_score": float(best_cb.best_model_score) if best_cb.best_model_score is not None else None,
        "best_metric": "val/loss (min)",
        "best_checkpoint": best_cb.best_model_path or None,
        "global_step": int(step),
        "parameters": sum(p.numel() for p in lit.model.parameters()),
        "data": {
            "train_sequences": len(dm.train_set),
            "train_tokens": int(dm.train_set.lengths().sum()),
            "validation_sequences": len(dm.val_set),
        },
    }
    if status:
        out["status"] = status
    return out

"""The LightningModule: loss, optimiser/schedule, logging and generation around a bertgen model.

Everything it is built from is plain data (``save_hyperparameters`` stores it), so ``load_from_checkpoint`` works on
any machine: the model architecture is stored as its config dict after the first build, and the weights come from
the checkpoint's state_dict, not from the pre-trained folders the run started from.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchmetrics import MeanMetric

from bertgen.model import DecoderOnlyLM, EncoderDecoder, EncoderDecoderConfig, ModelConfig
from bertgen.optim import lightning_optimizers

log = logging.getLogger("bertgen.train")


def build_model(spec: dict[str, Any], special_tokens: dict[str, int | None]) -> EncoderDecoder | DecoderOnlyLM:
    """Build a paper variant from a model spec (``conf/model/*.yaml``).

    ``spec`` keys: ``kind`` (``encoder_decoder`` | ``decoder_only``); ``pretrained`` (a whole model folder / hub id,
    e.g. a released checkpoint) or ``encoder`` / ``decoder`` (a checkpoint folder / hub id, or a mapping of
    `ModelConfig` fields for random init); ``tie_encoder_decoder``; ``share_embeddings``; ``overrides`` (config fields
    applied to both sides, e.g. dropout); ``encoder_vocab_size`` / ``decoder_vocab_size`` (the tokenizers' lengths:
    a checkpoint's word embeddings grow to them, e.g. GPT-2 by one row for a ``<::::>`` separator).
    ``special_tokens``: ``decoder_start_token_id``, ``pad_token_id``,
    ``eos_token_id`` from the tokenizer (used where the checkpoint does not fix them).
    ``init`` (all | all_but_embeddings | embeddings_only), ``encoder_layers`` / ``decoder_layers`` (a count or
    0-based checkpoint layer indices): what is warm-started (`EncoderDecoder.from_encoder_decoder_pretrained`).
    """
    kind = spec.get("kind", "encoder_decoder")
    overrides = dict(spec.get("overrides") or {})
    init = spec.get("init") or "all"
    # new embeddings (possibly of another vocabulary): the tokenizer's special ids, not the checkpoint's
    vocab_ids = {} if init != "all_but_embeddings" else _special_ids(special_tokens)
    source_pad = spec.get("source_pad_token_id")  # the encoder's is the source tokenizer's
    source_ids = {} if not vocab_ids or source_pad is None else {"pad_token_id": source_pad}
    if kind == "decoder_only":
        src = spec.get("pretrained") or spec.get("decoder")
        if src is None:
            raise ValueError("a decoder_only model needs `pretrained` or `decoder` in its model config")
        if isinstance(src, dict):
            cfg = ModelConfig.coerce({**src, **overrides})
            if spec.get("decoder_layers") is not None:
                cfg = cfg.replace(num_hidden_layers=int(spec["decoder_layers"]))
            if cfg.pad_token_id is None:
                cfg = cfg.replace(pad_token_id=special_tokens.get("pad_token_id"))
            return DecoderOnlyLM(cfg)
        return DecoderOnlyLM.from_pretrained(
            src,
            vocab_size=spec.get("decoder_vocab_size"),
            init=init,
            layers=spec.get("decoder_layers"),
            **overrides,
            **vocab_ids,
        )
    if kind != "encoder_decoder":
        raise ValueError(f"unknown model kind {kind!r}; expected 'encoder_decoder' or 'decoder_only'")
    if spec.get("pretrained"):
        return EncoderDecoder.from_pretrained(spec["pretrained"])  # its own config fixes the special tokens
    if spec.get("encoder") is None or spec.get("decoder") is None:
        raise ValueError("an encoder_decoder model needs `pretrained`, or both `encoder` and `decoder`")
    return EncoderDecoder.from_encoder_decoder_pretrained(
        _side(spec["encoder"]),
        _side(spec["decoder"]),
        tie_encoder_decoder=bool(spec.get("tie_encoder_decoder", False)),
        share_embeddings=spec.get("share_embeddings"),
        encoder_overrides={**overrides, **(source_ids if not isinstance(spec["encoder"], dict) else {})},
        decoder_overrides={**overrides, **(vocab_ids if not isinstance(spec["decoder"], dict) else {})},
        encoder_vocab_size=spec.get("encoder_vocab_size"),
        decoder_vocab_size=spec.get("decoder_vocab_size"),
        cross_attention_init=spec.get("cross_attention_init") or "random",
        init=init,
        encoder_layers=spec.get("encoder_layers"),
        decoder_layers=spec.get("decoder_layers"),
        **special_tokens,
    )


def _side(value):
    return dict(value) if isinstance(value, dict) else str(value)


def _special_ids(special_tokens: dict[str, int | None]) -> dict[str, int]:
    """Config fields for a checkpoint side whose embeddings are new: the tokenizer's pad and eos ids."""
    return {k: special_tokens[k] for k in ("pad_token_id", "eos_token_id") if special_tokens.get(k) is not None}


def model_from_config(desc: dict[str, Any]) -> EncoderDecoder | DecoderOnlyLM:
    """Rebuild (randomly initialised) from `describe_model` output; weights come from a state_dict afterwards."""
    if desc["kind"] == "decoder_only":
        return DecoderOnlyLM(ModelConfig.from_hf_dict(desc["config"]))
    return EncoderDecoder(EncoderDecoderConfig.from_hf_dict(desc["config"]))


def describe_model(model: EncoderDecoder | DecoderOnlyLM) -> dict[str, Any]:
    if isinstance(model, DecoderOnlyLM):
        return {"kind": "decoder_only", "config": model.config.to_hf_dict()}
    return {"kind": "encoder_decoder", "config": model.config.to_hf_dict()}


class ExactResume:
    """For a LightningModule: the RNG states (torch, CUDA, numpy, python) and the run's fingerprints
    (``self.fingerprints``, `bertgen.checkpoints.check_resume`) travel with every checkpoint, and the RNG states are
    restored when training starts, after everything that consumes randomness while resuming."""

    fingerprints: dict[str, str] | None = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        import random

        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        # plain tensors and numbers only, so the checkpoint still loads with torch.load(weights_only=True)
        if self.fingerprints:  # what makes these weights mean something (bertgen.checkpoints.check_resume)
            checkpoint["bertgen_fingerprints"] = dict(self.fingerprints)
        checkpoint["bertgen_rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("bertgen_rng")

    def on_train_start(self) -> None:
        state = getattr(self, "_rng_to_restore", None)
        if state is not None:
            import random

            import numpy as np

            torch.set_rng_state(state["torch"])
            if state["cuda"] is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])
            kind, keys, pos, has_gauss, gauss = state["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(state["python"])
            self._rng_to_restore = None


class Seq2SeqModule(ExactResume, L.LightningModule):
    """Training and validation loss, lr and tokens/s logging, optimiser and schedule (generation: ``bertgen.decoding``).

    Args:
      model: the model spec (see `build_model`); ignored when ``model_config`` is given.
      optim: ``name`` (paper | adamw), ``lr``, ``betas``, ``eps``, ``weight_decay``, ``schedule``
        (paper | linear | constant), ``warmup_steps``, ``constant`` (paper), ``total_steps`` (linear).
      special_tokens: decoder_start_token_id / pad_token_id / eos_token_id (and sep_token_id for decoder-only).
      generation: decoding settings for `generate` (num_beams, max_new_tokens, length_penalty, ...).
      label_smoothing: for the cross-entropy.
      gradient_checkpointing / compile: memory and speed switches.
      model_config: the stored architecture (filled in automatically; used by ``load_from_checkpoint``).
      warm_started: the names of the parameters loaded from pre-trained checkpoints (filled in automatically);
        ``optim.freeze_warm_started_steps=N`` keeps them unchanged for the first N optimiser steps.
    """

    def __init__(
        self,
        model: dict[str, Any] | None = None,
        optim: dict[str, Any] | None = None,
        special_tokens: dict[str, int | None] | None = None,
        generation: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        gradient_checkpointing: bool = False,
        compile: bool = False,
        model_config: dict[str, Any] | None = None,
        warm_started: list[str] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        special = dict(special_tokens or {})
        self.sep_token_id = special.pop("sep_token_id", None)
        if model_config is not None:
            self.model = model_from_config(model_config)
        else:
            if model is None:
                raise ValueError("Seq2SeqModule needs a model spec or a stored model_config")
            self.model = build_model(
                model, {k: special.get(k) for k in ("decoder_start_token_id", "pad_token_id", "eos_token_id")}
            )
            self.hparams["model_config"] = describe_model(self.model)
            self.hparams["warm_started"] = list(self.model.warm_started)
        if model_config is not None and warm_started is not None:
            self.model.warm_started = list(warm_started)
        self.decoder_only = isinstance(self.model, DecoderOnlyLM)
        if self.decoder_only and self.sep_token_id is not None:
            # the prompt convention travels with the model (generation_config.json), so a reloaded gpt decodes alike
            self.model.generation_config["sep_token_id"] = int(self.sep_token_id)
        self.pad_token_id = special.get("pad_token_id")
        if self.pad_token_id is None:
            self.pad_token_id = self.model.config.pad_token_id
        if gradient_checkpointing:
            for stack in self._stacks():
                stack.gradient_checkpointing = True
        self._compiled = None
        self._frozen: list[torch.nn.Parameter] | None = None  # while optim.freeze_warm_started_steps holds them
        self._last_step_time: float | None = None
        self.fingerprints: dict[str, str] = {}  # set by the run (bertgen.training.run_fingerprints)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()

    def _stacks(self):
        return [self.model.decoder] if self.decoder_only else [self.model.encoder, self.model.decoder]

    def configure_model(self) -> None:
        if self.hparams.compile and self._compiled is None:
            # kept out of the module tree: the compiled wrapper shares self.model's parameters, and registering it
            # would put a second copy of every key in the checkpoint's state_dict
            self.__dict__["_compiled"] = torch.compile(self.model)

    # --- forward / loss -----------------------------------------------------------------------------------------
    def _inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.decoder_only:
            return DecoderOnlyLM.prefix_lm_batch(
                batch["input_ids"], batch["attention_mask"], batch["labels"], self.pad_token_id, self.model.sep_token_id
            )
        return {k: batch[k] for k in ("input_ids", "attention_mask", "labels") if k in batch}

    def forward(self, batch: dict[str, torch.Tensor]):
        model = self._compiled or self.model
        smoothing = self.hparams.label_smoothing if self.training else 0.0
        # the loss alone: the output projection runs on labelled positions only (see `labelled_loss`)
        return model(**self._inputs(batch), label_smoothing=smoothing, return_logits=False)

    @staticmethod
    def _n_tokens(batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())

    def training_step(self, batch, batch_idx):
        out = self(batch)
        bs = batch["input_ids"].shape[0]
        self.log("train/loss", out.loss, prog_bar=True, batch_size=bs)
        now = time.perf_counter()
        if self._last_step_time is not None:
            # tokens (source + target, no padding) per second of this rank times the world size
            tps = self._n_tokens(batch) * self.trainer.world_size / max(now - self._last_step_time, 1e-9)
            self.log("train/tokens_per_s", tps, prog_bar=True, batch_size=bs, sync_dist=False)
        self._last_step_time = now
        return out.loss

    def on_train_epoch_start(self) -> None:
        self._last_step_time = None

    def _eval_step(self, batch, metric: MeanMetric, name: str):
        out = self(batch)
        # token-weighted mean over the whole split; MeanMetric sums value*weight and weights across ranks, so
        # 2 ranks report exactly what 1 process does
        metric.update(out.loss.detach(), weight=(batch["labels"] != -100).sum())
        self.log(name, metric, prog_bar=name == "val/loss", batch_size=batch["input_ids"].shape[0])
        return out.loss

    def validation_step(self, batch, batch_idx):
        return self._eval_step(batch, self.val_loss, "val/loss")

    def test_step(self, batch, batch_idx):
        return self._eval_step(batch, self.test_loss, "test/loss")

    # --- optimisation ---------------------------------------------------------------------------------------------
    @property
    def freeze_steps(self) -> int:
        return int((self.hparams.optim or {}).get("freeze_warm_started_steps") or 0)

    def frozen_parameters(self) -> list[torch.nn.Parameter]:
        """The warm-started parameters (one entry per shared parameter)."""
        names = set(self.model.warm_started)
        return [p for n, p in self.model.named_parameters() if n in names]

    def on_before_optimizer_step(self, optimizer) -> None:
        # Freezing = no gradient for the optimiser: torch's Adam/AdamW/Adafactor skip a parameter whose grad is None,
        # so neither its weights (weight decay included) nor its moments move. The decision depends on global_step
        # only (saved in every checkpoint), so a run resumed inside the period freezes exactly as one not stopped.
        # Called after the gradients are unscaled and before they are clipped, so clipping sees the trained ones.
        n, step = self.freeze_steps, self.trainer.global_step
        if n and step < n:
            if self._frozen is None:
                self._frozen = self.frozen_parameters()
            for p in self._frozen:
                p.grad = None
        elif n and self._frozen is not None:
            log.info("step %d: the %d warm-started parameters train from now on", step, len(self._frozen))
            self._frozen = None

    def configure_optimizers(self):
        hidden = self.model.config.hidden_size if self.decoder_only else self.model.config.decoder.hidden_size
        return lightning_optimizers(self.model, dict(self.hparams.optim or {}), self.trainer, hidden)

    # --- export -----------------------------------------------------------------------------------------------------
    def export(self, directory: str | Path, tokenizer=None, target_tokenizer=None, task=None) -> Path:
        """Write the model (and tokenizers) as a plain folder that `EncoderDecoder.from_pretrained`, evaluate.py and
        transformers load; with ``task`` (the `bertgen.data.tasks.Task` the model was trained on, with its options)
        also ``bertgen.json``, its conventions (`bertgen.conventions`), so that the folder alone is enough for
        ``predict.py`` / ``bertgen.load_generator``."""
        directory = Path(directory)
        model = copy.deepcopy(self.model).cpu()
        model.generation_config = {**model.generation_config, **(self.hparams.generation or {})}
        model.save_pretrained(directory)
        if tokenizer is not None:
            tokenizer.save(directory)
        if target_tokenizer is not None and target_tokenizer is not tokenizer:
            target_tokenizer.save(directory / "target_tokenizer")
        if task is not None:
            from bertgen.conventions import write_conventions

            write_conventions(directory, task)
        return directory

"""`BertMLM`: a BERT encoder with its masked-LM head, the model MLM pre-training trains (transformers'
`BertForMaskedLM`, `modeling_bert.py`).

It is one `TransformerStack` (bidirectional, family ``bert``) whose LM head is BERT's ``cls.predictions``
(dense -> GELU -> LayerNorm -> tied word embeddings + bias), so the weight-name map of `hf_weights` reads and writes
it unchanged: a saved folder loads in `BertForMaskedLM.from_pretrained`, and in bertgen as the warm side of any BERT
variant (``model.checkpoint=<folder>``: the encoder reads ``bert.*``, a BERT decoder also the ``cls.predictions``
head, as the paper's decoders keep the MLM transform).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from ..hub import fetch_folder
from . import hf_weights
from .config import EncoderDecoderConfig, ModelConfig, ModelFileError, read_model_config
from .encoder_decoder import ModelOutput, labelled_loss, lm_loss, save_folder
from .transformer import LMHead, TransformerStack

BODY_PREFIX = "bert."  # BertForMaskedLM's body


class BertMLM(nn.Module):
    """BERT encoder + MLM head. ``forward(input_ids, attention_mask, labels)``: labels are -100 except at the
    positions to predict; ``return_logits=False`` projects only those positions (same loss, less memory)."""

    def __init__(self, config: ModelConfig | dict):
        super().__init__()
        config = ModelConfig.coerce(config)
        if config.family != "bert":
            raise ValueError(f"BertMLM is a BERT model (family 'bert'); got family {config.family!r}")
        self.config = config.replace(is_decoder=False, add_cross_attention=False)
        self.bert = TransformerStack(self.config)
        # an encoder stack has no head of its own: BERT's MLM head, registered as the stack's `head` so that the
        # stack's weight-name rules (`hf_weights.stack_rules(..., with_head=True)`) cover it
        self.bert.head = LMHead(self.config)
        self.bert.head.apply(self.bert._init_weights)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def max_positions(self) -> int:
        return self.config.max_position_embeddings

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        return_logits: bool = True,
    ) -> ModelOutput:
        h = self.bert(input_ids, attention_mask)
        if labels is not None and not return_logits:
            return ModelOutput(logits=None, loss=labelled_loss(self.bert, h, labels, 0.0))
        logits = self.bert.logits(h)
        return ModelOutput(logits=logits, loss=lm_loss(logits, labels) if labels is not None else None)

    # --- Hugging Face folders -----------------------------------------------------------------------------------
    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        out = hf_weights.export_stack(self.bert, BODY_PREFIX, with_head=True)
        # BertForMaskedLM ties cls.predictions.decoder.bias to cls.predictions.bias; written too, so older
        # transformers releases that read it find it
        out["cls.predictions.decoder.bias"] = out["cls.predictions.bias"].clone()
        return out

    def save_pretrained(self, directory: str | Path) -> None:
        """config.json + model.safetensors in `BertForMaskedLM`'s layout."""
        save_folder(directory, self.config.to_hf_dict(), "BertForMaskedLM", self.hf_state_dict(), {})

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, **overrides) -> BertMLM:
        """Load a BERT folder or hub id: `BertForMaskedLM` / `BertForPreTraining` (the head is read) or a bare
        `BertModel` (the head is initialised the BERT way and the log says so). ``overrides``: config fields
        (dropout)."""
        folder = fetch_folder(path_or_id, what="BERT checkpoint")
        cfg = read_model_config(folder)
        if isinstance(cfg, EncoderDecoderConfig) or cfg.family != "bert":
            kind = "encoder-decoder" if isinstance(cfg, EncoderDecoderConfig) else cfg.family
            raise ModelFileError(f"{folder}: a {kind} model; MLM pre-training continues from a BERT checkpoint")
        cfg = cfg.replace(is_decoder=False, add_cross_attention=False, **overrides)
        sd = hf_weights.read_weights(folder)
        body = hf_weights.detect_body_prefix(cfg, sd, (BODY_PREFIX, ""))
        with torch.device("meta"):
            meta = cls(cfg)
        hf_weights.check_stack(meta.bert, sd, body, True, where=str(folder))
        model = cls(cfg)
        report = hf_weights.load_stack(model.bert, sd, body, with_head=True)
        report.unexpected = [
            k for k in report.unexpected if not k.startswith((body + "pooler.", "cls.seq_relationship"))
        ]
        report.log(f"BertMLM from {path_or_id}")
        return model

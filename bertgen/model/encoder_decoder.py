"""`EncoderDecoder` (every paper variant but `gpt`) and `DecoderOnlyLM` (the paper's `gpt`).

Both load Hugging Face folders or hub ids, save folders that `transformers` loads back, and compute the loss the way
`EncoderDecoderModel` / `GPT2LMHeadModel` do (transformers' `modeling_encoder_decoder.py`, `modeling_gpt2.py`).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..hub import fetch_folder
from . import hf_weights
from .config import EncoderDecoderConfig, ModelConfig, ModelFileError, read_json, read_model_config, write_json
from .transformer import KVCache, TransformerStack
from .warm_start import _body_prefixes, _load_side, _meta_stack, _prepare_side, warm_started_names

log = logging.getLogger("bertgen.model")

Side = Union[str, Path, ModelConfig, dict]  # a checkpoint folder / hub id, or a config for random init


@dataclass
class ModelOutput:
    logits: torch.Tensor | None  # (B, T, V); None when the loss was computed with return_logits=False
    loss: torch.Tensor | None = None  # mean token cross-entropy over labels != -100
    encoder_hidden_states: torch.Tensor | None = None


def shift_tokens_right(
    labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None
) -> torch.Tensor:
    """Decoder inputs from labels: start token first, labels shifted right by one, -100 replaced by pad."""
    if decoder_start_token_id is None:
        raise ValueError(
            "decoder_start_token_id is not set: pass it to the model (e.g. the tokenizer's [CLS] or <s> id)"
        )
    if pad_token_id is None:
        raise ValueError("pad_token_id is not set: pass it to the model")
    out = labels.new_empty(labels.shape)
    out[:, 1:] = labels[:, :-1]
    out[:, 0] = decoder_start_token_id
    return out.masked_fill_(out == -100, pad_token_id)


def lm_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=-100,
        label_smoothing=label_smoothing,
    )


def labelled_loss(
    stack: TransformerStack, hidden: torch.Tensor, labels: torch.Tensor, label_smoothing: float
) -> torch.Tensor:
    """The same mean cross-entropy as `lm_loss`, projecting only the positions that have a label.

    Padding and (for the decoder-only model) the source prefix never reach the (N, V) output projection, which is
    the largest activation of a training step; the loss value is identical.
    """
    keep = labels != -100
    return F.cross_entropy(stack.logits(hidden[keep]).float(), labels[keep], label_smoothing=label_smoothing)


def _tie_modules(encoder: TransformerStack, decoder: TransformerStack) -> None:
    """bertShare / robertaShare: every encoder parameter *is* the decoder's (decoder-only cross-attention aside)."""
    e, d = encoder.cfg, decoder.cfg
    same = (
        e.family,
        e.hidden_size,
        e.num_hidden_layers,
        e.intermediate_size,
        e.vocab_size,
        e.max_position_embeddings,
    ) == (d.family, d.hidden_size, d.num_hidden_layers, d.intermediate_size, d.vocab_size, d.max_position_embeddings)
    if not same or e.family == "gpt2":
        raise ValueError(
            "tie_encoder_decoder needs encoder and decoder of the same BERT-family architecture and size "
            f"(got {e.family} {e.num_hidden_layers}x{e.hidden_size} and "
            f"{d.family} {d.num_hidden_layers}x{d.hidden_size})"
        )
    encoder.embed = decoder.embed
    for eb, db in zip(encoder.layers, decoder.layers):
        eb.attn, eb.attn_norm, eb.mlp, eb.mlp_norm = db.attn, db.attn_norm, db.mlp, db.mlp_norm


class EncoderDecoder(nn.Module):
    """A Transformer encoder-decoder warm-started from BERT / RoBERTa / GPT-2 / BertGeneration checkpoints."""

    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        config = dataclasses.replace(
            config,
            encoder=config.encoder.replace(is_decoder=False, add_cross_attention=False),
            decoder=config.decoder.replace(is_decoder=True, add_cross_attention=True),
        )
        self.config = config
        enc_d, dec_d = config.encoder.hidden_size, config.decoder.hidden_size
        self.encoder = TransformerStack(config.encoder)
        self.decoder = TransformerStack(config.decoder)
        # transformers adds this projection when the hidden sizes differ (`modeling_encoder_decoder.py`,
        # `enc_to_dec_proj`)
        self.enc_to_dec_proj = nn.Linear(enc_d, dec_d) if enc_d != dec_d else None
        self.generation_config: dict[str, Any] = {}  # decoding defaults of a loaded checkpoint
        # parameter names filled from a pre-trained checkpoint side (what optim.freeze_warm_started_steps freezes)
        self.warm_started: list[str] = []
        if self.enc_to_dec_proj is not None:
            self.decoder._init_weights(self.enc_to_dec_proj)
        self._tie()

    def _tie(self) -> None:
        c = self.config
        if c.tie_encoder_decoder:
            _tie_modules(self.encoder, self.decoder)
        elif c.share_embeddings:
            e, d = c.encoder, c.decoder
            if (e.vocab_size, e.hidden_size) != (d.vocab_size, d.hidden_size):
                raise ValueError(
                    f"share_embeddings needs the same vocabulary and hidden size on both sides (encoder "
                    f"{e.vocab_size}x{e.hidden_size}, decoder {d.vocab_size}x{d.hidden_size})"
                )
            self.encoder.embed.word = self.decoder.embed.word
        if c.decoder_start_token_id is not None and c.decoder_start_token_id == c.pad_token_id:
            log.warning(
                "decoder_start_token_id == pad_token_id (%s): the default decoder mask hides position 0; bertgen lets "
                "it attend to itself only (never to the future), but a distinct start token is the safer choice",
                c.pad_token_id,
            )

    # --- construction ------------------------------------------------------------------------------------------
    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder: Side,
        decoder: Side,
        *,
        tie_encoder_decoder: bool = False,
        share_embeddings: bool | None = None,
        decoder_start_token_id: int | None = None,
        pad_token_id: int | None = None,
        eos_token_id: int | None = None,
        encoder_overrides: dict[str, Any] | None = None,
        decoder_overrides: dict[str, Any] | None = None,
        encoder_vocab_size: int | None = None,
        decoder_vocab_size: int | None = None,
        cross_attention_init: str = "random",
        init: str = "all",
        encoder_layers: int | list[int] | None = None,
        decoder_layers: int | list[int] | None = None,
    ) -> EncoderDecoder:
        """Build a paper variant from two checkpoints (folder or hub id) or configs (random init).

        - ``tie_encoder_decoder``: bertShare / robertaShare (one set of weights; the decoder's cross-attention extra).
        - ``share_embeddings``: one word-embedding matrix for both sides. ``None`` = the paper's choice: shared when
          the vocabularies match and the sides come from the same checkpoint or one side is random (Table 1: one
          matrix for rnd2rnd, bert2rnd, rnd2bert, bert2bert, rnd2gpt; two for bert2gpt and roberta2gpt).
        - Cross-attention (and any head part the checkpoint lacks) is newly initialised; the log says which.
          ``cross_attention_init="self_attention"`` instead starts each decoder layer's cross-attention (and its
          LayerNorm) as a copy of that layer's self-attention, after loading. The paper initialises it randomly (§3);
          the copy gives a warm decoder an attention that already matches like with like, which is what copying
          from the source needs (measured in the miniature reproduction, docs/experiments/).
        - ``*_overrides``: config fields to change (e.g. dropout, ``max_position_embeddings`` for random sides).
        - ``*_vocab_size``: the side's tokenizer length (``len(datamodule.tokenizers[0 or 1])``). A side with fewer
          word-embedding rows grows to it (never shrinks): a tokenizer prepared for a task may append a token
          (``Tokenizer.for_text``: GPT-2 gets a ``<::::>`` separator as id 50257). The new rows, and the LM-head
          bias entries, are initialised the BERT way (N(0, initializer_range), bias 0); ``config.vocab_size``
          follows, so checkpoints and the transformers export carry the grown shape.
        - ``init``: what the checkpoint sides warm-start: ``all``, ``all_but_embeddings`` (the embeddings, as
          `hf_weights.EMBEDDING_PARAMS` defines them, stay random; with ``*_vocab_size`` they take exactly the
          tokenizer's size, so a vocabulary other than the checkpoint's works with warm-started layers) or
          ``embeddings_only`` (the layers stay random). ``warm_started`` lists what was loaded.
        - ``encoder_layers`` / ``decoder_layers``: a subset of a checkpoint's layers, a count (the first ``n``) or a
          list of 0-based indices, in the order given; on a random side a count is its depth.
        """
        as_list = lambda x: list(range(x)) if isinstance(x, int) and not isinstance(x, bool) else x  # noqa: E731
        if tie_encoder_decoder and as_list(encoder_layers) != as_list(decoder_layers):
            raise hf_weights.InitOptionError(
                f"encoder_layers={encoder_layers} and decoder_layers={decoder_layers}: tie_encoder_decoder shares one "
                "set of layers, so both must name the same layers"
            )
        enc_cfg, enc_sd, enc_src = _load_side(encoder, "encoder")
        dec_cfg, dec_sd, dec_src = _load_side(decoder, "decoder")
        enc_cfg, enc_sd, grow_enc = _prepare_side(
            "encoder", enc_cfg, enc_sd, encoder, encoder_overrides, encoder_vocab_size, init, encoder_layers
        )
        dec_cfg, dec_sd, grow_dec = _prepare_side(
            "decoder", dec_cfg, dec_sd, decoder, decoder_overrides, decoder_vocab_size, init, decoder_layers
        )
        grow = (grow_enc, grow_dec)
        if share_embeddings is None:
            same_vocab = (enc_cfg.vocab_size, enc_cfg.hidden_size) == (dec_cfg.vocab_size, dec_cfg.hidden_size)
            share_embeddings = same_vocab and (enc_src is None or dec_src is None or enc_src == dec_src)
        config = EncoderDecoderConfig(
            encoder=enc_cfg,
            decoder=dec_cfg,
            decoder_start_token_id=decoder_start_token_id
            if decoder_start_token_id is not None
            else dec_cfg.bos_token_id,
            pad_token_id=pad_token_id if pad_token_id is not None else dec_cfg.pad_token_id,
            eos_token_id=eos_token_id if eos_token_id is not None else dec_cfg.eos_token_id,
            tie_encoder_decoder=tie_encoder_decoder,
            share_embeddings=bool(share_embeddings) and not tie_encoder_decoder,
        )
        for role, cfg, sd, src, grown in (
            ("encoder", enc_cfg, enc_sd, encoder, grow[0]),
            ("decoder", dec_cfg, dec_sd, decoder, grow[1]),
        ):  # shapes against config.json before anything is allocated
            if sd is not None:
                body = hf_weights.detect_body_prefix(cfg, sd, _body_prefixes(cfg, role))
                stack = _meta_stack(cfg.replace(is_decoder=role == "decoder", add_cross_attention=False))
                hf_weights.check_stack(stack, sd, body, role == "decoder", grown, f"{role} checkpoint {src}", init)
        model = cls(config)
        # With shared embeddings the one matrix is loaded by whichever side has a checkpoint (bert2rnd: the encoder's).
        reports = []
        if enc_sd is not None:
            body = hf_weights.detect_body_prefix(enc_cfg, enc_sd, _body_prefixes(enc_cfg, "encoder"))
            rep = hf_weights.load_stack(model.encoder, enc_sd, body, with_head=False, grow_vocab=grow[0], init=init)
            reports.append(("encoder", rep))
        if dec_sd is not None:
            body = hf_weights.detect_body_prefix(dec_cfg, dec_sd, _body_prefixes(dec_cfg, "decoder"))
            rep = hf_weights.load_stack(model.decoder, dec_sd, body, with_head=True, grow_vocab=grow[1], init=init)
            reports.append(("decoder", rep))
        for role, rep in reports:
            rep.log(f"{role} from {encoder if role == 'encoder' else decoder}")
        model.warm_started = warm_started_names(model, {getattr(model, role): rep.loaded for role, rep in reports})
        if cross_attention_init == "self_attention":
            model.init_cross_attention_from_self()
        elif cross_attention_init != "random":
            raise ValueError(f"cross_attention_init must be 'random' or 'self_attention', got {cross_attention_init!r}")
        return model

    @torch.no_grad()
    def init_cross_attention_from_self(self) -> None:
        """Copy each decoder layer's self-attention (query, key, value, output and their LayerNorm) into its
        cross-attention. Needs the memory to have the decoder's width (no ``enc_to_dec_proj``)."""
        if self.enc_to_dec_proj is not None:
            raise ValueError("cross_attention_init='self_attention' needs encoder and decoder of the same hidden size")
        D = self.config.decoder.hidden_size
        for blk in self.decoder.layers:
            qkv, cross = blk.attn.qkv, blk.cross
            cross.q.weight.copy_(qkv.weight[:D])
            cross.q.bias.copy_(qkv.bias[:D])
            cross.kv.weight.copy_(qkv.weight[D:])
            cross.kv.bias.copy_(qkv.bias[D:])
            cross.out.load_state_dict(blk.attn.out.state_dict())
            blk.cross_norm.load_state_dict(blk.attn_norm.state_dict())
        log.info("decoder cross-attention initialised from each layer's self-attention")

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, **config_overrides) -> EncoderDecoder:
        """Load an `EncoderDecoderModel` folder (transformers' or ours) or hub id; ``config_overrides`` apply to the
        top-level config (e.g. ``decoder_start_token_id``)."""
        folder = fetch_folder(path_or_id, what="encoder-decoder checkpoint")
        config = read_model_config(folder)
        if not isinstance(config, EncoderDecoderConfig):
            raise ModelFileError(f"{folder / 'config.json'}: model_type {config.family!r}, not an encoder-decoder")
        for k, v in config_overrides.items():
            if not hasattr(config, k):
                raise AttributeError(f"EncoderDecoderConfig has no field {k!r}")
            setattr(config, k, v)
        sd = hf_weights.read_weights(folder)
        for role, cfg in (("encoder", config.encoder), ("decoder", config.decoder)):  # before any allocation
            side = {k[len(role) + 1 :]: v for k, v in sd.items() if k.startswith(role + ".")}
            body = hf_weights.DECODER_BODY_PREFIX[cfg.family] if role == "decoder" else ""
            stack = _meta_stack(cfg.replace(add_cross_attention=False))
            hf_weights.check_stack(stack, side, body, role == "decoder", where=f"{folder} ({role})")
        model = cls(config)
        model._load_hf_state(sd).log(f"EncoderDecoder from {path_or_id}")
        model.generation_config = read_generation_config(folder, config.extra)
        return model

    def _load_hf_state(self, sd: dict[str, torch.Tensor]) -> hf_weights.LoadReport:
        enc_sd = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
        dec_sd = {k[len("decoder.") :]: v for k, v in sd.items() if k.startswith("decoder.")}
        rest = {k: v for k, v in sd.items() if not k.startswith(("encoder.", "decoder."))}
        dec_body = hf_weights.DECODER_BODY_PREFIX[self.config.decoder.family]
        enc_rep = hf_weights.load_stack(self.encoder, enc_sd, "", with_head=False)
        dec_rep = hf_weights.load_stack(self.decoder, dec_sd, dec_body, with_head=True)  # decoder wins for tied weights
        # A tied/shared encoder parameter is not missing when the decoder's copy was loaded (transformers saves
        # only the decoder copy of tied weights).
        dec_params = dict(self.decoder.named_parameters(remove_duplicate=False))
        dec_loaded = {id(dec_params[k]) for k in dec_params if k not in dec_rep.missing}
        enc_params = dict(self.encoder.named_parameters(remove_duplicate=False))
        enc_rep.missing = [k for k in enc_rep.missing if id(enc_params[k]) not in dec_loaded]
        enc_rep.unexpected = [k for k in enc_rep.unexpected if not k.startswith("pooler.")]
        report = hf_weights.LoadReport()
        report.extend(enc_rep, "encoder.")
        report.extend(dec_rep, "decoder.")
        if self.enc_to_dec_proj is not None:
            for name in ("weight", "bias"):
                key = f"enc_to_dec_proj.{name}"
                if key in rest:
                    with torch.no_grad():
                        getattr(self.enc_to_dec_proj, name).copy_(rest.pop(key))
                else:
                    report.missing.append(key)
        report.unexpected += list(rest)
        return report

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        """This model's weights under transformers' `EncoderDecoderModel` names."""
        dec_body = hf_weights.DECODER_BODY_PREFIX[self.config.decoder.family]
        enc = hf_weights.export_stack(self.encoder, "", with_head=False, add_pooler=True)
        if self.config.tie_encoder_decoder:  # transformers re-ties the encoder to the decoder on load
            enc = {k: v for k, v in enc.items() if k.startswith("pooler.")}
        out = {"encoder." + k: v for k, v in enc.items()}
        out.update(
            {"decoder." + k: v for k, v in hf_weights.export_stack(self.decoder, dec_body, with_head=True).items()}
        )
        if self.enc_to_dec_proj is not None:
            out["enc_to_dec_proj.weight"] = self.enc_to_dec_proj.weight.detach().clone()
            out["enc_to_dec_proj.bias"] = self.enc_to_dec_proj.bias.detach().clone()
        return out

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + model.safetensors in transformers' `EncoderDecoderModel` layout."""
        save_folder(
            directory, self.config.to_hf_dict(), "EncoderDecoderModel", self.hf_state_dict(), self.generation_config
        )

    # --- forward -----------------------------------------------------------------------------------------------
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder(input_ids, attention_mask)
        return self.enc_to_dec_proj(h) if self.enc_to_dec_proj is not None else h

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decoder logits (B, T, V). With a ``cache`` only the new tokens are passed; ``memory`` may have fewer rows
        than ``decoder_input_ids`` when several hypotheses share a source (rows grouped by source)."""
        h = self.decoder(
            decoder_input_ids, decoder_attention_mask, memory, memory_mask, position_ids=position_ids, cache=cache
        )
        return self.decoder.logits(h)

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Greedy / beam search; see `bertgen.model.generation.generate`."""
        from .generation import generate

        return generate(self, input_ids, attention_mask, **kwargs)

    def generate_target(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        """The generated target of each source, (B, L) led by the decoder start token: the same layout as
        `DecoderOnlyLM.generate_target`, so one function turns both into text (`bertgen.decoding`)."""
        return self.generate(input_ids, attention_mask, **kwargs)

    def shift_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        encoder_hidden_states: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        return_logits: bool = True,
    ) -> ModelOutput:
        """``return_logits=False`` (training) computes the loss from the labelled positions only and returns no
        logits: same loss, less time and memory."""
        if encoder_hidden_states is None:
            if input_ids is None:
                raise ValueError("pass input_ids or encoder_hidden_states")
            encoder_hidden_states = self.encode(input_ids, attention_mask)
        if labels is not None:
            if decoder_input_ids is None:
                decoder_input_ids = self.shift_labels(labels)  # shifted here, once; never pass shifted labels
                if decoder_attention_mask is None:
                    # Visible decoder inputs: the start token and every real label before the last. transformers
                    # uses `decoder_input_ids != pad`, which is the same unless the start (or a real) token equals
                    # pad - e.g. GPT-2 decoders whose start = eos = pad - where it would hide the start token.
                    decoder_attention_mask = torch.ones_like(labels)
                    decoder_attention_mask[:, 1:] = labels[:, :-1] != -100
            elif decoder_input_ids is labels or (
                decoder_input_ids.shape == labels.shape and torch.equal(decoder_input_ids, labels)
            ):
                warnings.warn(
                    "decoder_input_ids equal labels: every position is scored against its own input token, which "
                    "trains a copy model. Pass labels alone; the model shifts them right itself.",
                    stacklevel=2,
                )
        elif decoder_input_ids is None:
            raise ValueError("pass decoder_input_ids or labels")
        h = self.decoder(decoder_input_ids, decoder_attention_mask, encoder_hidden_states, attention_mask)
        if not return_logits and labels is not None:
            loss = labelled_loss(self.decoder, h, labels, label_smoothing)
            return ModelOutput(logits=None, loss=loss, encoder_hidden_states=encoder_hidden_states)
        logits = self.decoder.logits(h)
        loss = lm_loss(logits, labels, label_smoothing) if labels is not None else None
        return ModelOutput(logits=logits, loss=loss, encoder_hidden_states=encoder_hidden_states)


class DecoderOnlyLM(nn.Module):
    """The paper's `gpt`: a GPT-2 (or any family) causal LM reading the source as a prefix; loss only on the target."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config.replace(is_decoder=True, add_cross_attention=False)
        self.decoder = TransformerStack(self.config)
        self.generation_config: dict[str, Any] = {}
        self.warm_started: list[str] = []  # parameter names filled from the checkpoint (see EncoderDecoder)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        *,
        vocab_size: int | None = None,
        init: str = "all",
        layers: int | list[int] | None = None,
        **overrides,
    ) -> DecoderOnlyLM:
        """Load a causal-LM folder or hub id; ``vocab_size`` (the tokenizer's length), ``init`` and ``layers`` (a
        count or 0-based indices of the checkpoint's layers) as in `EncoderDecoder.from_encoder_decoder_pretrained`;
        ``overrides`` are config fields."""
        folder = fetch_folder(path_or_id, what="decoder checkpoint")
        checkpoint_cfg = read_model_config(folder)
        if isinstance(checkpoint_cfg, EncoderDecoderConfig):
            raise ModelFileError(f"{folder}: an encoder-decoder, not a decoder; load it with EncoderDecoder")
        sd = hf_weights.read_weights(folder)
        cfg, sd, grow = _prepare_side(
            "decoder_only", checkpoint_cfg, sd, path_or_id, overrides, vocab_size, init, layers
        )
        body = hf_weights.detect_body_prefix(cfg, sd, (hf_weights.DECODER_BODY_PREFIX[cfg.family], ""))
        hf_weights.check_stack(_meta_stack(cfg.replace(is_decoder=True)), sd, body, True, grow, str(folder), init)
        model = cls(cfg)
        rep = hf_weights.load_stack(model.decoder, sd, body, with_head=True, grow_vocab=grow, init=init)
        rep.log(f"DecoderOnlyLM from {path_or_id}")
        model.warm_started = warm_started_names(model, {model.decoder: rep.loaded})
        generation = read_generation_config(folder, cfg.extra)
        if cfg.vocab_size != checkpoint_cfg.vocab_size and init == "all_but_embeddings":
            # a new vocabulary: the checkpoint's token ids mean nothing in it
            generation = {k: v for k, v in generation.items() if not k.endswith("token_id")}
        model.generation_config = generation
        return model

    def hf_state_dict(self) -> dict[str, torch.Tensor]:
        return hf_weights.export_stack(self.decoder, hf_weights.DECODER_BODY_PREFIX[self.config.family], with_head=True)

    def save_pretrained(self, directory: str | Path) -> None:
        """config.json + model.safetensors in the causal-LM layout (`GPT2LMHeadModel` for gpt2)."""
        arch = {
            "gpt2": "GPT2LMHeadModel",
            "bert": "BertLMHeadModel",
            "roberta": "RobertaForCausalLM",
            "bert-generation": "BertGenerationDecoder",
        }[self.config.family]
        save_folder(directory, self.config.to_hf_dict(), arch, self.hf_state_dict(), self.generation_config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        label_smoothing: float = 0.0,
        return_logits: bool = True,
    ) -> ModelOutput:
        """Logits (B, T, V); with ``labels`` (same length as ``input_ids``, -100 = no loss) the next-token loss.
        ``return_logits=False`` (training) projects only the positions that predict a label."""
        h = self.decoder(input_ids, attention_mask, position_ids=position_ids, cache=cache)
        if not return_logits and labels is not None:
            return ModelOutput(logits=None, loss=labelled_loss(self.decoder, h[:, :-1], labels[:, 1:], label_smoothing))
        logits = self.decoder.logits(h)
        loss = None
        if labels is not None:
            loss = lm_loss(logits[:, :-1], labels[:, 1:], label_smoothing)
        return ModelOutput(logits=logits, loss=loss)

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Continue each (left- or right-padded) source prefix; returns only the generated part. See
        `bertgen.model.generation.generate`."""
        from .generation import generate

        return generate(self, input_ids, attention_mask, **kwargs)

    @property
    def sep_token_id(self) -> int | None:
        """The token between source and target ("source <sep> target"). It is saved with the model in
        ``generation_config.json``; models saved without it used the eos token, as bertgen's training does."""
        sep = self.generation_config.get("sep_token_id")
        return sep if sep is not None else self.config.eos_token_id

    def source_prompt(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded sources -> right-padded prompts ``source <sep>``: the prefix the target follows."""
        sep = self.sep_token_id
        if sep is None:
            return input_ids, attention_mask
        B = input_ids.shape[0]
        lens = attention_mask.long().sum(1)[:, None]
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else sep
        ids = torch.cat([input_ids, input_ids.new_full((B, 1), pad)], 1).scatter_(1, lens, sep)
        mask = torch.cat([attention_mask, attention_mask.new_zeros(B, 1)], 1).scatter_(1, lens, 1)
        return ids, mask

    def generate_target(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        """Generate the target of each (right-padded) source from the prompt ``source <sep>``; (B, L) led by one
        ``<sep>`` column, the layout of `EncoderDecoder.generate_target`."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        ids, mask = self.source_prompt(input_ids, attention_mask)
        out = self.generate(ids, mask, **kwargs)
        scores = None
        if isinstance(out, tuple):  # return_scores=True
            out, scores = out
        lead = self.sep_token_id if self.sep_token_id is not None else self.config.pad_token_id
        out = torch.cat([out.new_full((out.shape[0], 1), lead if lead is not None else 0), out], 1)
        return out if scores is None else (out, scores)

    @staticmethod
    def prefix_lm_batch(
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        pad_token_id: int,
        sep_token_id: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Join each source (right-padded, ``attention_mask``) and target (``labels``, -100-padded) into one
        right-padded sequence ``source [sep] target``; labels cover only the target tokens."""
        B, S = input_ids.shape
        src_len = attention_mask.long().sum(1)
        if sep_token_id is not None:
            input_ids = torch.cat([input_ids, input_ids.new_full((B, 1), pad_token_id)], dim=1)
            input_ids.scatter_(1, src_len[:, None], sep_token_id)
            src_len = src_len + 1
            S += 1
        tgt_len = (labels != -100).long().sum(1)
        L = int((src_len + tgt_len).max())
        pos = torch.arange(L, device=input_ids.device)[None, :]
        in_src = pos < src_len[:, None]
        in_tgt = (~in_src) & (pos < (src_len + tgt_len)[:, None])
        src_tok = input_ids.gather(1, pos.clamp(max=S - 1).expand(B, L))
        tgt_idx = (pos - src_len[:, None]).clamp(0, labels.shape[1] - 1)
        tgt_tok = labels.gather(1, tgt_idx)
        ids = torch.where(in_src, src_tok, torch.where(in_tgt, tgt_tok, torch.full_like(src_tok, pad_token_id)))
        return {
            "input_ids": ids,
            "attention_mask": (in_src | in_tgt).long(),
            "labels": torch.where(in_tgt, tgt_tok, torch.full_like(tgt_tok, -100)),
        }


GENERATION_KEYS = (
    "max_length",
    "max_new_tokens",
    "min_length",
    "num_beams",
    "length_penalty",
    "early_stopping",
    "no_repeat_ngram_size",
    "decoder_start_token_id",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "length_penalty_style",
    "sep_token_id",
)


def read_generation_config(folder: Path, config_extra: dict[str, Any]) -> dict[str, Any]:
    """Decoding defaults of a checkpoint: ``generation_config.json`` if present, else the legacy fields that
    older checkpoints carry in config.json."""
    path = Path(folder) / "generation_config.json"
    src = read_json(path) if path.is_file() else config_extra
    return {k: src[k] for k in GENERATION_KEYS if src.get(k) is not None}


def save_folder(
    directory: str | Path,
    config: dict[str, Any],
    architecture: str,
    tensors: dict[str, torch.Tensor],
    generation: dict[str, Any],
) -> None:
    """config.json + model.safetensors (+ generation_config.json with the decoding defaults, when there are any)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "config.json", {**config, "architectures": [architecture]})
    hf_weights.write_weights(directory, tensors)
    if generation:
        write_json(directory / "generation_config.json", dict(generation))


def load_model(path_or_id: str | Path) -> EncoderDecoder | DecoderOnlyLM:
    """Load whatever a folder holds: an encoder-decoder, or a causal LM (the `gpt` variant)."""
    folder = fetch_folder(path_or_id)
    if isinstance(read_model_config(folder), EncoderDecoderConfig):
        return EncoderDecoder.from_pretrained(folder)
    return DecoderOnlyLM.from_pretrained(folder)

"""What one side of an encoder-decoder (or a decoder-only LM) takes from its checkpoint: the folder's config and
tensors, the layer subset, the vocabulary (grown, refused, or new embeddings), and the names of the parameters that
were warm-started (`EncoderDecoder.from_encoder_decoder_pretrained`, `DecoderOnlyLM.from_pretrained`)."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn as nn

from ..hub import fetch_folder
from . import hf_weights
from .config import EncoderDecoderConfig, ModelConfig, ModelFileError, read_model_config
from .transformer import TransformerStack

log = logging.getLogger("bertgen.model")


def _load_side(spec, role: str) -> tuple[ModelConfig, dict[str, torch.Tensor] | None, str | None]:
    """(config, HF tensors or None for random init, resolved folder) for one side of an encoder-decoder."""
    if isinstance(spec, (ModelConfig, dict)):
        return ModelConfig.coerce(spec), None, None
    folder = fetch_folder(spec, what=f"{role} checkpoint")
    cfg = read_model_config(folder)
    if isinstance(cfg, EncoderDecoderConfig):
        raise ModelFileError(
            f"{role} checkpoint {spec} is a whole encoder-decoder model, not one side of one; start from it with "
            "EncoderDecoder.from_pretrained (train.py: +model.pretrained=<folder>)"
        )
    return cfg, hf_weights.read_weights(folder), str(folder.resolve())


def _meta_stack(cfg: ModelConfig) -> TransformerStack:
    with torch.device("meta"):
        return TransformerStack(cfg)


def _grown(cfg: ModelConfig, vocab_size: int | None) -> ModelConfig:
    """``cfg`` with at least ``vocab_size`` word-embedding rows (a tokenizer that appended tokens); never smaller."""
    if vocab_size is None or int(vocab_size) <= cfg.vocab_size:
        return cfg
    return cfg.replace(vocab_size=int(vocab_size))


def _prepare_side(
    role: str,
    cfg: ModelConfig,
    sd: dict[str, torch.Tensor] | None,
    src,
    overrides: dict[str, Any] | None,
    vocab_size: int | None,
    init: str,
    layers: int | list[int] | None,
) -> tuple[ModelConfig, dict[str, torch.Tensor] | None, bool]:
    """One side's (config, checkpoint tensors, grow_vocab) after ``overrides``, the layer subset and the vocabulary.

    A random side takes a layer count as its depth; a checkpoint side takes a count (its first layers) or a list of
    0-based layer indices. ``init="all_but_embeddings"`` with a tokenizer length gives new embeddings of exactly that
    size (a vocabulary that is not the checkpoint's); otherwise a tokenizer smaller than the checkpoint's vocabulary
    is refused (its ids would index embeddings of other tokens) and a larger one grows the embeddings."""
    hf_weights.init_includes(init, "")  # a bad init fails here, named
    cfg = cfg.replace(**(overrides or {}))
    role = "decoder" if role == "decoder_only" else role
    what = f"{role}_layers"
    if sd is None:
        if layers is not None:
            if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
                raise hf_weights.InitOptionError(
                    f"{what}={layers!r}: the {role} is random, so there are no checkpoint layers to pick; "
                    "give its number of layers (a count) or nothing"
                )
            cfg = cfg.replace(num_hidden_layers=layers)
        return _grown(cfg, vocab_size), None, False
    picked = hf_weights.layer_indices(layers, cfg.num_hidden_layers, what)
    if picked is not None:
        body = hf_weights.detect_body_prefix(cfg, sd, _body_prefixes(cfg, role))
        sd = hf_weights.select_layers(sd, cfg, body, picked)
        cfg = cfg.replace(num_hidden_layers=len(picked))
        log.info("%s from %s: checkpoint layers %s (0-based)", role, src, picked)
    if vocab_size is None:
        return cfg, sd, False
    if init == "all_but_embeddings":
        return cfg.replace(vocab_size=int(vocab_size)), sd, False
    if int(vocab_size) < cfg.vocab_size:
        raise hf_weights.InitOptionError(
            f"init={init}: the {role} tokenizer has {vocab_size} tokens, fewer than the {cfg.vocab_size} embedding "
            f"rows of the checkpoint {src}: not the checkpoint's vocabulary, so its embeddings would stand for other "
            "tokens. init=all_but_embeddings starts new embeddings of the tokenizer's size (warm-started layers)"
        )
    grown = _grown(cfg, vocab_size)
    return grown, sd, grown.vocab_size > cfg.vocab_size


def _body_prefixes(cfg: ModelConfig, role: str) -> tuple[str, ...]:
    prefixes = ("", hf_weights.DECODER_BODY_PREFIX[cfg.family])
    return prefixes if role == "encoder" else prefixes[::-1]


def warm_started_names(model: nn.Module, loaded: dict[nn.Module, list[str]]) -> list[str]:
    """The model's parameter names (one per shared parameter) that ``loaded`` (stack -> its loaded names) filled."""
    ids = set()
    for stack, names in loaded.items():
        params = dict(stack.named_parameters(remove_duplicate=False))
        ids.update(id(params[n]) for n in names)
    return [n for n, p in model.named_parameters() if id(p) in ids]

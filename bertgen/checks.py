"""Start-up checks that a model, its tokenizers and the data settings fit together, each failing with one message
before any data is read or any step is trained (a mismatch otherwise shows up as garbage scores, an IndexError in
the embedding, or a crash at the first long batch)."""

from __future__ import annotations

from typing import Any

from bertgen.errors import ConfigError

# Models may pad their vocabulary past the tokenizer's (to a multiple of 8, 64 or 128, for fast matrix kernels).
VOCAB_PADDING = 128


def _positions(cfg) -> int:
    return cfg.max_position_embeddings - cfg.position_offset


def check_vocabulary(cfg, tokenizer, side: str, where: str) -> None:
    size = len(tokenizer)
    if size > cfg.vocab_size:
        raise ConfigError(
            f"{where}: the {side} tokenizer has {size} tokens but the model's {side} vocabulary has "
            f"{cfg.vocab_size} rows: ids >= {cfg.vocab_size} have no embedding; use the tokenizer the "
            f"model was trained with"
        )
    if cfg.vocab_size - size >= VOCAB_PADDING:
        raise ConfigError(
            f"{where}: the {side} tokenizer has {size} tokens but the model's {side} vocabulary has "
            f"{cfg.vocab_size} rows: not the tokenizer this model was trained with (its ids would "
            f"mean other tokens); pass the model's own tokenizer"
        )


def check_model_and_data(
    model: Any,
    tokenizer: Any,
    target_tokenizer: Any,
    *,
    max_source_length: int,
    max_target_length: int | None,
    where: str = "model",
) -> None:
    """Vocabulary sizes, special-token ids and position limits of ``model`` against its tokenizers and the task's
    length budgets (``task_options.max_source_length`` / ``max_target_length``; None when targets are not fed to
    the model, as in evaluation, where the decoding length is checked with the decoding settings)."""
    target_tokenizer = target_tokenizer or tokenizer
    if hasattr(model, "encode"):
        enc, dec = model.config.encoder, model.config.decoder
        check_vocabulary(enc, tokenizer, "source", where)
        check_vocabulary(dec, target_tokenizer, "target", where)
        if max_source_length > _positions(enc):
            raise ConfigError(
                f"{where}: task_options.max_source_length={max_source_length} exceeds the encoder's "
                f"{_positions(enc)} positions; lower it (e.g. +task_options.max_source_length="
                f"{_positions(enc)})"
            )
        if max_target_length is not None and max_target_length + 1 > _positions(
            dec
        ):  # the decoder reads the start token first
            raise ConfigError(
                f"{where}: task_options.max_target_length={max_target_length} (+ the start token) "
                f"exceeds the decoder's {_positions(dec)} positions; lower it"
            )
        special = {
            "decoder_start_token_id": model.config.decoder_start_token_id,
            "eos_token_id": model.config.eos_token_id,
            "pad_token_id": model.config.pad_token_id,
        }
    else:
        dec = model.config
        check_vocabulary(dec, target_tokenizer, "target", where)
        total = max_source_length + 1 + (max_target_length or 0)  # "source <sep> target"
        if total > _positions(dec):
            raise ConfigError(
                f"{where}: max_source_length {max_source_length} + separator + max_target_length "
                f"{max_target_length or 0} = {total} exceeds the decoder-only model's {_positions(dec)} "
                f"positions; lower task_options.max_source_length or max_target_length"
            )
        special = {
            "eos_token_id": dec.eos_token_id,
            "pad_token_id": dec.pad_token_id,
            "sep_token_id": getattr(model, "sep_token_id", None),
        }
    for name, value in special.items():
        if value is not None and not 0 <= int(value) < len(target_tokenizer):
            raise ConfigError(f"{where}: {name}={value} is outside the target tokenizer's {len(target_tokenizer)} ids")

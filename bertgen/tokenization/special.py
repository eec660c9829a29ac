"""The special tokens of a run, resolved once: which id starts, ends and pads each side.

BERT-style WordPiece vocabularies have no bos/eos: [CLS]/[SEP] play those roles (as the Hugging Face warm-starting
blog post "Leveraging Pre-trained Language Model Checkpoints for Encoder-Decoder Models" sets
``decoder_start_token_id=cls`` and ``eos_token_id=sep``). GPT-2 has no pad token: it pads with its end-of-text token
(padding is masked and never scored), and a decoder-only model reads "source <sep> target" with the eos as the
separator (GPT-2 has no separator token). These rules live here only; the DataModule resolves a `SpecialTokens`
from its tokenizers as prepared for the task and hands it to the data encoding, the collator and the model build.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bertgen.errors import ConfigError

# A role -> the tokenizer attribute that plays it, else its BERT-style stand-in.
_ROLES = {"bos": ("bos_token_id", "cls_token_id"), "eos": ("eos_token_id", "sep_token_id")}


def special_id(tok: Any, role: str, what: str) -> int:
    """The tokenizer's ``role`` (``bos`` / ``eos``) id, else its BERT-style stand-in ([CLS] / [SEP]); a `ConfigError`
    naming ``what`` needs it when the tokenizer has neither."""
    for name in _ROLES[role]:
        value = getattr(tok, name, None)
        if value is not None:
            return int(value)
    own, stand_in = (n.removesuffix("_token_id") for n in _ROLES[role])
    raise ConfigError(
        f"{what} needs the tokenizer's {own} (or {stand_in}) token, but {type(tok).__name__} has neither; set "
        f"{what}=false or use a tokenizer that defines it"
    )


def _optional(tok: Any, role: str) -> int | None:
    return next((int(v) for n in _ROLES[role] if (v := getattr(tok, n, None)) is not None), None)


@dataclass(frozen=True)
class SpecialTokens:
    """The ids a run's data, model and decoding agree on.

    ``source_bos`` / ``source_eos``: what wraps a source when the task asks (None: the source tokenizer has none);
    ``source_pad``: source padding; ``decoder_start`` / ``eos`` / ``pad``: the decoder's start, end and padding;
    ``sep``: the "source <sep> target" separator of a decoder-only model (the target's eos)."""

    source_bos: int | None
    source_eos: int | None
    source_pad: int
    decoder_start: int
    eos: int
    pad: int
    sep: int

    @classmethod
    def from_tokenizers(cls, source: Any, target: Any | None = None) -> SpecialTokens:
        """From the (source, target) tokenizers as prepared for the task; the target defaults to the source."""
        target = source if target is None else target
        start, eos = _optional(target, "bos"), _optional(target, "eos")
        if start is None or eos is None:
            raise ConfigError(f"the target tokenizer has no start/end tokens (bos/cls, eos/sep): {target!r}")
        src_eos = _optional(source, "eos")
        src_pad = source.pad_token_id if source.pad_token_id is not None else (src_eos or 0)  # masked out anyway
        pad = target.pad_token_id if target.pad_token_id is not None else eos
        return cls(_optional(source, "bos"), src_eos, int(src_pad), start, eos, int(pad), eos)

    def model_ids(self, decoder_only: bool = False) -> dict[str, int]:
        """The ids a model is built with (``decoder_start_token_id``, ``eos_token_id``, ``pad_token_id``; and
        ``sep_token_id`` for a decoder-only model), as stored in a training checkpoint's hyperparameters."""
        out = {"decoder_start_token_id": self.decoder_start, "eos_token_id": self.eos, "pad_token_id": self.pad}
        if decoder_only:
            out["sep_token_id"] = self.sep
        return out

    def to_dict(self) -> dict[str, int | None]:
        return asdict(self)

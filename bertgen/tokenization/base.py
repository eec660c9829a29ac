"""The `Tokenizer` interface and what every backend shares: special-token defaults per family, file names,
WordPiece pre-tokenizer tables, `TokenizerNotFoundError` and small helpers."""

from __future__ import annotations

import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bertgen.errors import BertgenError

if TYPE_CHECKING:
    from bertgen.text import TextConvention

# HF's SpecialTokensMixin order: special tokens missing from a vocabulary are appended as added tokens in this order.
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

SPIECE, TOKENIZER_JSON, VOCAB_TXT, VOCAB_JSON, MERGES_TXT = (
    "spiece.model",
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)
CONFIG_JSON, SPECIAL_MAP_JSON, ADDED_TOKENS_JSON = (
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)
_HUB_PATTERNS = [
    SPIECE,
    TOKENIZER_JSON,
    VOCAB_TXT,
    VOCAB_JSON,
    MERGES_TXT,
    CONFIG_JSON,
    SPECIAL_MAP_JSON,
    ADDED_TOKENS_JSON,
]

# Default special tokens per family, as the HF slow tokenizers define them (transformers 4.57).
BERT_GENERATION_SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "sep_token": "<::::>",
}
BERT_SPECIALS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}
ROBERTA_SPECIALS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}
GPT2_SPECIALS = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
# RobertaTokenizer makes <mask> eat the space before it ("Hello <mask>" == "Hello<mask>").
_LSTRIP_TOKENS = {"roberta": {"<mask>"}}


class TokenizerNotFoundError(BertgenError, FileNotFoundError):
    """A folder or file that holds no vocabulary this module can read."""


class TokenizerFileError(BertgenError, ValueError):
    """A tokenizer file that is malformed (bad JSON, a broken vocabulary): the message names the file."""


# How `Tokenizer.for_text` pre-tokenises WordPiece text (the other families keep the text's spacing by themselves):
#   standard: the tokenizer's own (BERT: split on whitespace and punctuation), as transformers does;
#   exact:    split on whitespace only, so that a piece glued to the one before it (``'s``, ``mid-tempo``, ``U.S.``)
#             is a ``##`` continuation and decoding restores every space and every join;
#   digits:   exact only where punctuation touches a digit (``1,000``, ``2019.``, ``5-year``), standard elsewhere:
#             the only joins mteval-v14 BLEU tokenisation can see.
SPACINGS = ("standard", "exact", "digits")
# BERT's punctuation (``tokenizers`` BertPreTokenizer / HF ``_is_punctuation``): ASCII symbols and Unicode P*.
_BERT_PUNCT = r"[!-/:-@\[-`{-~\p{P}]"
_PRE_TOKENIZERS = {
    "exact": {"type": "WhitespaceSplit"},
    "digits": {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "WhitespaceSplit"},
            {
                "type": "Split",
                "pattern": {"Regex": rf"(?<![0-9]){_BERT_PUNCT}(?![0-9])"},
                "behavior": "Isolated",
                "invert": False,
            },
        ],
    },
}
# Vocabulary rows that no text ever maps to, in the order they are taken for an atomic token (`Tokenizer.for_text`):
# BERT's ``[unusedN]`` and fairseq/RoBERTa's ``madeupwordNNNN``.
_RESERVED_ROW = re.compile(r"\[unused\d+\]|madeupword\d+")


def _check_spacing(spacing: str) -> None:
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}; got {spacing!r}")


def _reserved_row(vocab: dict[str, int], taken: set[int]) -> int | None:
    """The lowest reserved id of a token -> id vocabulary: a ``[unusedN]`` / ``madeupwordNNNN`` entry, else an id
    below the largest one that has no token (the RoBERTa vocab.json of some releases lacks its madeupwords)."""
    named = [i for t, i in vocab.items() if _RESERVED_ROW.fullmatch(t) and i not in taken]
    if named:
        return min(named)
    used = set(vocab.values()) | taken
    return next((i for i in range(max(vocab.values(), default=-1)) if i not in used), None)


def _clean_up_tokenization(text: str) -> str:
    """HF's ``clean_up_tokenization``: undo spaces before English punctuation and contractions."""
    for old, new in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(old, new)
    return text


def _as_id_list(ids: Any) -> list[int]:
    """Accept a list, tuple, numpy array or torch tensor of ids (generation output) and return Python ints."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    return [int(i) for i in ids]


class Tokenizer(ABC):
    """Text <-> ids for one vocabulary, with HF-compatible special tokens and decoding.

    Instances are independent (no globals), picklable, and safe to use for source and target at the same time.
    """

    kind: str  # "sentencepiece" | "wordpiece" | "bpe"
    # The task text convention this tokenizer was prepared for (`prepared_for`); None: a tokenizer as loaded.
    convention: TextConvention | None = None

    def __init__(self, specials: dict[str, str | None], clean_up_tokenization_spaces: bool) -> None:
        self.special_tokens: dict[str, str | None] = {k: specials.get(k) for k in SPECIAL_KEYS}
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces

    # ---- vocabulary -------------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of entries in the vocabulary including added special tokens (== ``len(hf_tokenizer)``)."""

    @abstractmethod
    def get_vocab(self) -> dict[str, int]:
        """token -> id for the whole vocabulary, added tokens included."""

    @abstractmethod
    def token_to_id(self, token: str) -> int | None:
        """Id of ``token``, or None if it is not in the vocabulary."""

    @abstractmethod
    def id_to_token(self, token_id: int) -> str:
        """Token string of ``token_id``; raises ValueError for an id outside the vocabulary."""

    def __len__(self) -> int:
        return self.vocab_size

    def _special_id(self, key: str) -> int | None:
        # Cached: collate functions read pad_token_id per batch, and the vocabulary never changes after __init__.
        cache = self.__dict__.setdefault("_special_id_cache", {})
        if key not in cache:
            token = self.special_tokens.get(key)
            cache[key] = None if token is None else self.token_to_id(token)
        return cache[key]

    @property
    def pad_token_id(self) -> int | None:
        return self._special_id("pad_token")

    @property
    def bos_token_id(self) -> int | None:
        return self._special_id("bos_token")

    @property
    def eos_token_id(self) -> int | None:
        return self._special_id("eos_token")

    @property
    def unk_token_id(self) -> int | None:
        return self._special_id("unk_token")

    @property
    def sep_token_id(self) -> int | None:
        return self._special_id("sep_token")

    @property
    def cls_token_id(self) -> int | None:
        return self._special_id("cls_token")

    @property
    def mask_token_id(self) -> int | None:
        return self._special_id("mask_token")

    @property
    def all_special_tokens(self) -> list[str]:
        """Distinct special token strings in HF's order (bos, eos, unk, sep, pad, cls, mask)."""
        return list(dict.fromkeys(t for t in self.special_tokens.values() if t is not None))

    @property
    def all_special_ids(self) -> list[int]:
        ids = (self.token_to_id(t) for t in self.all_special_tokens)
        return [i for i in ids if i is not None]

    # ---- encode / decode ------------------------------------------------------------------------------------
    @abstractmethod
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Ids of ``text``; ``add_special_tokens`` adds what the HF tokenizer of this family adds
        (BERT ``[CLS] x [SEP]``, RoBERTa ``<s> x </s>``, GPT-2 and BertGeneration nothing)."""

    def batch_encode(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        return [self.encode(t, add_special_tokens) for t in texts]

    @abstractmethod
    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        """Text of ``ids`` exactly as HF's ``decode(ids, skip_special_tokens=...)`` gives it."""

    def batch_decode(self, seqs: Any, skip_special_tokens: bool = True) -> list[str]:
        if hasattr(seqs, "tolist"):
            seqs = seqs.tolist()
        return [self.decode(s, skip_special_tokens) for s in seqs]

    # ---- task text conventions --------------------------------------------------------------------------------
    @property
    @abstractmethod
    def atomic_tokens(self) -> tuple[str, ...]:
        """Token strings that are never split (special tokens and added tokens)."""

    @abstractmethod
    def for_text(
        self, *, atomic_tokens: Sequence[str] = (), spacing: str = "standard", clean_up: bool | None = None
    ) -> Tokenizer:
        """A copy of this tokenizer set up for a task's text (``bertgen.text.TextConvention.prepare``); never
        changes ``self``. Applying it twice gives the same tokenizer.

        ``atomic_tokens``: strings that become one token that never splits, on encoding and decoding (the split
        ``<::::>``). Each takes, in this order: the id it already has; a reserved row of the vocabulary (BERT's first
        free ``[unusedN]``, RoBERTa's ``madeupwordNNNN`` or an id the vocabulary file leaves without a token), so
        the model's embedding matrix keeps its size; else a new id after the vocabulary (GPT-2), for which a
        warm-started model grows one row (``EncoderDecoder.from_encoder_decoder_pretrained(...,
        decoder_vocab_size=len(tokenizer))``).
        ``spacing``: how WordPiece pre-tokenises (``SPACINGS``); the other families are lossless already.
        ``clean_up``: HF's ``clean_up_tokenization_spaces`` after decoding; None keeps this tokenizer's own
        (for WordPiece, including the clean-up its ``tokenizer.json`` decoder does).
        """

    def prepared_for(self, convention: TextConvention) -> Tokenizer:
        """`for_text` with a task's convention (``bertgen.text.TextConvention``), which the result carries as its
        ``convention``: what decoding reads to put text in the task's form."""
        prepared = self.for_text(
            atomic_tokens=convention.atomic_tokens, spacing=convention.spacing, clean_up=convention.clean_up
        )
        prepared.convention = convention
        return prepared

    def _check_ids(self, ids: list[int]) -> None:
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if i < 0 or i >= self.vocab_size)
            hint = " (-100 is the ignored-label id: replace it by the pad id before decoding)" if bad == -100 else ""
            raise ValueError(f"token id {bad} is outside the {self.kind} vocabulary of size {self.vocab_size}{hint}")

    # ---- persistence ----------------------------------------------------------------------------------------
    @abstractmethod
    def save(self, directory: str | os.PathLike) -> None:
        """Write files that `load_tokenizer` and transformers' ``AutoTokenizer.from_pretrained`` read back."""

    def _config_for_save(self, tokenizer_class: str, extra: dict[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {
            "tokenizer_class": tokenizer_class,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
        }
        config.update({k: v for k, v in self.special_tokens.items() if v is not None})
        config.update(extra)
        return config

    def _write_configs(self, directory: Path, config: dict[str, Any]) -> None:
        special_map = {k: v for k, v in self.special_tokens.items() if v is not None}
        (directory / CONFIG_JSON).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (directory / SPECIAL_MAP_JSON).write_text(
            json.dumps(special_map, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size})"

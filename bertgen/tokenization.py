"""One tokenizer interface over SentencePiece, WordPiece and byte-level BPE vocabularies.

Rothe et al. (TACL 2020) warm-start encoders and decoders from BERT (WordPiece), RoBERTa/GPT-2 (byte-level BPE)
and their own BERT-compatible SentencePiece checkpoints (HF ``BertGenerationTokenizer``); source and target may use
different tokenizers (bert2gpt). Every tokenizer here reproduces the ids and decoded text of the corresponding
Hugging Face tokenizer (transformers 4.57 is the test oracle, see ``tests/test_tokenization.py``) so checkpoints
trained with either stack are interchangeable. The heavy lifting is done by the ``sentencepiece`` and ``tokenizers``
libraries; this module only reproduces HF's conventions around them (special tokens, added-token splitting, decode
clean-up) and reads/writes HF's file layout.

``Tokenizer.for_text`` makes the variant a task's text needs (``bertgen.text.TextConvention.prepare``): atomic tokens
such as WikiSplit's ``<::::>``, WordPiece pre-tokenisation that keeps the spacing of whitespace-tokenised text, the
task's clean-up. Those are the deliberate differences from the stock HF tokenizers (README, "Text fidelity"); they are
written into the saved files, so transformers reads a prepared tokenizer back to the same ids and text.

Files recognised in a folder (``Tokenizer.load``):
- ``spiece.model``: SentencePiece in the BertGeneration convention (transformers' `tokenization_bert_generation.py`);
- ``tokenizer.json``: any ``tokenizers`` JSON (WordPiece, BPE or Unigram model);
- ``vocab.txt``: BERT WordPiece;
- ``vocab.json`` + ``merges.txt``: RoBERTa (``<s>``/``<pad>`` in the vocab) or GPT-2 byte-level BPE.
``tokenizer_config.json`` / ``special_tokens_map.json`` next to them override the special tokens.
"""

from __future__ import annotations

import io
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm
import tokenizers
from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, WordPiece

from bertgen.errors import BertgenError
from bertgen.hub import resolve_checkpoint

__all__ = [
    "Tokenizer",
    "SentencePieceTokenizer",
    "FastTokenizer",
    "TokenizerNotFoundError",
    "load_tokenizer",
    "train_sentencepiece",
]

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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read tokenizer file {path}: {e}") from e


def _token_content(value: Any, where: Path, key: str) -> str | None:
    """A special token in a HF config is a string, an AddedToken dict ``{"content": ...}`` or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(f"{where}: '{key}' must be a string or an object with 'content', got {value!r}")


def _read_configs(folder: Path | None) -> tuple[dict[str, Any], dict[str, str | None]]:
    """Return (tokenizer_config, special tokens given by the folder's config files).

    ``special_tokens_map.json`` wins over ``tokenizer_config.json`` as in HF's ``from_pretrained``.
    """
    if folder is None:
        return {}, {}
    config: dict[str, Any] = {}
    specials: dict[str, str | None] = {}
    for name in (CONFIG_JSON, SPECIAL_MAP_JSON):
        path = folder / name
        if not path.is_file():
            continue
        data = _read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
        if name == CONFIG_JSON:
            config = data
        for key in SPECIAL_KEYS:
            if key in data:
                specials[key] = _token_content(data[key], path, key)
        extra = data.get("additional_special_tokens") or []
        if extra:
            raise ValueError(
                f"{path}: additional_special_tokens {extra!r} are not supported by bertgen tokenizers "
                f"(the seq2seq tasks of Rothe et al. need none); remove them or extend bertgen/tokenization.py"
            )
    return config, specials


def _check_added_tokens_json(folder: Path | None, known: set[str]) -> None:
    """Legacy ``added_tokens.json`` may only repeat special tokens; other added tokens would change the ids."""
    if folder is None or not (folder / ADDED_TOKENS_JSON).is_file():
        return
    data = _read_json(folder / ADDED_TOKENS_JSON)
    unknown = sorted(set(data) - known) if isinstance(data, dict) else data
    if unknown:
        raise ValueError(f"{folder / ADDED_TOKENS_JSON}: non-special added tokens {unknown!r} are not supported")


class Tokenizer(ABC):
    """Text <-> ids for one vocabulary, with HF-compatible special tokens and decoding.

    Instances are independent (no globals), picklable, and safe to use for source and target at the same time.
    """

    kind: str  # "sentencepiece" | "wordpiece" | "bpe"

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

        ``atomic_tokens``: strings that become one token that never splits, on encoding and decoding (WikiSplit's
        ``<::::>``). Each takes, in this order: the id it already has; a reserved row of the vocabulary (BERT's first
        free ``[unusedN]``, RoBERTa's ``madeupwordNNNN`` or an id the vocabulary file leaves without a token), so
        the model's embedding matrix keeps its size; else a new id after the vocabulary (GPT-2), for which a
        warm-started model grows one row (``EncoderDecoder.from_encoder_decoder_pretrained(...,
        decoder_vocab_size=len(tokenizer))``).
        ``spacing``: how WordPiece pre-tokenises (``SPACINGS``); the other families are lossless already.
        ``clean_up``: HF's ``clean_up_tokenization_spaces`` after decoding; None keeps this tokenizer's own
        (for WordPiece, including the clean-up its ``tokenizer.json`` decoder does).
        """

    def _check_ids(self, ids: list[int]) -> None:
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if i < 0 or i >= self.vocab_size)
            hint = " (-100 is the ignored-label id: replace it by the pad id before decoding)" if bad == -100 else ""
            raise ValueError(f"token id {bad} is outside the {self.kind} vocabulary of size {self.vocab_size}{hint}")

    # ---- persistence ----------------------------------------------------------------------------------------
    @abstractmethod
    def save(self, directory: str | os.PathLike) -> None:
        """Write files that ``Tokenizer.load`` and transformers' ``AutoTokenizer.from_pretrained`` read back."""

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

    @classmethod
    def load(cls, path_or_hub_id: str | os.PathLike) -> Tokenizer:
        """Load from a checkpoint folder, a hub id (via ``bertgen.hub.resolve_checkpoint``) or a single
        vocabulary file (``*.model``, ``tokenizer.json``, ``vocab.txt``)."""
        path = Path(path_or_hub_id).expanduser()
        if path.is_file():
            return _load_file(path)
        folder = resolve_checkpoint(path_or_hub_id, allow_patterns=_HUB_PATTERNS, what="tokenizer")
        return _load_folder(folder)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, vocab_size={self.vocab_size})"


# ===================================================================================================================
# SentencePiece (BertGenerationTokenizer)
# ===================================================================================================================


class SentencePieceTokenizer(Tokenizer):
    """HF ``BertGenerationTokenizer`` semantics over a SentencePiece model (`tokenization_bert_generation.py`).

    - Special tokens missing from the spm vocabulary are appended after it (order bos, eos, unk, sep, pad).
    - Special token strings inside the text (e.g. WikiSplit's ``<::::>`` separator) are split out first and
      mapped to their ids; the text between them is encoded by sentencepiece chunk by chunk, as HF does.
    - ``add_special_tokens`` adds nothing (HF does not override ``build_inputs_with_special_tokens``).
    - Decoding concatenates special tokens without spaces, sentencepiece-decodes the runs between them, strips.
    - ``atomic_tokens``: non-special added tokens (e.g. a task's separator when the model lacks it), split out of
      the text like specials and decoded as HF's ``PreTrainedTokenizer._decode`` does added tokens (as separate
      sub-texts joined by one space); a token missing from the vocabulary is appended after the specials.
    """

    kind = "sentencepiece"

    def __init__(
        self,
        model_proto: bytes,
        specials: dict[str, str | None] | None = None,
        clean_up_tokenization_spaces: bool = False,
        added_tokens: dict[int, str] | None = None,
        source: str = "<bytes>",
        atomic_tokens: Sequence[str] = (),
    ) -> None:
        """``added_tokens``: id -> token already assigned by a saved ``tokenizer_config.json``
        (``added_tokens_decoder``); ids below the spm size must name the same piece, the others must follow on.
        ``atomic_tokens``: non-special tokens that never split (see the class docstring)."""
        specials = dict(BERT_GENERATION_SPECIALS if specials is None else specials)
        super().__init__(specials, clean_up_tokenization_spaces)
        self._source = source
        self._proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self._proto)
        except Exception as e:  # sentencepiece raises RuntimeError/OSError with a terse message
            raise ValueError(f"cannot read SentencePiece model {source}: {e}") from e
        n = self._sp.get_piece_size()
        pieces = [self._sp.id_to_piece(i) for i in range(n)]
        vocab = {p: i for i, p in enumerate(pieces)}
        for token_id, token in sorted((added_tokens or {}).items()):
            if token_id < n:
                if pieces[token_id] != token:
                    raise ValueError(
                        f"{source}: added token {token!r} has id {token_id} but the SentencePiece model "
                        f"has {pieces[token_id]!r} there"
                    )
                continue
            if token_id != len(pieces) or token in vocab:
                raise ValueError(
                    f"{source}: added token {token!r} with id {token_id} does not follow the "
                    f"{len(pieces)} ids already in use (or repeats a token)"
                )
            vocab[token] = token_id
            pieces.append(token)
        for token in self.all_special_tokens:
            if token not in vocab:
                vocab[token] = len(pieces)
                pieces.append(token)
        self._special_set = set(self.all_special_tokens)
        self._atomic = tuple(dict.fromkeys(t for t in atomic_tokens if t not in self._special_set))
        for token in self._atomic:
            if token not in vocab:
                vocab[token] = len(pieces)
                pieces.append(token)
        self._pieces = pieces
        self._vocab = vocab
        self._split_set = self._special_set | set(self._atomic)
        self._special_id_set = set(self.all_special_ids)
        # Longest first, so that a special token that contains another one wins (HF's trie does the same).
        alternation = "|".join(re.escape(t) for t in sorted(self._split_set, key=len, reverse=True))
        self._split_re = re.compile(f"({alternation})") if alternation else None

    @property
    def sp_model(self) -> spm.SentencePieceProcessor:
        return self._sp

    @property
    def vocab_size(self) -> int:
        return len(self._pieces)

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    def token_to_id(self, token: str) -> int | None:
        return self._vocab.get(token)

    def id_to_token(self, token_id: int) -> str:
        self._check_ids([token_id])
        return self._pieces[token_id]

    def _chunks(self, text: str) -> list[str]:
        """Split ``text`` on special tokens; empty chunks are dropped (as HF's ``tokenize`` does)."""
        if self._split_re is None:
            return [text] if text else []
        return [c for c in self._split_re.split(text) if c]

    def batch_encode(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        if isinstance(texts, str):
            raise TypeError("batch_encode takes a list of strings; use encode for one string")
        chunked = [self._chunks(t) for t in texts]
        plain = [c for chunks in chunked for c in chunks if c not in self._split_set]
        # HF maps every piece with piece_to_id (unknown surfaces -> unk); doing the same keeps ids identical.
        piece_lists = self._sp.encode(plain, out_type=str) if plain else []
        it = iter(piece_lists)
        out: list[list[int]] = []
        for chunks in chunked:
            ids: list[int] = []
            for c in chunks:
                if c in self._split_set:
                    ids.append(self._vocab[c])
                else:
                    pieces = next(it)
                    if pieces:
                        ids.extend(self._sp.piece_to_id(pieces))
            out.append(ids)
        return out

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode takes a string, got {type(text).__name__}")
        return self.batch_encode([text], add_special_tokens)[0]

    def _tokens_to_string(self, tokens: list[str]) -> str:
        """HF ``BertGenerationTokenizer.convert_tokens_to_string``: specials verbatim and unspaced, runs decoded."""
        out: list[str] = []
        run: list[str] = []
        for token in tokens:
            if token in self._special_set:
                out.append(self._sp.decode_pieces(run))
                out.append(token)
                run = []
            else:
                run.append(token)
        out.append(self._sp.decode_pieces(run))
        return "".join(out).strip()

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        ids = _as_id_list(ids)
        self._check_ids(ids)
        tokens = [self._pieces[i] for i in ids if not (skip_special_tokens and self._pieces[i] in self._special_set)]
        if not self._atomic:
            text = self._tokens_to_string(tokens)
        else:  # HF's PreTrainedTokenizer._decode: each added token is a sub-text of its own, joined by one space
            sub_texts: list[str] = []
            current: list[str] = []
            for token in tokens:
                if token in self._atomic:
                    if current:
                        string = self._tokens_to_string(current)
                        if string:
                            sub_texts.append(string)
                        current = []
                    sub_texts.append(token)
                else:
                    current.append(token)
            if current:
                sub_texts.append(self._tokens_to_string(current))
            text = " ".join(sub_texts)
        return _clean_up_tokenization(text) if self.clean_up_tokenization_spaces else text

    @property
    def atomic_tokens(self) -> tuple[str, ...]:
        """Tokens that never split: the special tokens, then the non-special added ones."""
        return tuple(self.all_special_tokens) + self._atomic

    def for_text(
        self, *, atomic_tokens: Sequence[str] = (), spacing: str = "standard", clean_up: bool | None = None
    ) -> SentencePieceTokenizer:
        """See `Tokenizer.for_text`. SentencePiece keeps the text's spacing itself (``spacing`` changes nothing)."""
        _check_spacing(spacing)
        added = {self._vocab[t]: t for t in self._vocab if self._vocab[t] >= self._sp.get_piece_size()}
        atomic = self._atomic + tuple(t for t in atomic_tokens if t not in self._special_set and t not in self._atomic)
        return SentencePieceTokenizer(
            self._proto,
            dict(self.special_tokens),
            self.clean_up_tokenization_spaces if clean_up is None else bool(clean_up),
            {i: t for i, t in added.items() if t in self._special_set or t in self._atomic},
            self._source,
            atomic,
        )

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SPIECE).write_bytes(self._proto)
        added = {
            str(self._vocab[t]): {
                "content": t,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": t in self._special_set,
            }
            for t in sorted(self._split_set, key=self._vocab.__getitem__)
        }
        config = self._config_for_save(
            "BertGenerationTokenizer", {"added_tokens_decoder": added, "sp_model_kwargs": {}}
        )
        self._write_configs(directory, config)

    def __getstate__(self) -> dict[str, Any]:
        # Rebuild from the serialized model: SentencePieceProcessor pickling is not guaranteed across versions.
        state = self.__dict__.copy()
        state["_sp"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sp = spm.SentencePieceProcessor()
        self._sp.LoadFromSerializedProto(self._proto)


# ===================================================================================================================
# tokenizers-library backends (WordPiece, byte-level BPE, any tokenizer.json)
# ===================================================================================================================


class FastTokenizer(Tokenizer):
    """A ``tokenizers.Tokenizer`` with HF's special tokens and decode clean-up around it.

    ``family`` ("bert", "roberta", "gpt2" or "json") only decides the ``tokenizer_class`` written by ``save``.
    """

    _KINDS = {"WordPiece": "wordpiece", "BPE": "bpe", "Unigram": "sentencepiece"}
    _CLASSES = {"bert": "BertTokenizerFast", "roberta": "RobertaTokenizerFast", "gpt2": "GPT2TokenizerFast"}

    def __init__(
        self,
        tokenizer: tokenizers.Tokenizer,
        specials: dict[str, str | None],
        clean_up_tokenization_spaces: bool,
        family: str = "json",
        config: dict[str, Any] | None = None,
        source: str = "<tokenizer>",
    ) -> None:
        super().__init__(specials, clean_up_tokenization_spaces)
        model_type = type(tokenizer.model).__name__
        if model_type not in self._KINDS:
            raise ValueError(
                f"{source}: unsupported tokenizers model type {model_type!r} (expected one of {sorted(self._KINDS)})"
            )
        self.kind = self._KINDS[model_type]
        self.family = family
        self._config = dict(config or {})
        self._source = source
        # Encoding never truncates or pads here (HF does neither unless asked): the data pipeline owns lengths.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        lstrip = _LSTRIP_TOKENS.get(family, set())
        # Registering the specials makes the Rust side split them out of text and skip them on decode; like HF,
        # a special token missing from the vocabulary is appended to it. Tokens a tokenizer.json already registers
        # keep their own flags (e.g. RoBERTa's lstrip <mask>).
        registered = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
        tokenizer.add_special_tokens(
            [
                AddedToken(t, special=True, normalized=False, lstrip=t in lstrip)
                for t in self.all_special_tokens
                if t not in registered
            ]
        )
        self._tok = tokenizer
        self._vocab_size = len(tokenizer.get_vocab(with_added_tokens=True))
        self._max_id = max(tokenizer.get_vocab(with_added_tokens=True).values())

    @property
    def backend(self) -> tokenizers.Tokenizer:
        return self._tok

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str:
        token = self._tok.id_to_token(token_id)
        if token is None:
            raise ValueError(f"token id {token_id} is not in the {self.kind} vocabulary (size {self.vocab_size})")
        return token

    def _check_ids(self, ids: list[int]) -> None:
        # RoBERTa vocabularies may have holes (ids without a token), so the bound is the largest id, not the size.
        if ids and (min(ids) < 0 or max(ids) > self._max_id):
            bad = next(i for i in ids if i < 0 or i > self._max_id)
            hint = " (-100 is the ignored-label id: replace it by the pad id before decoding)" if bad == -100 else ""
            raise ValueError(f"token id {bad} is outside the {self.kind} vocabulary (largest id {self._max_id}){hint}")

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode takes a string, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def batch_encode(self, texts: Sequence[str], add_special_tokens: bool = False) -> list[list[int]]:
        if isinstance(texts, str):
            raise TypeError("batch_encode takes a list of strings; use encode for one string")
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)  # no offsets: faster
        return [e.ids for e in encode(list(texts), add_special_tokens=add_special_tokens)]

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        ids = _as_id_list(ids)
        self._check_ids(ids)
        text = self._tok.decode(ids, skip_special_tokens=skip_special_tokens)
        return _clean_up_tokenization(text) if self.clean_up_tokenization_spaces else text

    @property
    def atomic_tokens(self) -> tuple[str, ...]:
        return tuple(t.content for _, t in sorted(self._tok.get_added_tokens_decoder().items()))

    def for_text(
        self, *, atomic_tokens: Sequence[str] = (), spacing: str = "standard", clean_up: bool | None = None
    ) -> FastTokenizer:
        """See `Tokenizer.for_text`. WordPiece: ``spacing`` replaces the pre-tokenizer, and the ``tokenizer.json``
        decoder's own per-token clean-up is turned off in favour of one clean-up, HF's Python
        ``clean_up_tokenization``, applied when ``clean_up`` (for None: this tokenizer's effective clean-up, its
        decoder's included) says so. The result saves a ``tokenizer.json`` and ``tokenizer_config.json`` that
        transformers reads back to the same ids and text."""
        _check_spacing(spacing)
        state = json.loads(self._tok.to_str())
        model = state["model"]
        effective_clean_up = self.clean_up_tokenization_spaces
        decoder = state.get("decoder") or {}
        if decoder.get("type") == "WordPiece":
            effective_clean_up = effective_clean_up or bool(decoder.get("cleanup", True))
            state["decoder"] = {**decoder, "cleanup": False}
        if model.get("type") == "WordPiece" and spacing != "standard":
            state["pre_tokenizer"] = _PRE_TOKENIZERS[spacing]
        # Atomic tokens: an existing id, else a reserved row of a token -> id vocabulary, else appended below.
        added = state.setdefault("added_tokens", [])
        vocab = model.get("vocab") if isinstance(model.get("vocab"), dict) else None
        lstrip = model.get("type") != "WordPiece"  # the space before a separator is part of it, not a token
        append: list[str] = []
        for token in dict.fromkeys(atomic_tokens):
            if any(a["content"] == token for a in added):
                continue
            token_id = self._tok.token_to_id(token)
            if token_id is None and vocab is not None:
                token_id = _reserved_row(vocab, {a["id"] for a in added})
                if token_id is not None:
                    for name in [k for k, v in vocab.items() if v == token_id]:
                        del vocab[name]
                    vocab[token] = token_id
            if token_id is None:
                append.append(token)
                continue
            added.append(
                {
                    "id": token_id,
                    "content": token,
                    "single_word": False,
                    "lstrip": lstrip,
                    "rstrip": False,
                    "normalized": False,
                    "special": False,
                }
            )
        backend = tokenizers.Tokenizer.from_str(json.dumps(state))
        if append:
            backend.add_tokens(
                [
                    AddedToken(t, single_word=False, lstrip=lstrip, rstrip=False, normalized=False, special=False)
                    for t in append
                ]
            )
        return FastTokenizer(
            backend,
            dict(self.special_tokens),
            effective_clean_up if clean_up is None else bool(clean_up),
            self.family,
            self._config,
            self._source,
        )

    def batch_decode(self, seqs: Any, skip_special_tokens: bool = True) -> list[str]:
        if hasattr(seqs, "tolist"):
            seqs = seqs.tolist()
        seqs = [_as_id_list(s) for s in seqs]
        for s in seqs:
            self._check_ids(s)
        texts = self._tok.decode_batch(seqs, skip_special_tokens=skip_special_tokens)
        return [_clean_up_tokenization(t) for t in texts] if self.clean_up_tokenization_spaces else texts

    def save(self, directory: str | os.PathLike) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(directory / TOKENIZER_JSON))
        tokenizer_class = self._config.get("tokenizer_class") or self._CLASSES.get(
            self.family, "PreTrainedTokenizerFast"
        )
        if not tokenizer_class.endswith("Fast"):
            tokenizer_class += "Fast"  # only tokenizer.json is written, which HF reads with the fast class
        extra = {
            k: self._config[k]
            for k in (
                "do_lower_case",
                "strip_accents",
                "tokenize_chinese_chars",
                "model_max_length",
                "add_prefix_space",
            )
            if k in self._config
        }
        self._write_configs(directory, self._config_for_save(tokenizer_class, extra))


# ===================================================================================================================
# Builders and loading
# ===================================================================================================================


def _bert_wordpiece(vocab_file: Path, config: dict[str, Any], specials: dict[str, str | None]) -> FastTokenizer:
    """BERT WordPiece as HF's BertTokenizer/BertTokenizerFast build it from ``vocab.txt`` (line index = id)."""
    try:
        lines = vocab_file.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read WordPiece vocabulary {vocab_file}: {e}") from e
    if lines and lines[-1] == "":
        lines.pop()
    vocab: dict[str, int] = {}
    for i, token in enumerate(lines):
        if token in vocab:
            raise ValueError(f"{vocab_file}: token {token!r} on line {i + 1} repeats line {vocab[token] + 1}")
        vocab[token] = i
    specials = {**BERT_SPECIALS, **specials}
    unk = specials.get("unk_token")
    if not vocab or unk not in vocab:
        raise ValueError(
            f"{vocab_file}: not a WordPiece vocabulary (no unknown token {unk!r} among {len(vocab)} lines)"
        )
    lower = bool(config.get("do_lower_case", True))
    tok = tokenizers.Tokenizer(WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=bool(config.get("tokenize_chinese_chars", True)),
        strip_accents=config.get("strip_accents"),
        lowercase=lower,
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    cls, sep = specials["cls_token"], specials["sep_token"]
    if cls in vocab and sep in vocab:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls}:0 $A:0 {sep}:0",
            pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
        )
    config = {**config, "do_lower_case": lower}
    return FastTokenizer(
        tok, specials, bool(config.get("clean_up_tokenization_spaces", True)), "bert", config, str(vocab_file)
    )


def _byte_level_bpe(
    vocab_file: Path, merges_file: Path, config: dict[str, Any], specials: dict[str, str | None]
) -> FastTokenizer:
    """GPT-2 / RoBERTa byte-level BPE as HF's GPT2Tokenizer / RobertaTokenizer build it."""
    vocab = _read_json(vocab_file)
    if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
        raise ValueError(f"{vocab_file}: expected a JSON object mapping tokens to integer ids")
    merges: list[tuple[str, str]] = []
    try:
        merge_lines = merges_file.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read BPE merges {merges_file}: {e}") from e
    for n, line in enumerate(merge_lines, 1):
        if not line or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{merges_file}: line {n} is not a 'left right' merge: {line!r}")
        merges.append((parts[0], parts[1]))
    roberta = "<s>" in vocab and "<pad>" in vocab
    family = "roberta" if roberta else "gpt2"
    specials = {**(ROBERTA_SPECIALS if roberta else GPT2_SPECIALS), **specials}
    add_prefix_space = bool(config.get("add_prefix_space", False))
    try:
        model = BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    except Exception as e:
        raise ValueError(f"cannot build BPE from {vocab_file} and {merges_file}: {e}") from e
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    if roberta:
        bos, eos = specials["cls_token"], specials["sep_token"]
        if bos not in vocab or eos not in vocab:
            raise ValueError(f"{vocab_file}: RoBERTa cls/sep tokens {bos!r}/{eos!r} are not in the vocabulary")
        tok.post_processor = processors.RobertaProcessing(
            sep=(eos, vocab[eos]), cls=(bos, vocab[bos]), trim_offsets=True, add_prefix_space=add_prefix_space
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return FastTokenizer(
        tok, specials, bool(config.get("clean_up_tokenization_spaces", False)), family, config, str(vocab_file)
    )


def _from_tokenizer_json(path: Path, config: dict[str, Any], specials: dict[str, str | None]) -> FastTokenizer:
    try:
        tok = tokenizers.Tokenizer.from_file(str(path))
    except Exception as e:
        raise ValueError(f"cannot read tokenizers JSON {path}: {e}") from e
    state = json.loads(tok.to_str())
    normalizer = state.get("normalizer") or {}
    if normalizer.get("type") == "BertNormalizer" and any(
        k in config for k in ("do_lower_case", "strip_accents", "tokenize_chinese_chars")
    ):
        # HF's BertTokenizerFast rebuilds the normalizer when tokenizer_config.json disagrees with it.
        normalizer["lowercase"] = bool(config.get("do_lower_case", normalizer.get("lowercase", True)))
        normalizer["strip_accents"] = config.get("strip_accents", normalizer.get("strip_accents"))
        normalizer["handle_chinese_chars"] = bool(
            config.get("tokenize_chinese_chars", normalizer.get("handle_chinese_chars", True))
        )
        tok = tokenizers.Tokenizer.from_str(json.dumps(state))
    vocab = tok.get_vocab(with_added_tokens=True)
    specials = {**_infer_specials(vocab), **specials}
    # HF reads tokenizer.json with a *Fast class, whose clean-up default is False in 4.57 (BertTokenizerFast
    # included; the WordPiece decoder already cleans up per token).
    return FastTokenizer(
        tok, specials, bool(config.get("clean_up_tokenization_spaces", False)), "json", config, str(path)
    )


def _infer_specials(vocab: dict[str, int]) -> dict[str, str | None]:
    """Special tokens of a bare tokenizer.json (no config files): the conventional set whose tokens it holds."""
    for candidates in (BERT_SPECIALS, ROBERTA_SPECIALS, GPT2_SPECIALS, BERT_GENERATION_SPECIALS):
        if all(t in vocab for t in candidates.values()):
            return dict(candidates)
    return {k: v for k, v in BERT_GENERATION_SPECIALS.items() if v in vocab}


def _sentencepiece_from(path: Path, config: dict[str, Any], specials: dict[str, str | None]) -> SentencePieceTokenizer:
    try:
        proto = path.read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read SentencePiece model {path}: {e}") from e
    added: dict[int, str] = {}
    atomic: list[str] = []  # non-special added tokens (a task's separator, `Tokenizer.for_text`)
    for key, entry in (config.get("added_tokens_decoder") or {}).items():
        content = _token_content(entry, path.parent / CONFIG_JSON, f"added_tokens_decoder[{key}]")
        if isinstance(entry, dict) and (entry.get("lstrip") or entry.get("rstrip") or entry.get("single_word")):
            raise ValueError(
                f"{path.parent / CONFIG_JSON}: added token {content!r} uses lstrip/rstrip/single_word, "
                f"which BertGenerationTokenizer checkpoints do not and bertgen does not support"
            )
        if isinstance(entry, dict) and not entry.get("special", True):
            atomic.append(content)
        added[int(key)] = content
    return SentencePieceTokenizer(
        proto,
        {**BERT_GENERATION_SPECIALS, **specials},
        bool(config.get("clean_up_tokenization_spaces", False)),
        added,
        str(path),
        atomic,
    )


def _load_folder(folder: Path) -> Tokenizer:
    config, specials = _read_configs(folder)
    tokenizer_class = str(config.get("tokenizer_class") or "")
    has = {name: (folder / name).is_file() for name in (SPIECE, TOKENIZER_JSON, VOCAB_TXT, VOCAB_JSON, MERGES_TXT)}
    if has[SPIECE] and (tokenizer_class.startswith("BertGeneration") or not has[TOKENIZER_JSON]):
        tok: Tokenizer = _sentencepiece_from(folder / SPIECE, config, specials)
    elif has[TOKENIZER_JSON]:
        tok = _from_tokenizer_json(folder / TOKENIZER_JSON, config, specials)
    elif has[VOCAB_TXT]:
        tok = _bert_wordpiece(folder / VOCAB_TXT, config, specials)
    elif has[VOCAB_JSON] and has[MERGES_TXT]:
        tok = _byte_level_bpe(folder / VOCAB_JSON, folder / MERGES_TXT, config, specials)
    else:
        present = sorted(p.name for p in folder.iterdir())[:20] if folder.is_dir() else []
        raise TokenizerNotFoundError(
            f"no tokenizer vocabulary in {folder}: looked for {SPIECE}, {TOKENIZER_JSON}, {VOCAB_TXT}, or "
            f"{VOCAB_JSON} + {MERGES_TXT}; the folder holds {present}"
        )
    _check_added_tokens_json(folder, set(tok.all_special_tokens))
    return tok


def _load_file(path: Path) -> Tokenizer:
    """A single vocabulary file, read without any config files (those belong to a folder)."""
    if path.suffix == ".model":
        return _sentencepiece_from(path, {}, {})
    if path.suffix == ".json" and path.name != VOCAB_JSON and not path.name.endswith("-vocab.json"):
        return _from_tokenizer_json(path, {}, {})
    if path.suffix == ".txt" and "merges" not in path.name:
        return _bert_wordpiece(path, {}, {})
    raise TokenizerNotFoundError(
        f"cannot load a tokenizer from the single file {path}: pass a SentencePiece '*.model', a tokenizers "
        f"'tokenizer.json' or a WordPiece 'vocab.txt' "
        f"(byte-level BPE needs the folder with {VOCAB_JSON} + {MERGES_TXT})"
    )


def load_tokenizer(path_or_hub_id: str | os.PathLike) -> Tokenizer:
    """Alias of ``Tokenizer.load``."""
    return Tokenizer.load(path_or_hub_id)


# ===================================================================================================================
# Training a task-specific SentencePiece vocabulary
# ===================================================================================================================


def train_sentencepiece(
    texts: Iterable[str],
    vocab_size: int,
    model_type: str = "bpe",
    *,
    output_dir: str | os.PathLike | None = None,
    character_coverage: float = 0.9995,
    max_sentence_length: int = 1 << 16,
    input_sentence_size: int = 0,
    seed: int = 0,
    num_threads: int | None = None,
    verbose: bool = False,
    **spm_options: Any,
) -> SentencePieceTokenizer:
    """Train a SentencePiece vocabulary on ``texts`` with the BertGeneration special-token layout.

    Used for random-init models and the paper's Table 6 ablation (16k BPE SentencePieces on DiscoFuse;
    Rothe et al. 2020 §5). Layout: ``<pad>``=0, ``</s>``=1, ``<s>``=2 (as the BBC BertGeneration config,
    `tokenization_bert_generation.py`), ``<unk>``=3, and ``<::::>``=4 as a user-defined symbol, so no token is
    appended and
    ``vocab_size`` is exactly the requested size. Training happens in memory (no files in the working directory);
    with ``output_dir`` the tokenizer is also saved there.

    Deterministic: the sampling seed is fixed. BPE vocabularies are also identical for any thread count (checked),
    unigram ones are not (the EM sums depend on the thread split), so ``num_threads=None`` means all cores for
    BPE and 1 otherwise. ``max_sentence_length`` is in bytes; sentencepiece skips longer inputs, so the default is
    large enough for whole news articles. Extra ``spm_options`` go to ``SentencePieceTrainer.train``.
    """
    if model_type not in ("bpe", "unigram", "char", "word"):
        raise ValueError(f"model_type must be one of bpe, unigram, char, word; got {model_type!r}")
    if vocab_size < 6:
        raise ValueError(f"vocab_size must leave room beyond the 5 special tokens, got {vocab_size}")
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of strings, not one string")

    input_error: list[Exception] = []  # sentencepiece turns exceptions in the iterator into RuntimeError

    def sentences() -> Iterable[str]:
        count = 0
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                input_error.append(TypeError(f"texts[{i}] is {type(text).__name__}, expected str"))
                raise input_error[-1]
            count += 1
            yield text
        if count == 0:
            input_error.append(ValueError("train_sentencepiece got no texts"))
            raise input_error[-1]

    if num_threads is None:
        num_threads = (os.cpu_count() or 1) if model_type == "bpe" else 1
    writer = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences()),
            model_writer=writer,
            vocab_size=vocab_size,
            model_type=model_type,
            pad_id=0,
            eos_id=1,
            bos_id=2,
            unk_id=3,
            pad_piece="<pad>",
            eos_piece="</s>",
            bos_piece="<s>",
            unk_piece="<unk>",
            user_defined_symbols=["<::::>"],
            character_coverage=character_coverage,
            max_sentence_length=max_sentence_length,
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True,
            num_threads=num_threads,
            minloglevel=0 if verbose else 2,
            **spm_options,
        )
    except RuntimeError as e:
        if input_error:
            raise input_error[0] from None
        raise ValueError(f"SentencePiece training failed ({model_type}, vocab_size={vocab_size}): {e}") from e
    tok = SentencePieceTokenizer(writer.getvalue(), dict(BERT_GENERATION_SPECIALS), source="train_sentencepiece")
    if output_dir is not None:
        tok.save(output_dir)
    return tok

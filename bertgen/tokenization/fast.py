"""`tokenizers`-library backends: WordPiece, byte-level BPE and any ``tokenizer.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import AddedToken

from bertgen.tokenization.base import (
    _LSTRIP_TOKENS,
    _PRE_TOKENIZERS,
    TOKENIZER_JSON,
    Tokenizer,
    _as_id_list,
    _check_spacing,
    _clean_up_tokenization,
    _reserved_row,
)


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

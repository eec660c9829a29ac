"""SentencePiece vocabularies with HF ``BertGenerationTokenizer`` semantics."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm

from bertgen.tokenization.base import (
    BERT_GENERATION_SPECIALS,
    SPIECE,
    Tokenizer,
    _as_id_list,
    _check_spacing,
    _clean_up_tokenization,
)


class SentencePieceTokenizer(Tokenizer):
    """HF ``BertGenerationTokenizer`` semantics over a SentencePiece model (`tokenization_bert_generation.py`).

    - Special tokens missing from the spm vocabulary are appended after it (order bos, eos, unk, sep, pad).
    - Special token strings inside the text (e.g. a ``<::::>`` separator) are split out first and
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

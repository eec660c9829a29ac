"""Training a task-specific SentencePiece vocabulary."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from typing import Any

import sentencepiece as spm

from bertgen.tokenization.base import BERT_GENERATION_SPECIALS
from bertgen.tokenization.sentencepiece import SentencePieceTokenizer


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

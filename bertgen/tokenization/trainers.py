"""Training task-specific vocabularies: SentencePiece (BertGeneration layout) and WordPiece (BERT layout)."""

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


# BERT's layout: [PAD]=0, [unused0..98]=1..99, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103 (bert-base-*'s vocab.txt),
# so a task's atomic marker such as <::::> takes an [unusedN] row and the embedding matrix keeps its size.
WORDPIECE_SPECIALS = ("[UNK]", "[CLS]", "[SEP]", "[MASK]")


def wordpiece_reserved(unused: int) -> list[str]:
    """The reserved rows of a WordPiece vocabulary, in id order."""
    return ["[PAD]", *(f"[unused{i}]" for i in range(unused)), *WORDPIECE_SPECIALS]


def train_wordpiece(
    texts: Iterable[str],
    vocab_size: int,
    *,
    cased: bool = False,
    unused: int = 99,
    spacing: str = "standard",
    min_frequency: int = 2,
    limit_alphabet: int | None = None,
    output_dir: str | os.PathLike | None = None,
):
    """Train a BERT-style WordPiece vocabulary on ``texts`` with ``tokenizers``' `WordPieceTrainer`.

    The result is what `load_tokenizer` builds from a BERT ``vocab.txt`` (BERT's normaliser, pre-tokenizer and
    ``[CLS] x [SEP]`` template; ``do_lower_case = not cased``), so it behaves exactly like a public BERT vocabulary,
    in bertgen and in transformers (``BertTokenizerFast``). Layout: `wordpiece_reserved` (``[PAD]``, ``unused``
    ``[unusedN]`` slots, ``[UNK] [CLS] [SEP] [MASK]``), then the alphabet and the learnt pieces; ``vocab_size``
    counts everything. ``spacing``: the pre-tokenisation the task's text convention encodes with
    (``bertgen.text``: ``standard``, ``exact``, ``digits``), so that pieces such as ``##,`` (``1,000``) exist.
    With ``output_dir`` the folder gets ``vocab.txt``, ``tokenizer.json`` and the config files.
    """
    import json
    import tempfile
    from pathlib import Path

    import tokenizers
    from tokenizers import normalizers, pre_tokenizers
    from tokenizers.models import WordPiece
    from tokenizers.trainers import WordPieceTrainer

    from bertgen.tokenization.base import _PRE_TOKENIZERS, _check_spacing
    from bertgen.tokenization.loading import load_tokenizer

    _check_spacing(spacing)
    reserved = wordpiece_reserved(unused)
    if isinstance(texts, str):
        raise TypeError("texts must be an iterable of strings, not one string")
    if vocab_size <= len(reserved):
        raise ValueError(
            f"vocab_size={vocab_size} leaves no room for pieces: the vocabulary reserves {len(reserved)} rows "
            f"([PAD], {unused} [unusedN], [UNK] [CLS] [SEP] [MASK])"
        )
    counted = [0]

    def sentences() -> Iterable[str]:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
            counted[0] += 1
            yield text

    tok = tokenizers.Tokenizer(WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, lowercase=not cased)
    tok.pre_tokenizer = (
        pre_tokenizers.BertPreTokenizer()
        if spacing == "standard"
        else tokenizers.Tokenizer.from_str(
            json.dumps({**json.loads(tok.to_str()), "pre_tokenizer": _PRE_TOKENIZERS[spacing]})
        ).pre_tokenizer
    )
    options = {} if limit_alphabet is None else {"limit_alphabet": limit_alphabet}
    trainer = WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=reserved,
        continuing_subword_prefix="##",
        show_progress=False,
        **options,
    )
    tok.train_from_iterator(sentences(), trainer=trainer)
    if counted[0] == 0:
        raise ValueError("train_wordpiece got no texts")
    vocab = tok.get_vocab(with_added_tokens=True)
    ordered = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    if ordered[: len(reserved)] != reserved or len(set(vocab.values())) != len(ordered):
        raise ValueError("WordPieceTrainer did not put the reserved tokens first")  # a tokenizers change
    # the trainer numbers its pieces in hash-map order (another order on every run, the same set): sorted here, so
    # one set of pieces always gets one vocabulary file; characters first, then longer pieces, word starts before ##
    lines = reserved + sorted(
        ordered[len(reserved) :], key=lambda t: (len(t.removeprefix("##")) > 1, t.startswith("##"), t)
    )
    # rebuilt from vocab.txt as load_tokenizer reads BERT's: one code path for public and trained vocabularies
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(output_dir) if output_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = {"tokenizer_class": "BertTokenizer", "do_lower_case": not cased, "model_max_length": 512}
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        for stale in ("tokenizer.json", "spiece.model"):
            (folder / stale).unlink(missing_ok=True)
        loaded = load_tokenizer(folder)
        if output_dir is not None:
            loaded.save(folder)  # tokenizer.json + tokenizer_config.json + special_tokens_map.json beside vocab.txt
    return loaded

"""Building tokenizers from HF checkpoint folders and single vocabulary files (`load_tokenizer`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, WordPiece

from bertgen.hub import fetch_folder
from bertgen.tokenization.base import (
    _HUB_PATTERNS,
    ADDED_TOKENS_JSON,
    BERT_GENERATION_SPECIALS,
    BERT_SPECIALS,
    CONFIG_JSON,
    GPT2_SPECIALS,
    MERGES_TXT,
    ROBERTA_SPECIALS,
    SPECIAL_KEYS,
    SPECIAL_MAP_JSON,
    SPIECE,
    TOKENIZER_JSON,
    VOCAB_JSON,
    VOCAB_TXT,
    Tokenizer,
    TokenizerFileError,
    TokenizerNotFoundError,
)
from bertgen.tokenization.fast import FastTokenizer
from bertgen.tokenization.sentencepiece import SentencePieceTokenizer


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TokenizerFileError(f"cannot read tokenizer file {path}: {e}") from e


def _token_content(value: Any, where: Path, key: str) -> str | None:
    """A special token in a HF config is a string, an AddedToken dict ``{"content": ...}`` or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise TokenizerFileError(f"{where}: '{key}' must be a string or an object with 'content', got {value!r}")


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
            raise TokenizerFileError(f"{path}: expected a JSON object, got {type(data).__name__}")
        if name == CONFIG_JSON:
            config = data
        for key in SPECIAL_KEYS:
            if key in data:
                specials[key] = _token_content(data[key], path, key)
        extra = data.get("additional_special_tokens") or []
        if extra:
            raise TokenizerFileError(
                f"{path}: additional_special_tokens {extra!r} are not supported by bertgen tokenizers "
                f"(the seq2seq tasks of Rothe et al. need none); remove them or extend bertgen/tokenization"
            )
    return config, specials


def _check_added_tokens_json(folder: Path | None, known: set[str]) -> None:
    """Legacy ``added_tokens.json`` may only repeat special tokens; other added tokens would change the ids."""
    if folder is None or not (folder / ADDED_TOKENS_JSON).is_file():
        return
    data = _read_json(folder / ADDED_TOKENS_JSON)
    unknown = sorted(set(data) - known) if isinstance(data, dict) else data
    if unknown:
        raise TokenizerFileError(
            f"{folder / ADDED_TOKENS_JSON}: non-special added tokens {unknown!r} are not supported"
        )


def _bert_wordpiece(vocab_file: Path, config: dict[str, Any], specials: dict[str, str | None]) -> FastTokenizer:
    """BERT WordPiece as HF's BertTokenizer/BertTokenizerFast build it from ``vocab.txt`` (line index = id)."""
    try:
        lines = vocab_file.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerFileError(f"cannot read WordPiece vocabulary {vocab_file}: {e}") from e
    if lines and lines[-1] == "":
        lines.pop()
    vocab: dict[str, int] = {}
    for i, token in enumerate(lines):
        if token in vocab:
            raise TokenizerFileError(f"{vocab_file}: token {token!r} on line {i + 1} repeats line {vocab[token] + 1}")
        vocab[token] = i
    specials = {**BERT_SPECIALS, **specials}
    unk = specials.get("unk_token")
    if not vocab or unk not in vocab:
        raise TokenizerFileError(
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
        raise TokenizerFileError(f"{vocab_file}: expected a JSON object mapping tokens to integer ids")
    merges: list[tuple[str, str]] = []
    try:
        merge_lines = merges_file.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenizerFileError(f"cannot read BPE merges {merges_file}: {e}") from e
    for n, line in enumerate(merge_lines, 1):
        if not line or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerFileError(f"{merges_file}: line {n} is not a 'left right' merge: {line!r}")
        merges.append((parts[0], parts[1]))
    roberta = "<s>" in vocab and "<pad>" in vocab
    family = "roberta" if roberta else "gpt2"
    specials = {**(ROBERTA_SPECIALS if roberta else GPT2_SPECIALS), **specials}
    add_prefix_space = bool(config.get("add_prefix_space", False))
    try:
        model = BPE(vocab, merges, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False)
    except Exception as e:
        raise TokenizerFileError(f"cannot build BPE from {vocab_file} and {merges_file}: {e}") from e
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    if roberta:
        bos, eos = specials["cls_token"], specials["sep_token"]
        if bos not in vocab or eos not in vocab:
            raise TokenizerFileError(f"{vocab_file}: RoBERTa cls/sep tokens {bos!r}/{eos!r} are not in the vocabulary")
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
        raise TokenizerFileError(f"cannot read tokenizers JSON {path}: {e}") from e
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
        raise TokenizerFileError(f"cannot read SentencePiece model {path}: {e}") from e
    added: dict[int, str] = {}
    atomic: list[str] = []  # non-special added tokens (a task's separator, `Tokenizer.for_text`)
    for key, entry in (config.get("added_tokens_decoder") or {}).items():
        content = _token_content(entry, path.parent / CONFIG_JSON, f"added_tokens_decoder[{key}]")
        if isinstance(entry, dict) and (entry.get("lstrip") or entry.get("rstrip") or entry.get("single_word")):
            raise TokenizerFileError(
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
    """Load from a checkpoint folder, a hub id (via ``bertgen.hub.fetch_folder``; only the tokenizer files) or a
    single vocabulary file (``*.model``, ``tokenizer.json``, ``vocab.txt``)."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_file():
        return _load_file(path)
    return _load_folder(fetch_folder(path_or_hub_id, allow_patterns=_HUB_PATTERNS, what="tokenizer"))

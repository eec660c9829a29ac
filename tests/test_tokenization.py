"""Parity of bertgen.tokenization with the Hugging Face tokenizers (transformers 4.57 as oracle) on real text.

The oracle is imported here only; bertgen never imports transformers.
"""

from __future__ import annotations

import csv
import os
import pickle
import random
import shutil
import time
from pathlib import Path

import pytest
import torch

from bertgen.hub import CheckpointNotFoundError
from bertgen.tokenization import (
    FastTokenizer,
    SentencePieceTokenizer,
    TokenizerNotFoundError,
    load_tokenizer,
    train_sentencepiece,
)

from conftest import MINILM, SHARED

transformers = pytest.importorskip("transformers")

TOK = SHARED / "data" / "tokenizers"
SPM_FIXTURE = TOK / "test_sentencepiece.model"
SPECIAL_ATTRS = ("pad", "bos", "eos", "unk", "sep", "cls", "mask")

# Edge cases beside the WikiSplit rows: specials written inside the text, unknown and accented characters,
# whitespace-only and empty strings, contractions the WordPiece clean-up rewrites.
EXTRA_TEXTS = [
    "Hello World!",
    "I was born in 92000, and this is falsé.",
    "  leading  and trailing  ",
    "",
    " ",
    "a<::::>b",
    "x <s> y </s> <pad> <unk> [CLS] [SEP] [MASK] <mask> <|endoftext|>",
    "naïve café Ünïcödé 東京 😀 \t tab\nnewline",
    "Don't you're I'm it's we've . ' quoted ' !",
    "Hello <mask> world<mask>!",
]


def _wikisplit_texts(n_rows: int) -> list[str]:
    path = SHARED / "data" / "wikisplit" / "validation.tsv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = [row for _, row in zip(range(n_rows), csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))]
    assert all(len(r) == 2 for r in rows)
    texts = [col for row in rows for col in row]
    assert any(" <::::> " in t for t in texts)
    return texts + EXTRA_TEXTS


TEXTS = _wikisplit_texts(200)


def _folder(tmp_path_factory, name: str, files: dict[str, str]) -> Path:
    """A checkpoint-like folder holding shared vocabulary files under their HF names."""
    folder = tmp_path_factory.mktemp(name)
    for target, source in files.items():
        shutil.copy(TOK / source, folder / target)
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return _folder(tmp_path_factory, "bert", {"vocab.txt": "bert-base-uncased-vocab.txt"})


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    return _folder(tmp_path_factory, "gpt2", {"vocab.json": "gpt2-vocab.json", "merges.txt": "gpt2-merges.txt"})


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory) -> Path:
    return _folder(
        tmp_path_factory, "roberta", {"vocab.json": "roberta-base-vocab.json", "merges.txt": "gpt2-merges.txt"}
    )


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory) -> Path:
    return _folder(tmp_path_factory, "spm", {"spiece.model": "test_sentencepiece.model"})


def _pairs(name: str, bert_dir: Path, gpt2_dir: Path, roberta_dir: Path, spm_dir: Path):
    """(ours, HF oracle) for one family."""
    t = transformers
    if name == "bertgen":
        return load_tokenizer(spm_dir), t.BertGenerationTokenizer(vocab_file=str(SPM_FIXTURE))
    if name == "bert-slow":
        return load_tokenizer(bert_dir), t.BertTokenizer(vocab_file=str(bert_dir / "vocab.txt"))
    if name == "bert-fast":
        return load_tokenizer(bert_dir), t.BertTokenizerFast(vocab_file=str(bert_dir / "vocab.txt"))
    if name == "minilm-json":
        return load_tokenizer(MINILM), t.BertTokenizerFast.from_pretrained(str(MINILM))
    if name == "gpt2":
        return load_tokenizer(gpt2_dir), t.GPT2Tokenizer(str(gpt2_dir / "vocab.json"), str(gpt2_dir / "merges.txt"))
    if name == "roberta":
        return load_tokenizer(roberta_dir), t.RobertaTokenizer(
            str(roberta_dir / "vocab.json"), str(roberta_dir / "merges.txt")
        )
    raise AssertionError(name)


FAMILIES = ["bertgen", "bert-slow", "bert-fast", "minilm-json", "gpt2", "roberta"]
KINDS = {
    "bertgen": "sentencepiece",
    "bert-slow": "wordpiece",
    "bert-fast": "wordpiece",
    "minilm-json": "wordpiece",
    "gpt2": "bpe",
    "roberta": "bpe",
}


@pytest.fixture(scope="module", params=FAMILIES)
def pair(request, bert_dir, gpt2_dir, roberta_dir, spm_dir):
    ours, hf = _pairs(request.param, bert_dir, gpt2_dir, roberta_dir, spm_dir)
    return request.param, ours, hf


# ---------------------------------------------------------------------------------------------------------------
# Parity with transformers
# ---------------------------------------------------------------------------------------------------------------


def test_vocabulary_and_special_ids_match_hf(pair):
    name, ours, hf = pair
    assert ours.kind == KINDS[name]
    assert ours.vocab_size == len(hf) == len(ours)
    for attr in SPECIAL_ATTRS:
        assert getattr(ours, f"{attr}_token_id") == getattr(hf, f"{attr}_token_id"), attr
    assert ours.all_special_ids == hf.all_special_ids


@pytest.mark.parametrize("add_special_tokens", [False, True])
def test_encode_matches_hf_on_wikisplit(pair, add_special_tokens):
    name, ours, hf = pair
    expected = [hf.encode(t, add_special_tokens=add_special_tokens) for t in TEXTS]
    assert [ours.encode(t, add_special_tokens=add_special_tokens) for t in TEXTS] == expected
    assert ours.batch_encode(TEXTS, add_special_tokens=add_special_tokens) == expected


@pytest.mark.parametrize("skip_special_tokens", [True, False])
def test_decode_matches_hf_on_wikisplit(pair, skip_special_tokens):
    name, ours, hf = pair
    seqs = [hf.encode(t, add_special_tokens=True) for t in TEXTS]
    expected = [hf.decode(s, skip_special_tokens=skip_special_tokens) for s in seqs]
    assert [ours.decode(s, skip_special_tokens=skip_special_tokens) for s in seqs] == expected
    assert ours.batch_decode(seqs, skip_special_tokens=skip_special_tokens) == expected


def test_decode_of_arbitrary_ids_matches_hf(pair):
    """Generated sequences are arbitrary id strings (split UTF-8 bytes in byte-level BPE, specials mid-text)."""
    name, ours, hf = pair
    rng = random.Random(0)
    vocab = sorted(hf.get_vocab().values())
    for _ in range(150):
        ids = [rng.choice(vocab) for _ in range(rng.randrange(1, 25))]
        ids += rng.sample(hf.all_special_ids, k=min(2, len(hf.all_special_ids)))
        rng.shuffle(ids)
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), ids


def test_add_special_tokens_layout(pair):
    name, ours, _ = pair
    plain = ours.encode("Hello world.")
    with_specials = ours.encode("Hello world.", add_special_tokens=True)
    if name in ("bert-slow", "bert-fast", "minilm-json"):
        assert with_specials == [ours.cls_token_id, *plain, ours.sep_token_id]
    elif name == "roberta":
        assert with_specials == [ours.bos_token_id, *plain, ours.eos_token_id]
    else:  # GPT-2 and BertGeneration add nothing (`tokenization_bert_generation.py`)
        assert with_specials == plain


def test_bert_generation_reference_vectors():
    """Exact values of transformers' test_tokenization_bert_generation.py (`tokenization_bert_generation.py`)."""
    tok = load_tokenizer(SPM_FIXTURE)
    assert isinstance(tok, SentencePieceTokenizer)
    assert tok.sp_model.get_piece_size() == 1000 and tok.vocab_size == len(tok.get_vocab()) == 1002
    assert tok.token_to_id("<s>") == 1 and tok.id_to_token(1) == "<s>"
    assert tok.id_to_token(0) == "<unk>" and tok.id_to_token(1001) == "<pad>"
    assert (tok.sep_token_id, tok.pad_token_id) == (1000, 1001)
    assert tok.encode("This is a test") == [285, 46, 10, 170, 382]
    ids = tok.encode("I was born in 92000, and this is falsé.")
    assert ids == [8, 21, 84, 55, 24, 19, 7, 0, 602, 347, 347, 347, 3, 12, 66, 46, 72, 80, 6, 0, 4]
    tokens = [tok.id_to_token(i) for i in ids]
    assert tokens == [
        "▁I",
        "▁was",
        "▁b",
        "or",
        "n",
        "▁in",
        "▁",
        "<unk>",
        "2",
        "0",
        "0",
        "0",
        ",",
        "▁and",
        "▁this",
        "▁is",
        "▁f",
        "al",
        "s",
        "<unk>",
        ".",
    ]


def test_bert_generation_separator_is_one_special_token():
    """WikiSplit targets join sentences with ' <::::> ': one id, and decode concatenates it without spaces."""
    tok = load_tokenizer(SPM_FIXTURE)
    ids = tok.encode("First one . <::::> Second one .")
    assert ids.count(tok.sep_token_id) == 1
    assert tok.decode(ids, skip_special_tokens=False) == "First one .<::::>Second one ."
    assert tok.decode(ids) == "First one . Second one ."


def test_do_lower_case_false_from_tokenizer_config(tmp_path):
    shutil.copy(TOK / "bert-base-uncased-vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    ours = load_tokenizer(tmp_path)
    hf = transformers.BertTokenizer(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=False)
    text = "Hello World , Café in Zürich ."
    assert ours.encode(text) == hf.encode(text, add_special_tokens=False)
    assert ours.encode(text) != load_tokenizer(TOK / "bert-base-uncased-vocab.txt").encode(text)


def test_decode_accepts_tensors():
    tok = load_tokenizer(MINILM)
    seqs = tok.batch_encode(["a first sentence .", "and a second one ."], add_special_tokens=True)
    width = max(map(len, seqs))
    padded = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])
    assert tok.batch_decode(padded) == ["a first sentence.", "and a second one."]
    assert tok.decode(padded[0]) == "a first sentence."


def test_tokenizer_json_truncation_and_padding_are_off():
    """all-MiniLM-L6-v2's tokenizer.json pads/truncates to 128; like HF, encode returns the whole text."""
    tok = load_tokenizer(MINILM)
    assert tok.encode("word " * 300) == [tok.token_to_id("word")] * 300
    assert [len(s) for s in tok.batch_encode(["word " * 300, "word"])] == [300, 1]


def test_out_of_range_ids_raise(pair):
    _, ours, _ = pair
    with pytest.raises(ValueError, match="-100"):
        ours.decode([5, -100, 7])
    with pytest.raises(ValueError, match="outside"):
        ours.decode([ours.vocab_size + 10])


# ---------------------------------------------------------------------------------------------------------------
# Persistence
# ---------------------------------------------------------------------------------------------------------------


def test_save_load_round_trip_and_hf_reads_it(pair, tmp_path):
    name, ours, hf = pair
    ours.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert type(again) is type(ours) and again.kind == ours.kind and again.vocab_size == ours.vocab_size
    assert again.all_special_ids == ours.all_special_ids
    texts = TEXTS[:30] + EXTRA_TEXTS
    seqs = ours.batch_encode(texts, add_special_tokens=True)
    assert again.batch_encode(texts, add_special_tokens=True) == seqs
    assert again.batch_decode(seqs, skip_special_tokens=False) == ours.batch_decode(seqs, skip_special_tokens=False)
    # transformers reads the saved folder back to the same tokenizer.
    reread = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(reread) == ours.vocab_size
    assert [reread.encode(t, add_special_tokens=True) for t in texts] == seqs
    assert [reread.decode(s, skip_special_tokens=True) for s in seqs] == ours.batch_decode(seqs)


def test_pickle_round_trip(pair):
    _, ours, _ = pair
    clone = pickle.loads(pickle.dumps(ours))
    assert clone.batch_encode(TEXTS[:20]) == ours.batch_encode(TEXTS[:20])
    seq = ours.encode(TEXTS[1], add_special_tokens=True)
    assert clone.decode(seq, skip_special_tokens=False) == ours.decode(seq, skip_special_tokens=False)


def test_source_and_target_tokenizers_are_independent(bert_dir, gpt2_dir):
    """bert2gpt: BERT in, GPT-2 out, both alive at once; loading one does not change the other."""
    src = load_tokenizer(bert_dir)
    before = src.encode("the cat sat .", add_special_tokens=True)
    tgt = load_tokenizer(gpt2_dir)
    assert src.encode("the cat sat .", add_special_tokens=True) == before == [101, 1996, 4937, 2938, 1012, 102]
    assert tgt.encode("Hello world") == [15496, 995]  # data/README.md
    assert isinstance(src, FastTokenizer) and src.kind == "wordpiece" and tgt.kind == "bpe"


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers prepared for a task's text (Tokenizer.for_text; bertgen.text.TextConvention)
# ---------------------------------------------------------------------------------------------------------------
PREPARED = [("exact", False), ("digits", False), ("standard", None)]  # tokenized, bleu, natural (bertgen.text.STYLES)


@pytest.mark.parametrize("spacing,clean_up", PREPARED)
def test_prepared_tokenizer_saves_what_transformers_reads_back_identically(pair, spacing, clean_up, tmp_path):
    """The deliberate differences from the plain tokenizers live in the saved files, so transformers agrees with a
    prepared tokenizer exactly: same vocabulary, same ids, same text."""
    name, ours, hf = pair
    if ours.kind != "wordpiece" and spacing != "exact":
        pytest.skip("spacing only changes WordPiece; these families never clean up by default")
    before = ours.batch_encode(TEXTS)
    prepared = ours.for_text(atomic_tokens=["<::::>"], spacing=spacing, clean_up=clean_up)
    assert ours.batch_encode(TEXTS) == before  # the tokenizer it was made from is unchanged
    assert prepared.for_text(atomic_tokens=["<::::>"], spacing=spacing, clean_up=clean_up).batch_encode(
        TEXTS
    ) == prepared.batch_encode(TEXTS)  # applying it twice changes nothing
    prepared.save(tmp_path)
    reread = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert len(reread) == prepared.vocab_size == len(load_tokenizer(tmp_path))
    seqs = prepared.batch_encode(TEXTS, add_special_tokens=True)
    assert [reread.encode(t, add_special_tokens=True) for t in TEXTS] == seqs
    for skip in (True, False):
        assert [reread.decode(s, skip_special_tokens=skip) for s in seqs] == prepared.batch_decode(seqs, skip)
    assert load_tokenizer(tmp_path).batch_encode(TEXTS) == prepared.batch_encode(TEXTS)
    assert pickle.loads(pickle.dumps(prepared)).batch_encode(TEXTS[:20]) == prepared.batch_encode(TEXTS[:20])
    sep = prepared.token_to_id("<::::>")
    assert all(s.count(sep) == t.count("<::::>") for s, t in zip(seqs, TEXTS))  # one token, never split
    if spacing == "standard" and name not in ("gpt2", "roberta"):
        # natural text: the family's own pre-tokenisation (the separator aside)
        assert [s for s, t in zip(prepared.batch_encode(TEXTS), TEXTS) if "<::::>" not in t] == [
            s for s, t in zip(before, TEXTS) if "<::::>" not in t
        ]


def test_atomic_tokens_take_a_reserved_row_else_a_new_one(bert_dir, gpt2_dir, roberta_dir, spm_dir, tmp_path):
    bert = load_tokenizer(bert_dir).for_text(atomic_tokens=["<::::>", "<sep2>"])
    assert (bert.token_to_id("<::::>"), bert.token_to_id("<sep2>"), bert.vocab_size) == (1, 2, 30522)  # [unused0/1]
    assert bert.token_to_id("[unused0]") is None and bert.id_to_token(1) == "<::::>"
    roberta = load_tokenizer(roberta_dir).for_text(atomic_tokens=["<::::>"])  # the ids this vocab.json leaves out
    assert roberta.token_to_id("<::::>") == 50261 and max(roberta.get_vocab().values()) == 50264
    gpt2 = load_tokenizer(gpt2_dir).for_text(atomic_tokens=["<::::>"])  # no reserved row: appended
    assert (gpt2.token_to_id("<::::>"), gpt2.vocab_size) == (50257, 50258)
    assert gpt2.decode(gpt2.encode("A . <::::> B .")) == "A .<::::> B ."  # lstrip: no stray space token
    spm = load_tokenizer(spm_dir).for_text(atomic_tokens=["<::::>", "<sep2>"])
    assert spm.token_to_id("<::::>") == spm.sep_token_id == 1000  # BertGeneration's sep already
    assert (spm.token_to_id("<sep2>"), spm.vocab_size) == (1002, 1003)


def test_sentencepiece_non_special_added_tokens_decode_like_transformers(spm_dir, tmp_path):
    """A non-special added token is a sub-text of its own in transformers' slow decode (joined by one space)."""
    tok = load_tokenizer(spm_dir).for_text(atomic_tokens=["<sep2>"])
    tok.save(tmp_path)
    hf = transformers.BertGenerationTokenizer.from_pretrained(str(tmp_path))
    texts = ["a test<sep2>another one", " <sep2> lead", "end <sep2>", "x <::::> y <sep2> z </s>", "<sep2><sep2>"]
    for text in texts:
        ids = tok.encode(text)
        assert ids == hf.encode(text, add_special_tokens=False), text
        for skip in (True, False):
            assert tok.decode(ids, skip_special_tokens=skip) == hf.decode(ids, skip_special_tokens=skip), text
    assert load_tokenizer(tmp_path).encode(texts[0]) == tok.encode(texts[0])


def test_exact_and_digit_spacing_keep_every_join_the_metric_sees(bert_dir):
    bert = load_tokenizer(bert_dir)
    text = "'' Ronnie Mitchell 's '' mid-tempo U.S. 1,000 cars , 2019. ( 5-year ) ."
    exact = bert.for_text(spacing="exact", clean_up=False)
    assert exact.decode(exact.encode(text)) == text.lower()
    digits = bert.for_text(spacing="digits", clean_up=False)
    assert digits.decode(digits.encode(text)) == (
        "' ' ronnie mitchell ' s ' ' mid - tempo u . s . 1,000 cars , 2019. ( 5-year ) ."
    )
    assert bert.decode(bert.encode(text)) == (  # the plain tokenizer, with HF's clean-up
        "''ronnie mitchell's'' mid - tempo u. s. 1, 000 cars, 2019. ( 5 - year )."
    )


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------


def test_train_sentencepiece_layout_determinism_and_no_stray_files(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    texts = _wikisplit_texts(1000)[:2000]
    tok = train_sentencepiece(texts, 500, "bpe", output_dir=tmp_path / "out")
    assert list(cwd.iterdir()) == []
    assert tok.kind == "sentencepiece" and tok.vocab_size == 500
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id, tok.sep_token_id) == (0, 1, 2, 3, 4)
    again = train_sentencepiece(iter(texts), 500, "bpe", num_threads=1)
    assert again.get_vocab() == tok.get_vocab()

    sample = texts[1]
    assert " <::::> " in sample
    ids = tok.encode(sample)
    assert ids.count(4) == 1 and tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=False) == sample.replace(" <::::> ", "<::::>")

    loaded = load_tokenizer(tmp_path / "out")
    assert loaded.get_vocab() == tok.get_vocab() and loaded.encode(sample) == ids
    hf = transformers.BertGenerationTokenizer.from_pretrained(str(tmp_path / "out"))
    assert len(hf) == 500 and hf.encode(sample) == ids and hf.pad_token_id == 0


def test_train_sentencepiece_rejects_bad_input():
    with pytest.raises(ValueError, match="model_type"):
        train_sentencepiece(["a b c"], 100, "wordpiece")
    with pytest.raises(ValueError, match="no texts"):
        train_sentencepiece([], 100)
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        train_sentencepiece(["a b", None], 100)
    with pytest.raises(ValueError, match="vocab_size=100000"):
        train_sentencepiece(["just a few words here"] * 10, 100000)


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


def test_missing_vocabulary_names_folder_and_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TokenizerNotFoundError) as err:
        load_tokenizer(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message
    for name in ("spiece.model", "tokenizer.json", "vocab.txt", "vocab.json", "merges.txt"):
        assert name in message
    # vocab.json alone is not enough for byte-level BPE.
    shutil.copy(TOK / "gpt2-vocab.json", tmp_path / "vocab.json")
    with pytest.raises(TokenizerNotFoundError, match="merges.txt"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("name", ["spiece.model", "tokenizer.json", "vocab.txt"])
def test_corrupt_vocabulary_names_the_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"\x00\xffnot a vocabulary" if name != "vocab.txt" else b"just\nwords\n")
    with pytest.raises(ValueError, match=name):
        load_tokenizer(tmp_path)


def test_corrupt_merges_names_the_line(gpt2_dir, tmp_path):
    shutil.copy(gpt2_dir / "vocab.json", tmp_path / "vocab.json")
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ t\nbroken line here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3"):
        load_tokenizer(tmp_path)


def test_offline_hub_id_fails_fast():
    start = time.monotonic()
    with pytest.raises(CheckpointNotFoundError, match="google/bert_for_seq_generation_L-24_bbc_encoder"):
        load_tokenizer("google/bert_for_seq_generation_L-24_bbc_encoder")
    assert time.monotonic() - start < 10
    assert os.environ.get("HF_HUB_OFFLINE") == "1"

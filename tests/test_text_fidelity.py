"""Text fidelity (issue 10): a perfect prediction scores 100, whatever the tokenizer.

Over every shared task sample x every tokenizer family bertgen loads, the targets tokenised exactly as the DataModule
produces them, decoded by the pipeline's one ids-to-text function (``bertgen.text.decode_generated``) and scored by
the task's metrics give the headline metric >= 99.9, counting out only the targets the vocabulary cannot represent
(``bertgen.data.ceiling.reference_ceiling``). Also: ``<::::>`` is one token for every family, the conventions hold
on the source side, for the ``gpt`` prompt and for bert2gpt / roberta2gpt, vocabulary growth survives export, and an
exported model with its saved tokenizer gives the same ids, logits and text in transformers.

No cased BERT vocabulary is in the shared folder, so the cased WordPiece family is a vocabulary trained here on the
samples, laid out like Google's (``[PAD]``, ``[unusedN]``, ``[UNK]``.. ``[MASK]``, and the ``##`` form of every
character), read once from ``vocab.txt`` and once from the ``tokenizer.json`` it saves.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from bertgen.data import Seq2SeqDataModule
from bertgen.data.ceiling import TRUNCATED, format_ceiling, main, reference_ceiling
from bertgen.data.tasks import TASKS, text_convention
from bertgen.data.tasks.wikisplit import SPLIT_SEPARATOR
from bertgen.text import (
    LOSS_ACCENTS,
    STYLES,
    TextConvention,
    decode_generated,
    decode_text,
    representation_losses,
)
from bertgen.tokenization import load_tokenizer, train_sentencepiece
from bertgen.tokenization.special import special_id

from conftest import MINILM, SHARED

DATA = SHARED / "data"
TOK = DATA / "tokenizers"
ROWS = 200  # rows taken from the large samples (WikiSplit, XSum, WMT): the default run stays fast
LOSSLESS = ("gpt2", "roberta")  # byte-level BPE represents every text


# ---------------------------------------------------------------------------------------------------------------
# Samples and tokenizers (plain functions too, so a script can print the whole table)
# ---------------------------------------------------------------------------------------------------------------
def _head(src: Path, dst: Path, n: int) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, encoding="utf-8", newline="") as f:
        lines = [line for _, line in zip(range(n), f)]
    dst.write_text("".join(lines), encoding="utf-8", newline="")
    return dst


def build_samples(folder: Path, rows: int = ROWS) -> dict[str, tuple[type, dict, str]]:
    """task -> (task name, source kwargs, split) over the shared samples (the large ones cut to ``rows``)."""
    wiki = _head(DATA / "wikisplit/validation.tsv", folder / "wikisplit/validation.tsv", rows)
    xsum = folder / "xsum/test.jsonl"
    _head(DATA / "xsum/xsum_test_321.jsonl", xsum, rows)
    with open(xsum, "a", encoding="utf-8") as f:  # the transformers sample keeps its mojibake ("Â£")
        f.write((DATA / "xsum/hf_transformers_xsum_sample.jsonl").read_text(encoding="utf-8"))
    en = _head(DATA / "wmt14_en_de/src-test.txt", folder / "wmt/test.en", rows)
    de = _head(DATA / "wmt14_en_de/tgt-test.txt", folder / "wmt/test.de", rows)
    return {
        "wikisplit": ("wikisplit", {"data_files": {"validation": wiki}}, "validation"),
        "discofuse": (
            "discofuse",
            {"data_files": {"train": DATA / "discofuse/discofuse_examples.tsv"}},
            "train",
        ),
        "xsum": ("xsum", {"data_files": {"test": xsum}}, "test"),
        "cnn_dailymail": (
            "cnn_dailymail",
            {"data_files": {"train": DATA / "cnn_dailymail/train_sample_100.csv"}},
            "train",
        ),
        "gigaword": (
            "gigaword",
            {"data_files": {"train": DATA / "gigaword/text2text_gigaword_21.txt"}},
            "train",
        ),
        "wmt14_en_de": ("wmt14_en_de", {"data_files": {"test": [en, de]}}, "test"),
        "wmt14_de_en": ("wmt14_de_en", {"data_files": {"test": [de, en]}}, "test"),
    }


def _sample_texts(samples: dict) -> list[str]:
    texts = []
    for task, kwargs, split in samples.values():
        dm = Seq2SeqDataModule(task, load_tokenizer(TOK / "bert-base-uncased-vocab.txt"), batch_size=1, **kwargs)
        for _, src, tgt in dm.task.read_local(dm._local_entry(split), _NoInvalid()):
            texts += [src, tgt]
    return texts


class _NoInvalid:
    def report(self, *args, **kwargs):
        raise AssertionError(f"invalid row in a shared sample: {args}")


def _cased_wordpiece(folder: Path, texts: list[str]) -> Path:
    """A cased BERT-style vocab.txt trained on ``texts``, in the layout of Google's cased vocabulary."""
    import tokenizers
    from tokenizers import normalizers, pre_tokenizers, trainers
    from tokenizers.models import WordPiece

    tok = tokenizers.Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=12000, show_progress=False))
    learned = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    chars = sorted({t.removeprefix("##") for t in learned if len(t.removeprefix("##")) == 1})
    specials = ["[PAD]"] + [f"[unused{i}]" for i in range(20)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = list(dict.fromkeys(specials + learned + chars + [f"##{c}" for c in chars]))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": False}))
    return folder


def _bpe_folder(folder: Path, vocab: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(TOK / vocab, folder / "vocab.json")
    shutil.copy(TOK / "gpt2-merges.txt", folder / "merges.txt")
    return folder


def build_tokenizers(folder: Path, samples: dict) -> dict[str, object]:
    """Every tokenizer family bertgen loads, as the user would load it."""
    texts = _sample_texts(samples)
    cased = load_tokenizer(_cased_wordpiece(folder / "bert-cased", texts))
    cased.save(folder / "bert-cased-json")
    (folder / "spm").mkdir(parents=True)
    shutil.copy(TOK / "test_sentencepiece.model", folder / "spm" / "spiece.model")
    return {
        "bert-uncased-vocab": load_tokenizer(TOK / "bert-base-uncased-vocab.txt"),
        "bert-uncased-json": load_tokenizer(MINILM),
        "bert-cased-vocab": cased,
        "bert-cased-json": load_tokenizer(folder / "bert-cased-json"),
        "gpt2": load_tokenizer(_bpe_folder(folder / "gpt2", "gpt2-vocab.json")),
        "roberta": load_tokenizer(_bpe_folder(folder / "roberta", "roberta-base-vocab.json")),
        "bertgen-spm": load_tokenizer(folder / "spm"),
        "trained-spm": train_sentencepiece(texts, 8000, "bpe", character_coverage=1.0),
    }


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return build_samples(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="module")
def families(tmp_path_factory, samples):
    return build_tokenizers(tmp_path_factory.mktemp("tokenizers"), samples)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def _dm(samples, name, tok, cache, target_tokenizer=None, **options):
    task, kwargs, split = samples[name]
    # lengths that truncate nothing: only what the vocabulary cannot represent is counted out
    options = {"max_source_length": 4096, "max_target_length": 512, **options}
    return Seq2SeqDataModule(
        task, tok, target_tokenizer=target_tokenizer, cache_dir=cache, batch_size=8, task_options=options, **kwargs
    ), split


# ---------------------------------------------------------------------------------------------------------------
# The ceiling over every task x every tokenizer family
# ---------------------------------------------------------------------------------------------------------------
TASK_NAMES = ["wikisplit", "discofuse", "xsum", "cnn_dailymail", "gigaword", "wmt14_en_de", "wmt14_de_en"]
FAMILY_NAMES = [
    "bert-uncased-vocab",
    "bert-uncased-json",
    "bert-cased-vocab",
    "bert-cased-json",
    "gpt2",
    "roberta",
    "bertgen-spm",
    "trained-spm",
]


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("task", TASK_NAMES)
def test_references_through_their_own_ids_score_100(task, family, samples, families, cache):
    dm, split = _dm(samples, task, families[family], cache)
    result = reference_ceiling(dm, split)
    rep = result["representable"]
    assert result["examples"] == len(dm.datasets[split]) > 0
    assert TRUNCATED not in result["not_representable"]  # nothing truncated: only vocabulary losses counted out
    lost = result["examples"] - rep["examples"]
    assert lost == sum(result["not_representable"].values()) == dm.data_stats[f"data/{split}/unrepresentable_target"]
    if family in LOSSLESS or family.startswith("bert-cased") or family == "trained-spm":
        assert lost <= 0.02 * result["examples"], format_ceiling(result)  # a few rare characters at most
    if family in LOSSLESS:
        assert lost == 0 and result["score"] >= 99.9, format_ceiling(result)
    if family == "bertgen-spm":  # 1000 pieces trained on one novel: most news text has a piece it lacks
        assert set(result["not_representable"]) <= {"unknown pieces", "characters normalised"}
    if family.startswith("bert-uncased"):  # German umlauts: most WMT En->De targets lose an accent
        assert set(result["not_representable"]) <= {"accents stripped", "unknown pieces"}
    assert rep["examples"] >= 0.1 * result["examples"], format_ceiling(result)  # the check is not vacuous
    if rep["examples"]:
        assert rep["score"] >= 99.9, format_ceiling(result)


def test_the_issue_example_wikisplit_through_bert_wordpiece(samples, families, cache):
    """Issue 10: a perfect WikiSplit prediction through BERT's WordPiece scored 52.3 SARI."""
    dm, split = _dm(samples, "wikisplit", families["bert-uncased-json"], cache)
    result = reference_ceiling(dm, split)
    assert result["score"] >= 98.5 and result["representable"]["score"] == pytest.approx(100.0)
    assert result["metrics"]["exact"] >= 95
    row = dm.datasets[split].split.ids("target", 0).tolist()
    tok = dm.tokenizers[1]
    assert row.count(tok.token_to_id(SPLIT_SEPARATOR)) == 1 == dm.target_text(split, 0).count(SPLIT_SEPARATOR)
    text = decode_generated(tok, [[0] + row], eos_token_ids=[tok.sep_token_id], convention=dm.text_convention)[0]
    assert text == dm.target_text(split, 0).lower()  # "'' Ronnie Mitchell 's '' long lost": every join kept
    assert "''" in text and " 's " in text


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_separator_is_one_token_on_both_sides_for_every_family(family, families, tmp_path):
    path = tmp_path / "validation.tsv"
    path.write_text("A first <::::> sentence .\tThe first one . <::::> The second one .\n", encoding="utf-8")
    dm = Seq2SeqDataModule(
        "wikisplit", families[family], data_files={"validation": path}, cache_dir=tmp_path, batch_size=1
    )
    ds = dm.setup_split("validation")
    src_tok, tgt_tok = dm.tokenizers
    sep_id = tgt_tok.token_to_id(SPLIT_SEPARATOR)
    assert sep_id is not None and src_tok.token_to_id(SPLIT_SEPARATOR) == sep_id
    assert ds.split.ids("source", 0).tolist().count(sep_id) == 1
    assert ds.split.ids("target", 0).tolist().count(sep_id) == 1
    text = decode_generated(
        tgt_tok,
        [[0] + ds.split.ids("target", 0).tolist()],
        eos_token_ids=[special_id(tgt_tok, "eos", "eos")],
        convention=dm.text_convention,
    )
    assert text[0].lower() == "the first one . <::::> the second one ."
    raw = families[family]
    # the raw tokenizer decodes the same (decode_generated prepares it; GPT-2's id 50257 is not in it)
    assert (
        decode_generated(
            raw,
            [[0] + ds.split.ids("target", 0).tolist()],
            eos_token_ids=[special_id(tgt_tok, "eos", "eos")],
            convention=dm.text_convention,
        )
        == text
    )
    expected_row = {"gpt2": len(raw)}.get(family)  # GPT-2 has no reserved row: the token is appended
    if family.startswith("bert-"):
        expected_row = raw.token_to_id("[unused0]")  # BERT's first reserved row: no vocabulary growth
    elif family == "roberta":
        expected_row = 50261  # madeupword0000's row (absent from this vocab.json): inside the model's 50265 rows
    if expected_row is not None:
        assert sep_id == expected_row
    rows = max(raw.get_vocab().values()) + 1  # the rows a model of this vocabulary has
    assert max(tgt_tok.get_vocab().values()) + 1 == rows + (family == "gpt2")


def test_source_side_and_different_target_tokenizers_bert2gpt_roberta2gpt(samples, families, cache):
    """bert2gpt / roberta2gpt: BERT or RoBERTa sources, GPT-2 targets, one convention on both sides."""
    for src_family in ("bert-uncased-json", "roberta"):
        for task in ("wikisplit", "discofuse", "cnn_dailymail", "wmt14_en_de"):
            dm, split = _dm(samples, task, families[src_family], cache, target_tokenizer=families["gpt2"])
            result = reference_ceiling(dm, split)
            assert result["representable"]["examples"] == result["examples"]
            assert result["score"] >= 99.9, format_ceiling(result)
            # the sources come back from their own ids too (bos/eos and the source replacements aside)
            src_tok, conv, ds = dm.tokenizers[0], dm.text_convention, dm.datasets[split]
            sources = [dm.task.prepare_source(ds.source(i)) for i in range(len(ds))]
            ids = [ds.split.ids("source", i).tolist() for i in range(len(ds))]
            decoded = decode_generated(src_tok, [[0] + r for r in ids], convention=conv)
            losses = representation_losses(src_tok, sources, src_tok.batch_encode(sources), conv)
            for s, d, why in zip(sources, decoded, losses):
                if why is None or why == "lowercased":
                    assert conv.canonical(d).lower() == conv.canonical(s).lower()


def test_gpt_prompt_follows_the_convention(samples, families, cache):
    """The decoder-only ``gpt`` reads ``source <sep> target``: both parts decode back to their text."""
    from bertgen.data import LABEL_PAD
    from bertgen.model import DecoderOnlyLM

    tok = families["gpt2"]
    dm, split = _dm(samples, "wikisplit", tok, cache)
    ds = dm.setup_split(split)
    dm_tok, conv = dm.tokenizers[1], dm.text_convention
    batch = dm._collator()([ds[i] for i in range(4)])
    sep = dm_tok.eos_token_id
    joined = DecoderOnlyLM.prefix_lm_batch(
        batch["input_ids"], batch["attention_mask"], batch["labels"], dm_tok.pad_token_id or sep, sep
    )
    for row in range(4):
        ids = joined["input_ids"][row][joined["attention_mask"][row] == 1].tolist()
        labels = joined["labels"][row][joined["labels"][row] != LABEL_PAD].tolist()
        prompt = ids[: len(ids) - len(labels)]
        assert prompt[-1] == sep
        i = int(batch["index"][row])
        assert decode_text(dm_tok, [prompt], conv)[0] == ds.source(i)  # WikiSplit: <eos> source <eos> <sep>
        assert decode_generated(dm_tok, [[sep] + labels], eos_token_ids=[sep], convention=conv)[0] == ds.target(i)
        assert labels.count(dm_tok.token_to_id(SPLIT_SEPARATOR)) == ds.target(i).count(SPLIT_SEPARATOR)


def test_unrepresentable_targets_are_counted_per_split_and_logged_once(samples, families, tmp_path, caplog):
    dm, split = _dm(samples, "wmt14_en_de", families["bert-uncased-vocab"], tmp_path)
    with caplog.at_level(logging.WARNING, logger="bertgen.data.datamodule"):
        dm.setup_split(split)
        dm.setup_split(split)  # already set up: no second line
    lines = [r.getMessage() for r in caplog.records if "not exactly representable" in r.getMessage()]
    assert len(lines) == 1 and LOSS_ACCENTS in lines[0] and f"of {ROWS:,} targets" in lines[0]
    stats = dm.data_stats
    n = stats[f"data/{split}/unrepresentable_target"]
    assert (
        0
        < n
        == stats[f"data/{split}/unrepresentable_target/accents_stripped"]
        + stats.get(f"data/{split}/unrepresentable_target/unknown_pieces", 0)
        + stats.get(f"data/{split}/unrepresentable_target/characters_normalised", 0)
        + stats.get(f"data/{split}/unrepresentable_target/spacing_changed", 0)
    )
    assert stats[f"data/{split}/lowercased_target"] > 0
    meta = dm.datasets[split].split.meta
    assert meta["unrepresentable_target"] == n and meta["text_convention"]["style"] == "bleu"
    # a cached split keeps its counts: a second DataModule reads them without tokenising again
    again, _ = _dm(samples, "wmt14_en_de", families["bert-uncased-vocab"], tmp_path)
    again.setup_split(split)
    assert again.data_stats[f"data/{split}/unrepresentable_target"] == n


# ---------------------------------------------------------------------------------------------------------------
# Conventions
# ---------------------------------------------------------------------------------------------------------------
def test_every_task_declares_its_text_convention():
    assert {n: t().text_convention.style for n, t in TASKS.items()} == {
        "discofuse": "tokenized",
        "wikisplit": "tokenized",
        "gigaword": "tokenized",
        "cnn_dailymail": "natural",
        "xsum": "natural",
        "wmt14_en_de": "bleu",
        "wmt14_de_en": "bleu",
        "files": "natural",
        "quickstart": "tokenized",
    }
    assert TASKS["wikisplit"]().text_convention.atomic_tokens == (SPLIT_SEPARATOR,)
    assert all(TASKS[n]().text_convention.atomic_tokens == () for n in TASKS if n != "wikisplit")
    assert text_convention("files", {"text_style": "tokenized", "atomic_tokens": ["<sep>"]}) == TextConvention(
        "tokenized", ("<sep>",)
    )
    dm = Seq2SeqDataModule("wikisplit", load_tokenizer(MINILM), batch_size=1)
    assert text_convention(dm) == text_convention(dm.task) == dm.text_convention == text_convention("wikisplit")
    with pytest.raises(ValueError, match="text_style must be one of"):
        Seq2SeqDataModule("wikisplit", load_tokenizer(MINILM), batch_size=1, task_options={"text_style": "raw"})
    assert set(STYLES) == {"tokenized", "natural", "bleu"}


def test_natural_text_decodes_with_hf_clean_up_and_tokenized_text_never():
    raw = load_tokenizer(MINILM)
    text = "I do not know, he said. It's 5 p.m. in the U.S."
    natural, tokenized = TextConvention("natural"), TextConvention("tokenized")
    assert decode_generated(raw, [[0] + natural.prepare(raw).encode(text)], convention=natural) == [
        "i do not know, he said. it's 5 p. m. in the u. s."
    ]  # HF's clean_up_tokenization; ROUGE sees no change
    assert decode_generated(raw, [[0] + tokenized.prepare(raw).encode(text)], convention=tokenized) == [text.lower()]
    assert natural.prepare(raw).encode(text) == raw.encode(text)  # natural text: BERT's own pre-tokenisation


def test_decode_generated_cuts_drops_and_keeps_the_old_path():
    tok = load_tokenizer(MINILM)
    conv = TextConvention("tokenized", (SPLIT_SEPARATOR,))
    ids = conv.prepare(tok).encode("a b . <::::> c d .")
    seq = [tok.cls_token_id, *ids, tok.sep_token_id, 2003, tok.pad_token_id]
    assert decode_generated(tok, torch.tensor([seq]), eos_token_ids=[tok.sep_token_id], convention=conv) == [
        "a b . <::::> c d ."
    ]
    # ids a model emits that are never text are dropped; an unknown token stays visible
    noisy = [tok.cls_token_id, tok.cls_token_id, *ids[:2], tok.mask_token_id, tok.unk_token_id, tok.pad_token_id]
    assert decode_generated(tok, [noisy], convention=conv) == ["a b [UNK]"]
    # without a convention: the old path, unchanged ("<::::>" in 6 WordPiece pieces, BERT's clean-up)
    old = tok.encode("a b . <::::> c")
    assert decode_generated(tok, [[tok.cls_token_id, *old]], eos_token_ids=[tok.sep_token_id]) == ["a b. < : : : : > c"]


# ---------------------------------------------------------------------------------------------------------------
# Vocabulary growth, checkpoints and the transformers export
# ---------------------------------------------------------------------------------------------------------------
def _tiny(family: str, vocab_size: int, **kw) -> dict:
    return dict(
        family=family,
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        **kw,
    )


@pytest.mark.parametrize("decoder_family", ["bert", "gpt2"])
def test_exported_model_and_tokenizer_reproduce_ids_logits_and_text_in_transformers(
    decoder_family, samples, families, tmp_path
):
    """bert2bert ([unused0] row, no growth) and bert2gpt (GPT-2 grows a row) on WikiSplit, warm-started from
    checkpoint folders, exported, read back by transformers."""
    transformers = pytest.importorskip("transformers")
    from bertgen.model import DecoderOnlyLM, EncoderDecoder, ModelConfig

    torch.manual_seed(0)
    src_raw = families["bert-uncased-json"]
    tgt_raw = src_raw if decoder_family == "bert" else families["gpt2"]
    dm, split = _dm(
        samples,
        "wikisplit",
        src_raw,
        tmp_path / "cache",
        target_tokenizer=None if decoder_family == "bert" else tgt_raw,
    )
    ds = dm.setup_split(split)
    src_tok, tgt_tok = dm.tokenizers
    sep = tgt_tok.token_to_id(SPLIT_SEPARATOR)
    # warm-start checkpoints in the HF layout: a (tiny, random) BERT and GPT-2 of the real vocabulary sizes
    bert_dir, dec_dir = tmp_path / "bert", tmp_path / "dec"
    _save_stack(ModelConfig(**_tiny("bert", 30522, type_vocab_size=2)), bert_dir)
    if decoder_family == "gpt2":
        DecoderOnlyLM(
            ModelConfig(**_tiny("gpt2", 50257, pad_token_id=None, bos_token_id=50256, eos_token_id=50256))
        ).save_pretrained(dec_dir)
    else:
        dec_dir = bert_dir
    start = tgt_tok.bos_token_id if tgt_tok.bos_token_id is not None else tgt_tok.cls_token_id
    eos = special_id(tgt_tok, "eos", "eos")
    pad = tgt_tok.pad_token_id if tgt_tok.pad_token_id is not None else eos
    model = EncoderDecoder.from_encoder_decoder_pretrained(
        bert_dir,
        dec_dir,
        decoder_start_token_id=start,
        eos_token_id=eos,
        pad_token_id=pad,
        encoder_vocab_size=len(src_tok),
        decoder_vocab_size=len(tgt_tok),
    ).eval()
    assert model.config.decoder.vocab_size == max(len(tgt_tok), 30522 if decoder_family == "bert" else 0)
    if decoder_family == "gpt2":  # the appended row: new, initialised the BERT way
        row = model.decoder.embed.word.weight[sep]
        assert len(tgt_tok) == 50258 and sep == 50257 and 0.005 < float(row.detach().std()) < 0.05
    else:  # the reserved row of the checkpoint, unchanged
        from safetensors.torch import load_file

        ckpt_rows = load_file(bert_dir / "model.safetensors")["embeddings.word_embeddings.weight"]
        assert sep == 1 and torch.equal(model.decoder.embed.word.weight[sep], ckpt_rows[sep])
    out = tmp_path / "export"
    model.save_pretrained(out)
    tgt_tok.save(out)
    if tgt_tok is not src_tok:
        src_tok.save(out / "source_tokenizer")
    # bertgen reads its export back
    again = EncoderDecoder.from_pretrained(out).eval()
    # transformers reads the folder: same ids for the texts, same logits, same greedy ids, same text
    hf_model = transformers.EncoderDecoderModel.from_pretrained(str(out)).eval()
    hf_tgt = transformers.AutoTokenizer.from_pretrained(str(out))
    hf_src = hf_tgt if tgt_tok is src_tok else transformers.AutoTokenizer.from_pretrained(str(out / "source_tokenizer"))
    idx = [0, 1, 2]
    sources = [dm.task.prepare_source(ds.source(i)) for i in idx]
    targets = [ds.target(i) for i in idx]
    for i, s, t in zip(idx, sources, targets):
        assert hf_src.encode(s, add_special_tokens=False) == ds.split.ids("source", i).tolist()[1:-1]
        assert hf_tgt.encode(t, add_special_tokens=False) + [eos] == ds.split.ids("target", i).tolist()
    batch = dm._collator()([ds[i] for i in idx])
    labels = batch["labels"]
    with torch.no_grad():
        ours = model(batch["input_ids"], batch["attention_mask"], labels=labels).logits
        back = again(batch["input_ids"], batch["attention_mask"], labels=labels).logits
        dec_in = model.shift_labels(labels)
        dec_mask = torch.ones_like(labels)
        dec_mask[:, 1:] = labels[:, :-1] != -100
        theirs = hf_model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            decoder_input_ids=dec_in,
            decoder_attention_mask=dec_mask,
        ).logits
    keep = labels != -100
    assert torch.allclose(ours[keep], theirs[keep], atol=1e-4) and torch.equal(ours, back)
    # the separator's row is in the exported model: the text "<::::>" round-trips through transformers' ids
    hf_ids = hf_tgt.encode(targets[0], add_special_tokens=False)
    assert hf_ids.count(sep) == 1 and hf_tgt.convert_ids_to_tokens(sep) == SPLIT_SEPARATOR
    with torch.no_grad():
        gen = model.generate(batch["input_ids"], batch["attention_mask"], num_beams=1, max_new_tokens=6)
        hf_gen = hf_model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            num_beams=1,
            max_new_tokens=6,
            do_sample=False,
            decoder_start_token_id=start,
            eos_token_id=eos,
            pad_token_id=pad,
        )
    n = min(gen.shape[1], hf_gen.shape[1])
    assert torch.equal(gen[:, :n], hf_gen[:, :n])
    conv = dm.text_convention
    seqs = [[start] + ds.split.ids("target", i).tolist() for i in idx] + gen.tolist()
    ours_text = decode_generated(tgt_tok, seqs, eos_token_ids=[eos], drop_ids=[pad, start], convention=conv)
    hf_text = [
        conv.finish(
            hf_tgt.decode([t for t in s[1:] if t not in (pad, start)][: _cut(s[1:], eos)], skip_special_tokens=True)
        )
        for s in seqs
    ]
    assert ours_text == hf_text
    assert ours_text[:3] == [t.lower() if decoder_family == "bert" else t for t in targets]


def _cut(ids: list[int], eos: int) -> int:
    return ids.index(eos) if eos in ids else len(ids)


def _save_stack(cfg, folder: Path) -> None:
    """A bare BERT checkpoint folder (``BertModel`` layout) with random weights."""
    from bertgen.model import hf_weights as ckpt
    from bertgen.model.config import write_json
    from bertgen.model.transformer import TransformerStack

    folder.mkdir(parents=True, exist_ok=True)
    stack = TransformerStack(cfg)
    write_json(folder / "config.json", {**cfg.to_hf_dict(), "architectures": ["BertModel"]})
    ckpt.write_weights(folder, ckpt.export_stack(stack, "", with_head=False, add_pooler=True))


def test_decoder_only_growth_round_trips_through_save_and_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    from bertgen.model import DecoderOnlyLM, ModelConfig

    torch.manual_seed(0)
    base = DecoderOnlyLM(ModelConfig(**_tiny("gpt2", 50257, pad_token_id=None, bos_token_id=50256, eos_token_id=50256)))
    base.save_pretrained(tmp_path / "base")
    grown = DecoderOnlyLM.from_pretrained(tmp_path / "base", vocab_size=50258)
    assert grown.config.vocab_size == 50258
    assert torch.equal(grown.decoder.embed.word.weight[:50257], base.decoder.embed.word.weight)
    with pytest.raises(ValueError, match="fewer than the 50257 embedding rows"):  # never shrinks: another vocabulary
        DecoderOnlyLM.from_pretrained(tmp_path / "base", vocab_size=100)
    grown.save_pretrained(tmp_path / "grown")
    again = DecoderOnlyLM.from_pretrained(tmp_path / "grown")
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(tmp_path / "grown")).eval()
    ids = torch.tensor([[15496, 995, 50257, 11]])
    with torch.no_grad():
        assert torch.allclose(again.eval()(ids).logits, hf(ids).logits, atol=1e-4)
    with pytest.raises(ValueError, match="config.json and weights disagree"):  # growth only when asked for
        cfg = json.loads((tmp_path / "base" / "config.json").read_text())
        (tmp_path / "bad").mkdir()
        shutil.copy(tmp_path / "base" / "model.safetensors", tmp_path / "bad")
        (tmp_path / "bad" / "config.json").write_text(json.dumps({**cfg, "vocab_size": 50300}))
        DecoderOnlyLM.from_pretrained(tmp_path / "bad")


# ---------------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------------
def test_ceiling_command_prints_the_table_line(tmp_path, capsys):
    path = _head(DATA / "wikisplit/validation.tsv", tmp_path / "validation.tsv", 30)
    assert (
        main(
            [
                "--task",
                "wikisplit",
                "--tokenizer",
                str(MINILM),
                "--data-file",
                f"validation={path}",
                "--cache-dir",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "sari ceiling" in out and "over 30 references" in out
    assert (
        main(
            [
                "--task",
                "wikisplit",
                "--tokenizer",
                str(MINILM),
                "--data-file",
                f"validation={path}",
                "--cache-dir",
                str(tmp_path / "c"),
                "--json",
                "--option",
                "max_target_length=64",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert (
        result["headline"] == "sari" and result["examples"] == 30 and result["text_convention"]["style"] == "tokenized"
    )

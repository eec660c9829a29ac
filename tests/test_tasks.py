"""Task readers on the real samples in shared/data (local-file path of every task), bad input, offline behaviour."""

from __future__ import annotations

import logging
import shutil
import time
import unicodedata

import pytest

from bertgen.data import DataFormatError, DatasetUnavailableError, Seq2SeqDataModule
from bertgen.data.errors import InvalidRows
from bertgen.data.tasks import TASKS

from conftest import SHARED

DATA = SHARED / "data"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


# (task, source kwargs, expected rows per split) -- counts are the files' row counts (shared/data/README.md)
REAL = {
    "wikisplit": (
        "wikisplit",
        {"data_dir": DATA / "wikisplit"},
        {"validation": 5000, "test": 5000, "tune": 5000},
    ),
    "discofuse": (
        "discofuse",
        {"data_files": {"train": DATA / "discofuse/discofuse_examples.tsv"}},
        {"train": 4},
    ),
    "cnn_dailymail": (
        "cnn_dailymail",
        {"data_files": {"train": DATA / "cnn_dailymail/train_sample_100.csv"}},
        {"train": 100},
    ),
    "xsum": (
        "xsum",
        {
            "data_files": {
                "test": DATA / "xsum/xsum_test_321.jsonl",
                "validation": DATA / "xsum/hf_transformers_xsum_sample.jsonl",
                "train": DATA / "xsum/10000983.summary",
            }
        },
        {"test": 321, "validation": 10, "train": 1},
    ),
    "gigaword": (
        "gigaword",
        {"data_files": {"train": DATA / "gigaword/text2text_gigaword_21.txt"}},
        {"train": 21},
    ),
    "wmt14_en_de": (
        "wmt14_en_de",
        {"data_dir": DATA / "wmt14_en_de"},
        {"train": 10000, "validation": 3000, "test": 2737},
    ),
    "wmt14_de_en": (
        "wmt14_de_en",
        {"data_dir": DATA / "wmt14_en_de"},
        {"train": 10000, "validation": 3000, "test": 2737},
    ),
}


def _normalise(text: str, uncased: bool) -> str:
    """What survives a tokenizer round trip: no whitespace, no control or format chars; uncased WordPiece also
    drops case/accents."""
    text = unicodedata.normalize("NFKD" if uncased else "NFKC", text)
    dropped = ("Mn", "Cc", "Cf") if uncased else ("Cc", "Cf")  # BERT's cleaning + accent stripping
    text = "".join(c for c in text if unicodedata.category(c) not in dropped and c != "\ufffd")
    return "".join((text.casefold() if uncased else text).split())


def _build(name, tok, cache, **extra):
    task, kwargs, _ = REAL[name]
    dm = Seq2SeqDataModule(task, tok, cache_dir=cache, batch_size=16, **kwargs, **extra)
    dm.prepare_data()
    dm.setup()
    return dm


@pytest.mark.parametrize("name", list(REAL))
def test_real_samples_row_counts_and_round_trip(name, wordpiece, cache):
    dm = _build(name, wordpiece, cache)
    expected = REAL[name][2]
    assert {s: len(d) for s, d in dm.datasets.items()} == expected
    for split, n in expected.items():
        assert dm.data_stats[f"data/{split}/examples"] == n
        assert dm.data_stats[f"data/{split}/invalid_rows"] == 0
    max_t = dm.task.max_target_length
    checked = 0
    for split, ds in dm.datasets.items():
        for i in range(len(ds)):
            ids = ds.split.ids("target", i).tolist()
            assert ids[-1] == wordpiece.sep_token_id  # WordPiece has no eos: [SEP] ends targets
            body = ids[:-1]
            if len(ids) == max_t or wordpiece.token_to_id("[UNK]") in body:
                continue  # truncated or lossy: counted, not compared
            assert _normalise(dm.tokenizers[1].decode(body), True) == _normalise(ds.target(i), True), (split, i)
            checked += 1
    assert checked >= 0.95 * sum(expected.values())


@pytest.mark.parametrize("name", ["wikisplit", "discofuse", "xsum", "gigaword"])
def test_round_trip_sentencepiece(name, spiece, cache):
    dm = _build(name, spiece, cache)
    checked = 0
    for ds in dm.datasets.values():
        for i in range(len(ds)):
            ids = ds.split.ids("target", i).tolist()
            assert ids[-1] == spiece.eos_token_id == 2
            if len(ids) == dm.task.max_target_length or spiece.unk_token_id in ids:
                continue
            assert _normalise(spiece.decode(ids[:-1], skip_special_tokens=False), False) == _normalise(
                ds.target(i), False
            )
            checked += 1
    assert checked > 0


def test_discofuse_source_target_and_quote_convention(wordpiece, cache, tmp_path):
    dm = _build("discofuse", wordpiece, cache)
    ds = dm.datasets["train"]
    # row 2 of the file: coherent_second is empty -> target is coherent_first alone
    assert (
        ds.source(1)
        == "Melvyn Douglas originally was signed to play Sam Bailey . The role ultimately went to Walter Pidgeon ."
    )
    assert (
        ds.target(1)
        == "Melvyn Douglas originally was signed to play Sam Bailey , but the role ultimately went to Walter Pidgeon ."
    )
    assert ds.target(0).startswith("Four LPr") and "Finally , an HP Netserver" in ds.target(0)
    assert dm.task.source_replacements == {'"': "`"}
    # the option changes the tokenised source (the default replaces ", overriding it keeps ")
    folder = tmp_path
    rows = (DATA / "discofuse/discofuse_examples.tsv").read_text().splitlines()
    f = rows[1].split("\t")
    f[2] = 'He said "yes" .'
    (folder / "train.tsv").write_text("\n".join([rows[0], "\t".join(f)]) + "\n")
    ids = {}
    for opts in ({}, {"source_replacements": {}}):
        d = Seq2SeqDataModule("discofuse", wordpiece, data_dir=folder, cache_dir=cache, batch_size=2, task_options=opts)
        d.setup(None)
        ids[bool(opts)] = d.datasets["train"].split.ids("source", 0).tolist()
        assert '"yes"' in d.datasets["train"].source(0)  # raw string unchanged either way
    assert wordpiece.token_to_id("`") in ids[False] and wordpiece.token_to_id('"') not in ids[False]
    assert wordpiece.token_to_id('"') in ids[True]


def test_wikisplit_conventions(wordpiece, spiece, cache):
    for tok, bos, eos in ((spiece, 1, 2), (wordpiece, wordpiece.cls_token_id, wordpiece.sep_token_id)):
        dm = _build("wikisplit", tok, cache)
        ds = dm.datasets["validation"]
        assert " <::::> " in ds.target(0)
        src = ds.split.ids("source", 0).tolist()
        assert src[0] == bos and src[-1] == eos
    dm = Seq2SeqDataModule(
        "wikisplit",
        spiece,
        data_dir=DATA / "wikisplit",
        cache_dir=cache,
        batch_size=4,
        task_options={"add_source_bos": False, "add_source_eos": False},
    )
    dm.setup("validate")
    assert dm.datasets["validation"].split.ids("source", 0).tolist() == spiece.encode(dm.source_text("validation", 0))


def test_gigaword_text2text_first_sentence_lowercased(wordpiece, cache):
    ds = _build("gigaword", wordpiece, cache).datasets["train"]
    assert ds.target(0) == "sri lanka closes schools as war escalates ."
    assert ds.source(0).startswith("the sri lankan government on wednesday announced")
    assert ds.source(0).endswith(" .") and ds.source(0).count(" . ") == 0
    for i in range(len(ds)):
        assert "<s>" not in ds.source(i) + ds.target(i) and ds.source(i) == ds.source(i).lower()


def test_gigaword_line_aligned_layout(wordpiece, tmp_path):
    (tmp_path / "train.src").write_text("A First Sentence .\nsecond one .\n")
    (tmp_path / "train.tgt").write_text("Title One\ntitle two\n")
    dm = Seq2SeqDataModule("gigaword", wordpiece, data_dir=tmp_path, cache_dir=tmp_path / "c", batch_size=2)
    dm.setup(None)
    ds = dm.datasets["train"]
    assert [ds.source(0), ds.target(0)] == ["a first sentence .", "title one"]
    assert dm.task.max_target_length == 32  # paper §2


def test_cnndm_highlights_keep_newlines(wordpiece, cache):
    dm = _build("cnn_dailymail", wordpiece, cache)
    ds = dm.datasets["train"]
    assert (dm.task.max_source_length, dm.task.max_target_length) == (512, 128)
    assert all("\n" in ds.target(i) for i in range(len(ds)) if ds.target(i).count(" .") > 1)
    assert sum("\n" in ds.target(i) for i in range(len(ds))) > 90
    assert dm.data_stats["data/train/truncated_source"] > 0  # most articles exceed 512 wordpieces


def test_xsum_summary_release_format(wordpiece, cache, tmp_path):
    ds = _build("xsum", wordpiece, cache).datasets["train"]
    assert ds.target(0).startswith('It\'s being called "evil"')
    assert ds.source(0).startswith("Well, it's how the idea of Britain's NHS")
    # the release layout: bbc-summary-data/ + split json
    (tmp_path / "bbc-summary-data").mkdir()
    shutil.copy(DATA / "xsum/10000983.summary", tmp_path / "bbc-summary-data")
    (tmp_path / "XSum-TRAINING-DEV-TEST-SPLIT-90-5-5.json").write_text(
        '{"train": [], "validation": [], "test": ["10000983"]}'
    )
    dm = Seq2SeqDataModule("xsum", wordpiece, data_dir=tmp_path, cache_dir=tmp_path / "c", batch_size=2)
    dm.setup("test")
    assert dm.target_text("test", 0) == ds.target(0)


def test_wmt_directions_and_moses_unescape(wordpiece, cache):
    en_de = _build("wmt14_en_de", wordpiece, cache).datasets["test"]
    de_en = _build("wmt14_de_en", wordpiece, cache).datasets["test"]
    assert en_de.source(0).startswith("Orlando Bloom and Miranda Kerr still love each other")
    assert de_en.target(0) == en_de.source(0) and de_en.source(0) == en_de.target(0)
    raw = (DATA / "wmt14_en_de/src-test.txt").read_text().splitlines()
    i = next(k for k, line in enumerate(raw) if "&apos;" in line)
    assert "&apos;" not in en_de.source(i) and "'" in en_de.source(i)
    # no special tokens on the source by default (released MT checkpoints)
    assert en_de.split.ids("source", 0).tolist() == wordpiece.encode(en_de.source(0))


def test_task_defaults_follow_the_paper():
    lengths = {n: (t().max_source_length, t().max_target_length) for n, t in TASKS.items() if t.paper}
    assert lengths == {
        "discofuse": (128, 128),
        "wikisplit": (128, 128),
        "gigaword": (128, 32),
        "cnn_dailymail": (512, 128),
        "xsum": (512, 64),
        "wmt14_en_de": (128, 128),
        "wmt14_de_en": (128, 128),
    }
    assert TASKS["gigaword"]().lowercase and not TASKS["cnn_dailymail"]().lowercase
    assert TASKS["discofuse"]().hub_config == "discofuse-wikipedia" and TASKS["cnn_dailymail"]().hub_config == "3.0.0"


def test_hub_rows_are_built_like_local_rows():
    w = TASKS["wikisplit"]()
    inv = InvalidRows()
    rows = [{"complex_sentence": "A and B .", "simple_sentence_1": "A .", "simple_sentence_2": "B ."}]
    assert list(w.read_hub_rows(iter(rows), "hub[train]", inv)) == [("hub[train] row 1", "A and B .", "A . <::::> B .")]
    t = TASKS["wmt14_de_en"]()
    assert t.hub_example({"translation": {"de": "Hallo", "en": "Hello"}}) == ("Hallo", "Hello")
    d = TASKS["discofuse"]()
    row = dict(
        coherent_first_sentence="A , but B .",
        coherent_second_sentence="",
        incoherent_first_sentence="A .",
        incoherent_second_sentence="B .",
    )
    assert d.hub_example(row) == ("A . B .", "A , but B .")
    with pytest.raises(DataFormatError, match=r"hub\[train\] row 1: empty target"):
        list(w.read_hub_rows(iter([{**rows[0], "simple_sentence_1": "", "simple_sentence_2": " "}]), "hub[train]", inv))


# ---------------------------------------------------------------------------------------------------------------
# Bad input: an error naming file and line, or (skip_invalid) dropped and counted.
WIKI_OK = "A and B .\tA . <::::> B .\n"

BAD_CASES = {
    "wrong_column_count": ("wikisplit", "validation.tsv", WIKI_OK + "only one column\n" + WIKI_OK, 2),
    "empty_source": ("wikisplit", "validation.tsv", WIKI_OK + " \tA . <::::> B .\n" + WIKI_OK, 2),
    "empty_target": ("wikisplit", "validation.tsv", WIKI_OK + WIKI_OK + "C and D .\t\n", 3),
    "invalid_utf8": (
        "wikisplit",
        "validation.tsv",
        WIKI_OK.encode() + b"caf\xe9 .\tx .\n" + WIKI_OK.encode(),
        2,
    ),
    "invalid_json": ("xsum", "validation.jsonl", '{"document": "d", "summary": "s"}\n{"document": \n', 2),
    "missing_field": ("xsum", "validation.jsonl", '{"document": "d", "summary": "s"}\n{"document": "d"}\n', 2),
    "malformed_key_value": (
        "gigaword",
        "validation.txt",
        'target="<s> t . </s>"\tsource="<s> s . </s>"\nnot a kv line\n',
        2,
    ),
}


@pytest.mark.parametrize("reason", list(BAD_CASES))
def test_bad_rows_raise_with_location_or_are_counted(reason, wordpiece, tmp_path):
    task, name, content, line = BAD_CASES[reason]
    path = tmp_path / "data" / name
    path.parent.mkdir()
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    dm = Seq2SeqDataModule(task, wordpiece, data_dir=path.parent, cache_dir=tmp_path / "c", batch_size=2)
    with pytest.raises(DataFormatError) as e:
        dm.setup("validate")
    assert f"{path}:{line}: {reason.replace('_', ' ')}" in str(e.value)
    dm = Seq2SeqDataModule(
        task, wordpiece, data_dir=path.parent, cache_dir=tmp_path / "c", batch_size=2, skip_invalid=True
    )
    dm.setup("validate")
    assert dm.data_stats["data/validation/invalid_rows"] == 1
    assert dm.data_stats[f"data/validation/invalid/{reason}"] == 1
    n_lines = content.count(b"\n" if isinstance(content, bytes) else "\n")
    assert len(dm.datasets["validation"]) == n_lines - 1


def test_skip_summary_line_is_logged(wordpiece, tmp_path, caplog):
    (tmp_path / "validation.tsv").write_text(WIKI_OK + "bad\n" + "x\t\n" + WIKI_OK)
    dm = Seq2SeqDataModule(
        "wikisplit", wordpiece, data_dir=tmp_path, cache_dir=tmp_path / "c", batch_size=2, skip_invalid=True
    )
    with caplog.at_level(logging.WARNING, logger="bertgen.data"):
        dm.setup("validate")
    msg = "\n".join(r.getMessage() for r in caplog.records)
    assert "wikisplit/validation: dropped 2 invalid rows" in msg
    assert f"{tmp_path / 'validation.tsv'}:2" in msg and f"{tmp_path / 'validation.tsv'}:3" in msg
    # a cache hit reports the same counts (they live in the cache's meta)
    again = Seq2SeqDataModule(
        "wikisplit", wordpiece, data_dir=tmp_path, cache_dir=tmp_path / "c", batch_size=2, skip_invalid=True
    )
    again.setup("validate")
    assert again.data_stats == dm.data_stats


def test_structural_errors_always_raise(wordpiece, tmp_path):
    # misaligned parallel files
    (tmp_path / "train.en").write_text("a\nb\nc\n")
    (tmp_path / "train.de").write_text("x\ny\n")
    dm = Seq2SeqDataModule(
        "wmt14_en_de",
        wordpiece,
        data_files={"train": [tmp_path / "train.en", tmp_path / "train.de"]},
        cache_dir=tmp_path / "c",
        batch_size=2,
        skip_invalid=True,
    )
    with pytest.raises(DataFormatError, match=r"train\.en:3: line-aligned files differ in length"):
        dm.setup("fit")
    # a DiscoFuse file without its header
    (tmp_path / "d.tsv").write_text("\t".join(["a"] * 8) + "\n")
    dm = Seq2SeqDataModule(
        "discofuse", wordpiece, data_files={"train": tmp_path / "d.tsv"}, cache_dir=tmp_path / "c", batch_size=2
    )
    with pytest.raises(DataFormatError, match=r"d\.tsv:1: expected the header"):
        dm.setup(None)
    # a CSV record with a wrong field count
    (tmp_path / "t.csv").write_text('id,article,highlights\n1,"an article","a highlight"\n2,"x"\n')
    dm = Seq2SeqDataModule(
        "cnn_dailymail", wordpiece, data_files={"train": tmp_path / "t.csv"}, cache_dir=tmp_path / "c", batch_size=2
    )
    with pytest.raises(DataFormatError, match=r"t\.csv:3: wrong column count"):
        dm.setup(None)


def test_from_files_formats(wordpiece, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [("the source one", "target one"), ("source two", "the target two")]
    (tmp_path / "d.tsv").write_text("id\tsrc\ttgt\n" + "".join(f"{i}\t{s}\t{t}\n" for i, (s, t) in enumerate(rows)))
    (tmp_path / "d.csv").write_text("src,tgt\n" + "".join(f'"{s}","{t}"\n' for s, t in rows))
    (tmp_path / "d.jsonl").write_text("".join(f'{{"src": "{s}", "tgt": "{t}", "x": 1}}\n' for s, t in rows))
    pq.write_table(pa.table({"src": [s for s, _ in rows], "tgt": [t for _, t in rows]}), tmp_path / "d.parquet")
    for ext in ("tsv", "csv", "jsonl", "parquet"):
        dm = Seq2SeqDataModule.from_files(
            wordpiece,
            data_files={"train": tmp_path / f"d.{ext}"},
            source_column="src",
            target_column="tgt",
            cache_dir=tmp_path / "c",
            batch_size=2,
        )
        dm.setup(None)
        ds = dm.datasets["train"]
        assert [(ds.source(i), ds.target(i)) for i in range(len(ds))] == rows, ext
    with pytest.raises(DataFormatError, match=r"d\.csv:1: CSV header .* lacks column\(s\) \['nope'\]"):
        Seq2SeqDataModule.from_files(
            wordpiece,
            data_files={"train": tmp_path / "d.csv"},
            source_column="nope",
            target_column="tgt",
            cache_dir=tmp_path / "c",
            batch_size=2,
        ).setup(None)


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", [name for name, cls in TASKS.items() if cls.sources])
def test_offline_without_local_copy_fails_at_once_with_one_message(task, wordpiece, tmp_path):
    dm = Seq2SeqDataModule(task, wordpiece, cache_dir=tmp_path, batch_size=2)
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as e:
        dm.setup("fit")
    assert time.perf_counter() - start < 20
    msg = str(e.value)
    assert dm.task.hub_path in msg and "offline mode" in msg and "data_dir" in msg
    assert "Accepted data_dir layouts" in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__  # one message, no chained traceback


def test_missing_local_layout_names_the_accepted_ones(wordpiece, tmp_path):
    dm = Seq2SeqDataModule("wikisplit", wordpiece, data_dir=tmp_path, cache_dir=tmp_path, batch_size=2)
    with pytest.raises(DatasetUnavailableError, match=r"no local 'train' split under .*train: train\.tsv"):
        dm.setup("fit")
    dm = Seq2SeqDataModule(
        "wmt14_de_en",
        wordpiece,
        data_files={"train": (tmp_path / "a", tmp_path / "b")},
        cache_dir=tmp_path,
        batch_size=2,
    )
    with pytest.raises(DatasetUnavailableError, match="does not exist"):
        dm.setup("fit")

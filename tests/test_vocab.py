"""``bertgen-data vocab``: a task's own WordPiece / SentencePiece vocabulary, read back by bertgen and transformers,
with the task's text round trip intact; bad input is one message before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertgen.data.cli import main as data_cli
from bertgen.tokenization import load_tokenizer

from conftest import SHARED

WMT = SHARED / "data" / "wmt14_en_de"
ROWS = 400


@pytest.fixture(scope="module")
def wmt_dir(tmp_path_factory) -> Path:
    """The first WMT14 En-De training rows as a task data folder (OpenNMT layout); validation = test = training."""
    folder = tmp_path_factory.mktemp("wmt")
    for side in ("src", "tgt"):
        rows = (WMT / f"{side}-train.txt").read_text(encoding="utf-8").splitlines()[:ROWS]
        for split in ("train", "val", "test"):
            (folder / f"{side}-{split}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def wordpiece_dir(wmt_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vocab") / "wp"
    code = data_cli(
        ["vocab", "wmt14_en_de", "--kind", "wordpiece", "--vocab-size", "1500", "--cased", "--out", str(out)]
        + ["--data-dir", str(wmt_dir)]
    )
    assert code == 0
    return out


def test_wordpiece_folder_is_bert_layout_and_transformers_reads_the_same_ids(wordpiece_dir):
    tf = pytest.importorskip("transformers")
    tok = load_tokenizer(wordpiece_dir)
    assert len(tok) == 1500
    vocab = (wordpiece_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab[:2] == ["[PAD]", "[unused0]"] and vocab[99:104] == ["[unused98]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0,
        100,
        101,
        102,
        103,
    )
    hf = tf.AutoTokenizer.from_pretrained(wordpiece_dir)
    assert type(hf).__name__ == "BertTokenizerFast"
    slow = tf.BertTokenizer.from_pretrained(wordpiece_dir)  # vocab.txt is there too
    text = "Es geht nicht an , dass 1,000 Bürokratien über Österreich entscheiden ."
    ids = tok.encode(text, add_special_tokens=True)
    assert hf(text).input_ids == ids == slow(text).input_ids
    assert 100 not in ids and "Ö" in tok.decode(ids)  # cased: accents and case kept
    info = json.loads((wordpiece_dir / "bertgen_vocab.json").read_text())
    assert info["task"] == "wmt14_en_de" and info["rows"] == ROWS and info["fields"] == ["source", "target"]


def test_task_markers_take_a_reserved_row(wordpiece_dir):
    from bertgen.text import TextConvention

    tok = load_tokenizer(wordpiece_dir)
    prepared = TextConvention("tokenized", ("<::::>",)).prepare(tok)
    ids = prepared.encode("a <::::> b")
    assert len(prepared) == len(tok) and ids[1] == 1  # [unused0]: the embedding matrix keeps its size
    assert prepared.decode(ids, skip_special_tokens=False) == "a <::::> b"


def test_perfect_prediction_scores_100_through_the_vocabulary(wordpiece_dir, wmt_dir, tmp_path):
    from bertgen.data import Seq2SeqDataModule, reference_ceiling

    dm = Seq2SeqDataModule("wmt14_en_de", str(wordpiece_dir), data_dir=wmt_dir, cache_dir=tmp_path, batch_size=32)
    result = reference_ceiling(dm, "validation")
    assert result["representable"]["score"] == pytest.approx(100.0)
    # what BERT's normaliser itself drops (control characters, U+FFFD) is all that is lost
    assert set(result["not_representable"]) <= {"characters normalised", "truncated"}
    assert result["representable"]["examples"] >= 0.9 * ROWS


def test_uncased_sentencepiece_sampling_and_fields(wmt_dir, tmp_path):
    uncased = tmp_path / "uncased"
    assert data_cli(["vocab", "wmt14_en_de", "--kind", "wordpiece", "--vocab-size", "800", "--out", str(uncased)]
                    + ["--data-dir", str(wmt_dir), "--fields", "target", "--max-rows", "100"]) == 0  # fmt: skip
    tok = load_tokenizer(uncased)
    assert tok.decode(tok.encode("Österreich")) == "osterreich"  # BERT uncased: lowercased, accents stripped
    info = json.loads((uncased / "bertgen_vocab.json").read_text())
    assert info["rows"] == 100 and info["texts"] == 100 and info["fields"] == ["target"] and not info["cased"]

    from bertgen.data.vocab import sample_rows

    assert sample_rows(range(1000), 10, seed=1) == sample_rows(range(1000), 10, seed=1)
    assert sample_rows(range(1000), 10, seed=1) != sample_rows(range(1000), 10, seed=2)
    assert sample_rows(range(5), 10) == list(range(5))

    sp = tmp_path / "sp"
    assert data_cli(["vocab", "wmt14_en_de", "--kind", "sentencepiece", "--vocab-size", "600", "--out", str(sp)]
                    + ["--data-dir", str(wmt_dir)]) == 0  # fmt: skip
    tok = load_tokenizer(sp)
    assert len(tok) == 600 and tok.kind == "sentencepiece" and (sp / "spiece.model").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--vocab-size", "104"], "a wordpiece vocabulary reserves 104 rows"),
        (["--vocab-size", "5", "--kind", "sentencepiece"], "a sentencepiece vocabulary reserves 5 rows"),
        (["--vocab-size", "500", "--fields", "sources"], "fields='sources'"),
        (["--vocab-size", "500", "--empty"], "holds no text to build a vocabulary from"),
    ],
)
def test_bad_input_is_one_message_before_any_work(args, message, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    empty = "--empty" in args
    for name in ("src-train.txt", "tgt-train.txt"):
        (data / name).write_text("" if empty else "a b\n", encoding="utf-8")
    args = [a for a in args if a != "--empty"]
    kind = [] if "--kind" in args else ["--kind", "wordpiece"]
    out = tmp_path / "out"
    code = data_cli(["vocab", "wmt14_en_de", *kind, *args, "--out", str(out), "--data-dir", str(data)])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.count("error:") == 1
    assert not out.exists()


def test_pieces_are_numbered_canonically(tmp_path):
    from bertgen.tokenization import train_wordpiece

    lines = (WMT / "tgt-train.txt").read_text(encoding="utf-8").splitlines()[:200]
    # tokenizers' trainer numbers pieces in hash-map order, and breaks ties between equally frequent merges by it
    # too; bertgen sorts the pieces, so one set of pieces always gets one numbering, and two trainings on one corpus
    # agree on nearly all pieces (which ones tie is the trainer's own, not something bertgen can fix)
    vocabs = []
    for i in (1, 2):
        train_wordpiece(lines, 500, output_dir=tmp_path / str(i))
        vocabs.append((tmp_path / str(i) / "vocab.txt").read_text(encoding="utf-8").splitlines())
    for vocab in vocabs:
        pieces = vocab[103 + 1 :]  # after [PAD], [unused0..98], [UNK] [CLS] [SEP] [MASK]
        key = lambda t: (len(t.removeprefix("##")) > 1, t.startswith("##"), t)  # noqa: E731
        assert pieces == sorted(pieces, key=key) and len(vocab) == 500
    shared = set(vocabs[0]) & set(vocabs[1])
    assert len(shared) >= 0.9 * 500, len(shared)

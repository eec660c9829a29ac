"""MLM pre-training (``pretrain.py``, ``bertgen.pretraining``, ``bertgen.model.BertMLM``): BERT's masking and packing,
parity with transformers' ``BertForMaskedLM``, warm-starting the paper's variants from the export, exact resume,
one message per bad input, the Table 4 configs, and (slow) the miniature of the paper's custom-checkpoint chain."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from bertgen import pretraining as P
from bertgen.data import mlm as M
from bertgen.errors import ConfigError
from bertgen.model import BertMLM, EncoderDecoder
from bertgen.tokenization import load_tokenizer, train_wordpiece

from conftest import MINILM, SHARED, compose, run_cli, start_cli

WMT = SHARED / "data" / "wmt14_en_de"
TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64)


@pytest.fixture(scope="module")
def vocab(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vocab") / "wp"
    lines = (WMT / "src-train.txt").read_text(encoding="utf-8").splitlines()[:300]
    lines += (WMT / "tgt-train.txt").read_text(encoding="utf-8").splitlines()[:300]
    train_wordpiece(lines, 700, cased=True, output_dir=out)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """BERT's input format: English and German sentences, a blank line between the 6 documents."""
    folder = tmp_path_factory.mktemp("corpus")
    en = (WMT / "src-train.txt").read_text(encoding="utf-8").splitlines()[:36]
    de = (WMT / "tgt-train.txt").read_text(encoding="utf-8").splitlines()[:36]
    docs = ["\n".join(part[i : i + 12]) for part in (en, de) for i in range(0, 36, 12)]
    (folder / "train.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return folder / "train.txt"


# ---- masking and packing ---------------------------------------------------------------------------------------------
def test_masking_follows_berts_recipe(vocab):
    tok = load_tokenizer(vocab)
    v = M.Vocabulary.of(tok)
    m = M.Masking(max_predictions=None)
    rng = np.random.default_rng(0)
    chosen = masked = kept = swapped = total = 0
    for _ in range(400):
        ids = np.array([v.cls, *rng.choice(v.random_ids, 100), v.sep])
        out, labels = M.mask_sequence(ids, v, m, rng)
        sel = labels != -100
        assert not sel[0] and not sel[-1]  # never [CLS] / [SEP]
        assert sel.sum() == 15 and (labels[sel] == ids[sel]).all()
        chosen += sel.sum()
        masked += (out[sel] == v.mask).sum()
        kept += (out[sel] == ids[sel]).sum()
        swapped += ((out[sel] != ids[sel]) & (out[sel] != v.mask)).sum()
        total += 100
        assert (out[~sel] == ids[~sel]).all()
    assert chosen == 0.15 * total
    assert abs(masked / chosen - 0.8) < 0.03 and abs(kept / chosen - 0.1) < 0.02 and abs(swapped / chosen - 0.1) < 0.02
    # at most max_predictions; whole words: a piece and its ## continuations are masked together
    ids = np.array(tok.encode("Bürokratien Ausführungsbestimmungen Gesetzgebungsrecht Parlaments", True))
    words = M.Masking(whole_word=True, probability=0.5, max_predictions=None)
    for seed in range(20):
        _, labels = M.mask_sequence(ids, v, words, np.random.default_rng(seed))
        sel = labels != -100
        for i in range(2, len(ids) - 1):
            if v.continues[ids[i]]:
                assert sel[i] == sel[i - 1]
    _, labels = M.mask_sequence(np.array([v.cls, *range(200, 400), v.sep]), v, M.Masking(), rng)
    assert (labels != -100).sum() == 20  # BERT's max_predictions_per_seq


def test_packing_fills_sequences_within_documents(vocab):
    v = M.Vocabulary.of(load_tokenizer(vocab))
    docs = [[[7] * 5, [8] * 9, [9] * 3], [[10] * 40], [[11] * 2]]
    seqs = M.pack_documents(docs, 16, v, short_seq_prob=0.0, seed=0)
    assert all(s[0] == v.cls and s[-1] == v.sep and len(s) <= 16 for s in seqs)
    bodies = [s[1:-1].tolist() for s in seqs]
    assert bodies[0] == [7] * 5 + [8] * 9  # whole sentences while they fit
    assert bodies[1] == [9] * 3  # the document's rest: never joined with the next document
    assert bodies[2:5] == [[10] * 14, [10] * 14, [10] * 12]  # a long sentence is cut, nothing lost
    assert bodies[5] == [11] * 2
    short = M.pack_documents([[[7] * 3] * 200], 64, v, short_seq_prob=1.0, seed=0)
    assert max(len(s) for s in short) < 64 and sum(len(s) - 2 for s in short) == 600


# ---- the model: parity with transformers, the export warm-starts the paper's variants -------------------------------
def test_bert_mlm_matches_transformers_and_warm_starts_bert2rnd_and_bertshare(vocab, tmp_path):
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = BertMLM(dict(family="bert", vocab_size=700, max_position_embeddings=64, type_vocab_size=2, **TINY))
    with torch.no_grad():  # a non-trivial head and token-type row
        for p in model.bert.head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.eval().save_pretrained(tmp_path / "mlm")
    hf = tf.BertForMaskedLM.from_pretrained(tmp_path / "mlm", attn_implementation="eager").eval()
    ids = torch.randint(104, 700, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    ours, theirs = model(ids, mask).logits, hf(input_ids=ids, attention_mask=mask).logits
    assert (ours - theirs)[mask.bool()].abs().max() < 1e-5
    labels = torch.where(torch.rand(ids.shape) < 0.3, ids, -100)
    assert torch.allclose(model(ids, mask, labels).loss, hf(input_ids=ids, attention_mask=mask, labels=labels).loss)
    assert torch.equal(BertMLM.from_pretrained(tmp_path / "mlm").eval()(ids, mask).logits, ours)

    bert2rnd = EncoderDecoder.from_encoder_decoder_pretrained(
        tmp_path / "mlm", {"family": "bert-generation", "vocab_size": 700, **TINY}, decoder_start_token_id=101
    )
    assert torch.equal(bert2rnd.encoder.embed.word.weight, model.bert.embed.word.weight)
    share = EncoderDecoder.from_encoder_decoder_pretrained(
        tmp_path / "mlm", tmp_path / "mlm", tie_encoder_decoder=True, decoder_start_token_id=101
    )
    for name, p in model.bert.head.named_parameters():  # the decoder keeps the MLM head (transform + bias)
        assert torch.equal(dict(share.decoder.head.named_parameters())[name], p), name


# ---- pretrain.py in-process ------------------------------------------------------------------------------------------
def common(vocab: Path, corpus: Path) -> list[str]:
    return [
        f"tokenizer={vocab}",
        f"data.files=[{corpus}]",
        "data.val_fraction=0.1",
        *(f"model.{k}={v}" for k, v in TINY.items()),
        "model.max_position_embeddings=64",
        "max_length=32",
        "batch_size=16",
        "global_batch_size=16",
        "optim.warmup_steps=2",
        "optim.lr=1e-3",
        "trainer.enable_progress_bar=false",
        "trainer.val_check_interval=4",
        "trainer.log_every_n_steps=1",
        "deterministic=true",
        "callbacks.checkpoint.every_n_train_steps=1",
        "num_threads=1",
    ]


def run(run_dir: Path, overrides: list[str]) -> dict:
    from pretrain import pretrain

    cfg = compose("pretrain", [f"hydra.run.dir={run_dir}", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return pretrain(cfg)


def test_resume_after_a_cut_ends_with_the_same_weights(vocab, corpus, tmp_path):
    # ~10 batches an epoch: the resumed run crosses an epoch boundary (new masks) after the cut; the schedule's end is
    # fixed, as in a run that stops (is killed) before its max_steps
    args = [*common(vocab, corpus), "optim.total_steps=14"]
    full = run(tmp_path / "full", [*args, "trainer.max_steps=14", "export_model=false"])
    run(tmp_path / "cut", [*args, "trainer.max_steps=5", "export_model=false"])
    resumed = run(tmp_path / "cut", [*args, "trainer.max_steps=14", "export_model=false", "ckpt_path=last"])
    assert full["global_step"] == resumed["global_step"] == 14
    a = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["epoch"] >= 1
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], atol=0, rtol=0, msg=k)
    assert full["metrics"] == resumed["metrics"]
    # a changed recipe is another run: refused before anything is written
    with pytest.raises(ConfigError, match="not the same run"):
        run(tmp_path / "cut", [*args, "trainer.max_steps=16", "mlm.probability=0.2", "ckpt_path=last"])


def test_run_exports_a_folder_transformers_loads_with_equal_logits(vocab, corpus, tmp_path):
    tf = pytest.importorskip("transformers")
    rec = run(tmp_path / "pt", [*common(vocab, corpus), "trainer.max_steps=4"])
    assert set(rec["metrics"]) == {"loss", "accuracy"} and rec["best_checkpoint"]
    folder = tmp_path / "pt" / "model"
    hf = tf.BertForMaskedLM.from_pretrained(folder, attn_implementation="eager").eval()
    ours = BertMLM.from_pretrained(folder).eval()
    ids = torch.tensor([load_tokenizer(folder).encode("Das ist ein Haus .", add_special_tokens=True)])
    assert (hf(input_ids=ids).logits - ours(ids).logits).abs().max() < 1e-5
    assert tf.AutoTokenizer.from_pretrained(folder)("Das ist ein Haus .").input_ids == ids[0].tolist()
    assert json.loads((folder / "bertgen_pretrain.json").read_text())["exported_from"].endswith(".ckpt")


def test_bad_input_is_one_message_before_any_work(vocab, corpus, tmp_path):
    args = [a for a in common(vocab, corpus) if not a.startswith("data.files")]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    r = run_cli("pretrain.py", [*args, f"data.files=[{empty}]", f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
    assert r.returncode == 1 and r.stderr.count("error:") == 1, r.stderr[-2000:]
    assert "is empty: nothing to pre-train on" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "a" / "checkpoints").exists()
    cfg = {
        **OmegaConf.to_container(compose("pretrain", [*args, f"data.files=[{corpus}]"]), resolve=False),
        "max_tokens": None,
    }
    cfg.pop("hydra", None)
    tok = load_tokenizer(vocab)
    with pytest.raises(ConfigError, match="max_length=128 is above the model's max_position_embeddings=64"):
        P.model_config({**cfg, "max_length": 128}, tok)
    with pytest.raises(ConfigError, match="has a vocabulary of 30,522 rows but tokenizer=.* has 700"):
        P.model_config({**cfg, "checkpoint": str(MINILM)}, tok)
    minilm = load_tokenizer(MINILM)  # the same size, two pieces swapped
    pieces = [t for t, _ in sorted(minilm.get_vocab().items(), key=lambda kv: kv[1])]
    pieces[2000], pieces[2001] = pieces[2001], pieces[2000]
    (tmp_path / "swapped").mkdir()
    (tmp_path / "swapped" / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
    swapped = {**cfg, "checkpoint": str(MINILM), "tokenizer": str(tmp_path / "swapped")}
    with pytest.raises(ConfigError, match="trained with another vocabulary than tokenizer="):
        P.model_config(swapped, load_tokenizer(tmp_path / "swapped"))
    with pytest.raises(ConfigError, match="model.vocab_size=500 is smaller than the tokenizer's 700"):
        P.model_config({**cfg, "model": {**cfg["model"], "vocab_size": 500}}, tok)
    with pytest.raises(ConfigError, match="data: give data.files"):
        P.validate_config({**cfg, "data": {**cfg["data"], "files": []}})
    with pytest.raises(ConfigError, match=r"mlm.mask \+ mlm.random"):
        P.validate_config({**cfg, "mlm": {**cfg["mlm"], "mask": 0.95}})
    spiece = tmp_path / "spiece"
    spiece.mkdir()
    shutil.copy(SHARED / "data" / "tokenizers" / "test_sentencepiece.model", spiece / "spiece.model")
    with pytest.raises(ConfigError, match="has no mask token"):
        M.Vocabulary.of(load_tokenizer(spiece))


# ---- Table 4's configs ---------------------------------------------------------------------------------------------
def test_table4_public_block_uses_multilingual_bert_and_the_custom_block_its_own():
    from bertgen.data.tasks.wmt14 import TABLE4_DE_EN, TABLE4_EN_DE

    for model in ("bert2rnd", "bertshare"):
        c = OmegaConf.to_container(compose("train", ["experiment=table4_wmt14", f"model={model}"]).model, resolve=True)
        assert c["checkpoint"] == c["tokenizer"] == c["encoder"] == "google-bert/bert-base-multilingual-cased"
        custom = compose("train", ["experiment=table4_custom_large", f"model={model}"])
        assert custom.model.checkpoint == "outputs/pretrain/table4_custom_large/model" and custom.model.name == model
        assert custom.model.overrides.num_hidden_layers == 24 and custom.task.name == "wmt14_en_de"
    six = compose("train", ["experiment=table4_custom_transformer"]).model
    assert six.name == "rnd2rnd" and six.overrides.num_hidden_layers == 6
    for table in (TABLE4_EN_DE, TABLE4_DE_EN):  # both 6-layer "Transformer (ours)" rows are in the report's table
        labels = [r.label for r in table.rows]
        assert sum(label.startswith("Transformer (ours") for label in labels) == 2


# ---- slow: kill -9 and the miniature of Table 4's chain --------------------------------------------------------------
@pytest.mark.slow
def test_kill_minus_9_then_resume_ends_with_the_weights_of_an_uninterrupted_run(vocab, corpus, tmp_path):
    import signal
    import time

    args = [*common(vocab, corpus), "trainer.max_steps=40", "export_model=false"]
    ref = run_cli("pretrain.py", [*args, f"hydra.run.dir={tmp_path / 'ref'}"], tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    soak, last = tmp_path / "soak", tmp_path / "soak" / "checkpoints" / "last.ckpt"
    proc = start_cli("pretrain.py", [*args, f"hydra.run.dir={soak}"], tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and torch.load(last, weights_only=True)["global_step"] >= 12:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert 12 <= killed_at < 40
    r = run_cli("pretrain.py", [*args, f"hydra.run.dir={soak}", "ckpt_path=last"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    a = torch.load(tmp_path / "ref" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["global_step"] == b["global_step"] == 40
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], atol=0, rtol=0, msg=k)


@pytest.mark.slow
def test_miniature_table4_chain_vocab_pretrain_export_warm_start(tmp_path):
    """The paper's custom-checkpoint chain on 2 CPU cores: a WordPiece vocabulary of the WMT14 En-De training data ->
    MLM pre-training of a tiny BERT (held-out loss falls, masked accuracy beats the unigram baseline) -> the export
    equals transformers' BertForMaskedLM -> train.py bert2rnd En->De warm-started from it trains and evaluates."""
    tf = pytest.importorskip("transformers")
    vocab = tmp_path / "vocab"
    r = run_cli(
        ["-m", "bertgen.data"],
        ["vocab", "wmt14_en_de", "--kind", "wordpiece", "--vocab-size", "2000", "--cased", "--out", vocab]
        + ["--data-dir", WMT],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    print(r.stdout.strip())
    pt = tmp_path / "pretrain"
    r = run_cli("pretrain.py", [*MINI_PRETRAIN, f"tokenizer={vocab}", f"hydra.run.dir={pt}"], tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    curve = mini_curve(pt)
    print("step, held-out MLM loss, masked accuracy (%):", curve)
    first, last = curve[0], curve[-1]
    uniform = math.log(len(load_tokenizer(vocab)))  # the loss of an untrained model's (near-uniform) predictions
    assert last[1] < first[1] - 0.3 and last[1] < uniform - 1.0  # the held-out loss falls clearly
    unigram = unigram_accuracy(load_tokenizer(vocab), pt)
    print(f"step 0 (uniform) loss {uniform:.2f}; unigram baseline accuracy {unigram:.2f}%")
    assert last[2] > unigram + 2
    folder = pt / "model"
    hf = tf.BertForMaskedLM.from_pretrained(folder, attn_implementation="eager").eval()
    ours = BertMLM.from_pretrained(folder).eval()
    tok = load_tokenizer(folder)
    ids = torch.tensor([tok.encode(t, True) for t in ("Das ist ein kleines Haus .", "This is a small house .")][:1])
    diff = (hf(input_ids=ids).logits - ours(ids).logits).abs().max().item()
    print(f"max |logits bertgen - BertForMaskedLM| = {diff:.2e}")
    assert diff < 1e-5
    ft = tmp_path / "finetune"
    r = run_cli("train.py", [*MINI_FINETUNE, f"model.checkpoint={folder}", f"hydra.run.dir={ft}"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads((ft / "metrics.json").read_text())
    assert record["global_step"] == 20 and "bleu" in record["metrics"] and (ft / "model" / "config.json").is_file()


MINI_PRETRAIN = [
    "data.task=wmt14_en_de",
    f"data.data_dir={WMT}",
    "data.val_max_sequences=128",
    "model.hidden_size=128",
    "model.num_hidden_layers=2",
    "model.num_attention_heads=4",
    "model.intermediate_size=256",
    "model.max_position_embeddings=128",
    "max_length=64",
    "batch_size=32",
    "global_batch_size=32",
    "optim.lr=2e-3",  # a tiny model leaves the unigram stage only with a high rate for long enough (3e-3: it collapses)
    "optim.warmup_steps=20",
    "optim.total_steps=400",  # the linear decay's end beyond the last step
    "trainer.max_steps=300",
    "trainer.val_check_interval=50",
    "trainer.enable_progress_bar=false",
    "trainer.log_every_n_steps=25",
]
MINI_FINETUNE = [
    "task=wmt14_en_de",
    "model=bert2rnd",
    f"data_dir={WMT}",
    "+model.overrides.hidden_size=128",
    "+model.overrides.num_hidden_layers=2",
    "+model.overrides.num_attention_heads=4",
    "+model.overrides.intermediate_size=256",
    "+model.overrides.max_position_embeddings=128",
    "+task.task_options.max_source_length=64",
    "+task.task_options.max_target_length=64",
    "task.generation.max_new_tokens=32",
    "task.val_max_examples=16",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "optim=adamw",
    "optim.lr=1e-3",
    "optim.warmup_steps=5",
    "batch_size=16",
    "global_batch_size=16",
    "trainer.max_steps=20",
    "task.val_check_interval=20",
]


def mini_curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """(step, val/loss, val/accuracy) of each validation of a pre-training run, from its CSV log."""
    import csv

    rows = list(csv.DictReader(open(run_dir / "logs" / "metrics.csv", encoding="utf-8")))
    return [(int(r["step"]) + 1, float(r["val/loss"]), float(r["val/accuracy"])) for r in rows if r.get("val/loss")]


def unigram_accuracy(tok, run_dir: Path) -> float:
    """Masked accuracy of always predicting the most frequent piece of the training text (the unigram baseline)."""
    from collections import Counter

    from bertgen.data.tasks import make_task

    prepared = make_task("wmt14_en_de").text_convention.prepare(tok)
    lines = (WMT / "src-val.txt").read_text(encoding="utf-8").splitlines()[:200]
    lines += (WMT / "tgt-val.txt").read_text(encoding="utf-8").splitlines()[:200]
    train = (WMT / "src-train.txt").read_text(encoding="utf-8").splitlines()
    train += (WMT / "tgt-train.txt").read_text(encoding="utf-8").splitlines()
    top, _ = Counter(i for ids in prepared.batch_encode(train) for i in ids).most_common(1)[0]
    held = [i for ids in prepared.batch_encode(lines) for i in ids]
    return 100.0 * sum(i == top for i in held) / len(held)

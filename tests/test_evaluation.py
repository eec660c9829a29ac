"""evaluate.py: checkpoints from a run dir / .ckpt / model folder / hub id, conventions, overrides, atomic outputs.

The fast tests use a run dir laid out as train.py leaves it (data/, tokenizer/, model/, .hydra/config.yaml) around an
untrained tiny model, so loading, data, decoding, scoring and writing run in seconds. The slow ones train the real
quickstart for a few steps with train.py and check the run dir, its best .ckpt and its exported folder agree, and
that killing evaluate.py mid-run leaves no output file.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from bertgen.checkpoints import CheckpointError
from bertgen.data import task_metrics
from bertgen.data.tasks.quickstart import synthetic_texts, write_synthetic_fusion
from bertgen.errors import BertgenError
from bertgen.evaluation import EvaluationError
from bertgen.lit_module import Seq2SeqModule
from bertgen.tokenization import load_tokenizer, train_sentencepiece

from conftest import run_cli, run_evaluate, start_cli, tiny_seq2seq, write_tiny_run

SIZES = {"train": 200, "validation": 12, "test": 24}
FILES = ("predictions.jsonl", "metrics.json")


def run_eval(out: Path, *overrides: str) -> dict:
    """evaluate.py in-process (conftest's `run_evaluate`), its run record as a dict."""
    return run_evaluate(out, *overrides).to_dict()


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_run")
    write_synthetic_fusion(root / "data", SIZES, seed=0)
    tok = train_sentencepiece(synthetic_texts(root / "data"), vocab_size=200, output_dir=root / "tokenizer")
    return write_tiny_run(root, tiny_seq2seq(tok), tok, SIZES)


def test_run_dir_writes_predictions_and_metrics(tiny_run, tmp_path):
    out = tmp_path / "eval"
    result = run_eval(out, f"ckpt={tiny_run}", f"cache_dir={tmp_path / 'cache'}", "batch_size=10")
    rows = read_rows(out / "predictions.jsonl")
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(result))
    # every test example, in the split's order, with the three fields
    test_rows = (tiny_run / "data" / "test.tsv").read_text().splitlines()[1:]
    assert len(rows) == SIZES["test"] == saved["examples"]
    assert all(set(r) == {"source", "target", "prediction"} for r in rows)
    assert [r["target"] for r in rows] == [" ".join(c for c in line.split("\t")[:2] if c) for line in test_rows]
    # the run's own task and its full decoding settings; weights from the exported model/ folder
    assert saved["generation"] == {
        "num_beams": 4,
        "length_penalty": 0.6,
        "length_penalty_style": "gnmt",
        "max_new_tokens": 8,
    }
    assert saved["generation_resolved"]["num_beams"] == 4 and saved["generation_resolved"]["max_length"] == 9
    assert saved["checkpoint"]["kind"] == "run_dir" and saved["checkpoint"]["loaded"] == str(tiny_run / "model")
    assert saved["conventions"] == {"mode": "run", "task_options": {"max_source_length": 48, "max_target_length": 48}}
    assert saved["dataset"]["files"] == ["test.tsv"] and len(saved["dataset"]["hash"]) >= 16
    assert saved["versions"]["torch"] == torch.__version__
    run = {k: saved[k] for k in ("source", "task", "model", "size", "split", "train_fraction")}
    assert run == {
        "source": "evaluate",
        "task": "quickstart",
        "model": "quickstart",
        "size": "1L-32H",  # what the tiny model is: 1 layer, 32 wide
        "split": "test",
        "train_fraction": 1.0,
    }
    # the scores are those of the written predictions
    metrics, headline = task_metrics("quickstart")
    metrics.update([r["prediction"] for r in rows], [[r["target"]] for r in rows], [r["source"] for r in rows])
    assert headline == saved["headline"] == "sari"
    assert {k: pytest.approx(float(v)) for k, v in metrics.compute().items()} == saved["metrics"]


def test_decoding_overrides_and_task_overrides_reach_the_runs_task(tiny_run, tmp_path):
    out = tmp_path / "eval"
    saved = run_eval(
        out,
        f"ckpt={tiny_run}",
        f"cache_dir={tmp_path / 'cache'}",
        "generation.num_beams=1",
        "task.generation.max_new_tokens=3",
        "max_examples=5",
    )
    assert saved["generation"]["num_beams"] == 1 and saved["generation"]["max_new_tokens"] == 3
    assert saved["task"] == "quickstart"
    rows = read_rows(out / "predictions.jsonl")
    assert len(rows) == saved["examples"] == 5 and saved["examples_in_split"] == SIZES["test"]
    tok = load_tokenizer(tiny_run / "tokenizer")
    assert all(len(tok.encode(r["prediction"])) <= 3 for r in rows)


def test_model_folder_without_run_uses_released_conventions(tiny_run, tmp_path):
    folder = tmp_path / "released"
    shutil.copytree(tiny_run / "model", folder)
    common = (
        f"ckpt={folder}",
        f"cache_dir={tmp_path / 'cache'}",
        "max_examples=4",
        "generation.num_beams=1",
        "generation.max_new_tokens=8",
        "+task_options.max_source_length=48",  # the tiny model has 64 positions
        "+task_options.max_target_length=48",
    )
    saved = run_eval(tmp_path / "a", *common, "task=discofuse", f"data_dir={tiny_run / 'data'}")
    assert saved["checkpoint"]["kind"] == "folder" and saved["conventions"]["mode"] == "released"
    assert saved["dataset"]["task_options"]["source_replacements"] == {'"': "`"}  # DiscoFuse model card
    assert saved["generation"] == {
        "num_beams": 1,
        "length_penalty": 0.6,
        "length_penalty_style": "gnmt",
        "max_new_tokens": 8,
    }  # task=discofuse's settings with the overrides
    none = run_eval(tmp_path / "b", *common, "task=discofuse", f"data_dir={tiny_run / 'data'}", "conventions=none")
    assert none["dataset"]["task_options"]["source_replacements"] == {}
    assert none["dataset"]["cache_key"] != saved["dataset"]["cache_key"]
    with pytest.raises(EvaluationError, match="conventions=run needs a checkpoint inside a train.py run dir"):
        run_eval(tmp_path / "c", *common, "task=discofuse", f"data_dir={tiny_run / 'data'}", "conventions=run")

    # WikiSplit: the released checkpoint reads bos + sentence + eos; BLEU is among its metrics
    wiki = tmp_path / "wiki"
    wiki.mkdir()
    (wiki / "test.tsv").write_text(
        "".join(
            f"{r['source']}\t{r['target']} <::::> {r['target']}\n"
            for r in read_rows(tmp_path / "a" / "predictions.jsonl")
        )
    )
    split = run_eval(tmp_path / "d", *common, "task=wikisplit", f"data_dir={wiki}")
    opts = split["dataset"]["task_options"]
    assert opts["add_source_bos"] is True and opts["add_source_eos"] is True
    assert {"sari", "exact", "bleu"} <= set(split["metrics"])


def test_decoder_only_folder_decodes_like_the_lightning_module(tiny_run, tmp_path):
    """The `gpt` variant: evaluate.py feeds "source <sep>" exactly as the trained module's model does, with the
    separator saved in the model's generation config."""
    from bertgen.model.generation import text_special_ids
    from bertgen.text import decode_generated

    tok = load_tokenizer(tiny_run / "tokenizer")
    side = dict(
        family="gpt2",
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=False,
    )
    special = {
        "decoder_start_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        "sep_token_id": tok.eos_token_id,
    }  # as train.py sets it for gpt
    torch.manual_seed(0)
    lit = Seq2SeqModule(model={"kind": "decoder_only", "decoder": side}, special_tokens=special).eval()
    lit.export(tmp_path / "gpt", tok)
    assert json.loads((tmp_path / "gpt" / "generation_config.json").read_text())["sep_token_id"] == tok.eos_token_id
    saved = run_eval(
        tmp_path / "eval",
        f"ckpt={tmp_path / 'gpt'}",
        "task=discofuse",
        f"data_dir={tiny_run / 'data'}",
        f"cache_dir={tmp_path / 'cache'}",
        "generation.num_beams=1",
        "generation.max_new_tokens=6",
        "max_examples=6",
        "batch_size=1",
        "+task_options.max_source_length=64",
    )
    rows = read_rows(tmp_path / "eval" / "predictions.jsonl")
    assert len(rows) == saved["examples"] == 6 and "generation_resolved" not in saved  # decoder-only: per prompt
    for row in rows:
        ids = torch.tensor([tok.encode(row["source"])])
        out = lit.model.generate_target(ids, torch.ones_like(ids), num_beams=1, max_new_tokens=6)
        eos, never = text_special_ids(lit.model, num_beams=1, max_new_tokens=6)
        expected = decode_generated(tok, out, eos_token_ids=eos, drop_ids=never)[0]
        assert row["prediction"] == expected
    assert any(row["prediction"] for row in rows)  # an untied random LM does not stop at once


def test_crash_mid_generation_leaves_no_output(tiny_run, tmp_path, monkeypatch):
    import bertgen.decoding as decoding

    real, calls = decoding.decode_generated, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected failure in the second batch")
        return real(*args, **kwargs)

    monkeypatch.setattr(decoding, "decode_generated", failing)
    out = tmp_path / "eval"
    with pytest.raises(RuntimeError, match="injected"):
        run_eval(out, f"ckpt={tiny_run}", f"cache_dir={tmp_path / 'cache'}", "batch_size=8")
    assert len(calls) == 2
    assert not any((out / f).exists() for f in FILES)
    assert not list(out.glob("*tmp*")) and not list(out.glob(".*tmp*"))


@pytest.mark.parametrize(
    "ckpt, message",
    [
        ("./does/not/exist", "does not exist"),
        ("{run}/tokenizer/spiece.model", "is a file but not a Lightning .ckpt"),
        ("{run}/data", "neither config.json"),
        ("", "ckpt is required"),
    ],
)
def test_bad_checkpoint_arguments(tiny_run, tmp_path, ckpt, message):
    with pytest.raises(CheckpointError, match=message):
        run_eval(tmp_path, f"ckpt={ckpt.format(run=tiny_run)}" if ckpt else "ckpt=null")


def test_bare_ckpt_needs_a_tokenizer_and_is_unpickled_safely(tiny_run, tmp_path):
    import numpy as np

    ckpt = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "extra": np.arange(3)}, ckpt)  # a numpy array: refused by the weights-only loader
    with pytest.raises(CheckpointError, match="pass tokenizer="):
        run_eval(tmp_path / "a", f"ckpt={ckpt}")
    with pytest.raises(BertgenError, match="refuses .*loads only tensors and plain data"):
        run_eval(tmp_path / "b", f"ckpt={ckpt}", f"tokenizer={tiny_run / 'tokenizer'}")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["split=train"], "split must be one of"),
        (["generation.max_new_tokens=100"], "exceed the decoder's max_position_embeddings"),  # the tiny model has 64
        (["+task_options.no_such_option=1"], "unknown task_options"),
        (["conventions=sometimes"], "conventions must be auto, run, released or none"),
    ],
)
def test_bad_options_fail_before_decoding(tiny_run, tmp_path, overrides, message):
    with pytest.raises(BertgenError, match=message):
        run_eval(tmp_path, f"ckpt={tiny_run}", f"cache_dir={tmp_path / 'cache'}", *overrides)
    assert not any((tmp_path / f).exists() for f in FILES)


def test_hub_id_offline_is_one_clear_error(tmp_path):
    proc = run_cli("evaluate.py", ["ckpt=google/roberta2roberta_L-24_discofuse", f"hydra.run.dir={tmp_path / 'out'}"])
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: could not download checkpoint 'google/roberta2roberta_L-24_discofuse'"
    )
    assert not any((tmp_path / "out" / f).exists() for f in FILES)


# --------------------------------------------------------------------------------------------------------------------
# With a model trained by train.py (slow: a few training steps on the synthetic quickstart corpus)
# --------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained") / "run"
    args = [
        "experiment=quickstart",
        "trainer.max_steps=10",
        "task.val_check_interval=10",
        "task.synthetic.train=300",
        "task.synthetic.validation=16",
        "task.synthetic.test=64",
        f"cache_dir={run.parent / 'cache'}",
        f"hydra.run.dir={run}",
    ]
    proc = run_cli("train.py", args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


@pytest.mark.slow
def test_trained_run_dir_ckpt_and_exported_folder_agree(trained_run, tmp_path):
    best = sorted((trained_run / "checkpoints").glob("best-*.ckpt"))
    assert best, list((trained_run / "checkpoints").iterdir())
    common = (f"cache_dir={tmp_path / 'cache'}", "max_examples=12", "generation.num_beams=2")
    results = {}
    for name, ckpt in (("run", trained_run), ("ckpt", best[-1]), ("folder", trained_run / "model")):
        results[name] = run_eval(tmp_path / name, f"ckpt={ckpt}", *common)
        assert all((tmp_path / name / f).is_file() for f in FILES)
    assert results["run"]["checkpoint"]["loaded"] == str(trained_run / "model")
    assert results["ckpt"]["checkpoint"]["kind"] == "ckpt"
    # the exported folder is the best checkpoint's weights: identical predictions and scores
    preds = {n: read_rows(tmp_path / n / "predictions.jsonl") for n in results}
    assert preds["run"] == preds["ckpt"] == preds["folder"]
    assert results["run"]["metrics"] == results["ckpt"]["metrics"] == results["folder"]["metrics"]
    assert all(r["conventions"]["mode"] == "run" for r in results.values())


@pytest.mark.slow
def test_killed_mid_run_leaves_no_output(trained_run, tmp_path):
    out = tmp_path / "out"
    proc = start_cli(
        "evaluate.py",
        [f"ckpt={trained_run}", "batch_size=1", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={out}"],
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 240
    try:
        for line in proc.stdout:  # wait until predictions are being generated
            if "generated 1/" in line or time.monotonic() > deadline:
                break
        assert proc.poll() is None, "evaluate.py finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert out.is_dir() and not any((out / f).exists() for f in FILES)


@pytest.mark.slow
def test_train_evaluate_report_read_one_run_record_schema(trained_run, tmp_path):
    """train.py and evaluate.py write the same run record; the report reads both and shows a row for each."""
    from bertgen.run_record import RunRecord

    out = tmp_path / "eval"
    proc = run_cli(
        "evaluate.py",
        [f"ckpt={trained_run}", "max_examples=16", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={out}"],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained, evaluated = RunRecord.load(trained_run), RunRecord.load(out)
    assert (trained.source, trained.split, evaluated.source, evaluated.split) == (
        "train",
        "validation",
        "evaluate",
        "test",
    )
    assert trained.best_score is not None and trained.metrics["sari"] >= 0 and evaluated.examples == 16
    proc = run_cli(["-m", "bertgen.report"], [trained_run, out, "--no-png", "--out", tmp_path / "report"])
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| quickstart")]
    assert len(rows) == 2, proc.stdout
    assert any("| validation |" in r and f"{trained.metrics['sari']:.2f}" in r for r in rows), rows
    assert any("| test |" in r and f"{evaluated.metrics['sari']:.2f}" in r for r in rows), rows

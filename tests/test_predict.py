"""predict.py and `bertgen.load_generator`: raw text in, the task's text out.

The fast tests use a run dir laid out as train.py leaves it (data/, tokenizer/, model/ with bertgen.json,
.hydra/config.yaml) around an untrained tiny model, as tests/test_evaluation.py does: predictions must equal
evaluate.py's row for row, whatever the model's quality. The slow one trains the real quickstart with train.py.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import torch

from bertgen import load_generator
from bertgen.averaging import AveragingError, average_run
from bertgen.conventions import read_conventions
from bertgen.data.tasks import make_task
from bertgen.data.tasks.quickstart import synthetic_texts, write_synthetic_fusion
from bertgen.lit_module import Seq2SeqModule
from bertgen.prediction import InputError, PredictError, PredictOptions, run_predict
from bertgen.tokenization import train_sentencepiece

from conftest import MINILM, TINY_QUICKSTART, cli_command, compose, run_cli, run_evaluate, tiny_seq2seq, write_tiny_run

SIZES = {"train": 200, "validation": 12, "test": 24}
OPTIONS = {"max_source_length": 48, "max_target_length": 48}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tiny_module(tok, seed: int = 0, layers: int = 1) -> Seq2SeqModule:
    gen = {"num_beams": 4, "length_penalty": 0.6, "length_penalty_style": "gnmt", "max_new_tokens": 8}
    lit = tiny_seq2seq(tok, seed=seed, layers=layers, generation=gen)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # large weights, so that the outputs depend on the source; an EOS bias
        for p in lit.model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.4)
        lit.model.decoder.head.bias[tok.eos_token_id] += 1.0
    return lit


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("predict_run")
    write_synthetic_fusion(root / "data", SIZES, seed=0)
    tok = train_sentencepiece(synthetic_texts(root / "data"), vocab_size=200, output_dir=root / "tokenizer")
    return write_tiny_run(root, tiny_module(tok), tok, SIZES, make_task("quickstart", OPTIONS))


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory) -> list[dict]:
    """evaluate.py's predictions of the tiny run's test split."""
    out = tmp_path_factory.mktemp("evaluated")
    run_evaluate(out, f"ckpt={tiny_run}", f"cache_dir={out / 'cache'}", "batch_size=10")
    return read_jsonl(out / "predictions.jsonl")


@pytest.fixture(scope="module")
def moved_folder(tiny_run, tmp_path_factory) -> Path:
    """The exported model/ folder copied out of its run dir: only its bertgen.json says what the task is."""
    folder = tmp_path_factory.mktemp("moved") / "model"
    shutil.copytree(tiny_run / "model", folder)
    return folder


def predict_file(tmp_path: Path, ckpt: Path, lines: list[str], **kw) -> tuple[list[str], object]:
    src = tmp_path / "sources.txt"
    src.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "out.txt"
    stats = run_predict(PredictOptions(ckpt=str(ckpt), input=str(src), output=str(out), **kw))
    return out.read_text(encoding="utf-8").splitlines(), stats


# ---- equal to evaluate.py -----------------------------------------------------------------------------------------
def test_export_carries_the_task_conventions(tiny_run):
    conv = read_conventions(tiny_run / "model")
    assert conv["task"] == "quickstart" and conv["task_module"] == "bertgen.data.tasks.quickstart"
    opts = conv["task_options"]
    assert opts["source_replacements"] == {'"': "`"} and opts["max_source_length"] == 48
    assert opts["text_style"] == "tokenized" and "hub_path" not in opts
    assert conv["text_convention"] == {"style": "tokenized", "atomic_tokens": []}


def test_predict_equals_evaluate_row_for_row(tiny_run, moved_folder, evaluated, tmp_path):
    sources = [r["source"] for r in evaluated]
    expected = [r["prediction"] for r in evaluated]
    assert len(set(expected)) > 3  # the tiny model's outputs differ from row to row
    for ckpt in (tiny_run, tiny_run / "model", moved_folder):  # run dir, its export, the export alone
        got, stats = predict_file(tmp_path, ckpt, sources, batch_size=5)
        assert got == expected, ckpt
        assert stats.rows == len(sources) and stats.empty == 0 and stats.truncated == 0
    # the Python API: the same texts, whatever the batches
    gen = load_generator(moved_folder, batch_size=3, max_tokens=64)
    assert gen(sources) == expected
    assert gen(sources[0]) == expected[0]
    assert "conventions='run'" in repr(gen)


def test_nbest_is_sorted_and_led_by_the_beam_output(moved_folder, evaluated):
    gen = load_generator(moved_folder)
    sources = [r["source"] for r in evaluated][:8]
    preds = gen.predict(sources, nbest=4)
    assert [p.prediction for p in preds] == [r["prediction"] for r in evaluated][:8]
    for p in preds:
        scores = [s for _, s in p.nbest]
        assert len(p.nbest) == 4 and scores == sorted(scores, reverse=True)
        assert p.nbest[0] == (p.prediction, p.score)
    with pytest.raises(Exception, match="num_return_sequences=5 needs num_beams >= 5"):
        gen.predict(sources, nbest=5)


def test_sampling_is_seeded_and_top_k_1_is_greedy(moved_folder, evaluated):
    gen = load_generator(moved_folder)
    sources = [r["source"] for r in evaluated][:6]
    greedy = gen(sources, num_beams=1)
    assert gen(sources, do_sample=True, top_k=1, seed=0) == greedy
    a = gen.predict(sources, nbest=3, do_sample=True, top_p=0.9, temperature=1.5, seed=7)
    b = gen.predict(sources, nbest=3, do_sample=True, top_p=0.9, temperature=1.5, seed=7)
    assert [p.nbest for p in a] == [p.nbest for p in b]
    assert all([s for _, s in p.nbest] == sorted((s for _, s in p.nbest), reverse=True) for p in a)
    c = gen.predict(sources, nbest=3, do_sample=True, top_p=0.9, temperature=1.5, seed=8)
    assert [p.nbest for p in a] != [p.nbest for p in c]
    assert gen(sources, num_beams=1, no_repeat_ngram_size=1, min_length=3) != greedy


def test_cli_file_formats_and_jsonl_output(moved_folder, evaluated, tmp_path):
    rows = evaluated[:5]
    (tmp_path / "in.tsv").write_text(
        "id\ttext\n" + "".join(f"{i}\t{r['source']}\n" for i, r in enumerate(rows)), encoding="utf-8"
    )
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": r["source"]}) + "\n" for r in rows))
    (tmp_path / "in.csv").write_text(
        'id,text\n0,"a ""quoted""\nsource"\n' + "".join(f'{i},"{r["source"]}"\n' for i, r in enumerate(rows, 1))
    )
    for name in ("in.tsv", "in.jsonl"):
        out = tmp_path / f"{name}.jsonl"
        run_predict(PredictOptions(ckpt=str(moved_folder), input=str(tmp_path / name), output=str(out), column="text"))
        got = read_jsonl(out)
        assert [g["source"] for g in got] == [r["source"] for r in rows]
        assert [g["prediction"] for g in got] == [r["prediction"] for r in rows]
        assert all(isinstance(g["score"], float) and "nbest" not in g for g in got)
    out = tmp_path / "csv.jsonl"
    run_predict(
        PredictOptions(ckpt=str(moved_folder), input=str(tmp_path / "in.csv"), output=str(out), column="text", nbest=2)
    )
    got = read_jsonl(out)
    assert got[0]["source"] == 'a "quoted"\nsource' and len(got) == 6
    assert [g["prediction"] for g in got[1:]] == [r["prediction"] for r in rows]
    assert all(len(g["nbest"]) == 2 and g["nbest"][0]["prediction"] == g["prediction"] for g in got)
    with pytest.raises(InputError, match="in.tsv:1: the header has no column 'source'"):
        run_predict(PredictOptions(ckpt=str(moved_folder), input=str(tmp_path / "in.tsv"), output=str(out)))
    assert got == read_jsonl(out)  # a failed run leaves the previous output as it was


# ---- bad input ------------------------------------------------------------------------------------------------------
def test_empty_long_and_invalid_rows(moved_folder, evaluated, tmp_path, caplog):
    src = evaluated[0]["source"]
    long_source = " ".join([src] * 12)  # far beyond max_source_length=48 tokens
    got, stats = predict_file(tmp_path, moved_folder, [src, "", "   ", long_source])
    assert got[0] == evaluated[0]["prediction"] and got[1] == got[2] == "" and got[3]
    assert (stats.rows, stats.empty, stats.truncated) == (4, 2, 1)
    assert "1 of 4 sources were longer than max_source_length=48 tokens" in caplog.text
    bad = tmp_path / "bad.txt"
    bad.write_bytes(src.encode() + b"\n" + b"caf\xe9 au lait\n" + src.encode() + b"\n")
    with pytest.raises(InputError, match=r"bad.txt:2: not valid UTF-8 \(byte 0xe9 at column 4\); pass skip_invalid"):
        run_predict(PredictOptions(ckpt=str(moved_folder), input=str(bad), output=str(tmp_path / "o.txt")))
    assert not (tmp_path / "o.txt").exists()
    stats = run_predict(
        PredictOptions(ckpt=str(moved_folder), input=str(bad), output=str(tmp_path / "o.txt"), skip_invalid=True)
    )
    assert stats.invalid == 1 and stats.rows == 3
    assert len((tmp_path / "o.txt").read_text().splitlines()) == 3


def test_folder_without_conventions_needs_a_task(moved_folder, tmp_path):
    bare = tmp_path / "released"
    shutil.copytree(moved_folder, bare)
    (bare / "bertgen.json").unlink()
    with pytest.raises(PredictError, match="carries no task conventions .* pass task=<name>"):
        load_generator(bare)
    gen = load_generator(bare, task="discofuse", task_options=OPTIONS)  # a released checkpoint: the model card's
    assert gen.encode_options.source_replacements == (('"', "`"),) and "conventions='released'" in repr(gen)
    (tmp_path / "in.txt").write_text("a b c .\n")
    proc = run_cli("predict.py", [f"ckpt={bare}", f"input={tmp_path / 'in.txt'}"], cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ckpt ") and "pass task=<name>" in lines[0]


# ---- the command line: streaming -------------------------------------------------------------------------------------
def test_stdin_is_streamed(moved_folder, evaluated, tmp_path):
    cmd, env = cli_command("predict.py", [f"ckpt={moved_folder}", "input=-", "output_format=jsonl"], cwd=tmp_path)
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        for r in evaluated[:2]:  # one line at a time: each prediction comes back before the next is written
            proc.stdin.write(r["source"] + "\n")
            proc.stdin.flush()
            row = json.loads(lines.get(timeout=120))
            assert row["source"] == r["source"] and row["prediction"] == r["prediction"]
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert "predict: 2 rows (0 empty, 0 truncated to 48 tokens)" in err and "tokens/s" in err


# ---- the ecosystem's client reads the export -------------------------------------------------------------------------
def test_transformers_decodes_a_bert2bert_export_alike(tmp_path):
    """A bert2bert (BERT WordPiece) trained for WikiSplit, exported: transformers' EncoderDecoderModel and
    AutoTokenizer on the folder give predict's ids, greedy and beam."""
    tf = pytest.importorskip("transformers")
    from bertgen.data.datamodule import Seq2SeqDataModule

    dm = Seq2SeqDataModule("wikisplit", str(MINILM), batch_size=1, task_options={"max_source_length": 32})
    src_tok, _ = dm.tokenizers
    special = dm.special_tokens.model_ids()
    side = dict(
        family="bert",
        vocab_size=len(src_tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=special["pad_token_id"],
        type_vocab_size=2,
    )
    torch.manual_seed(0)
    lit = Seq2SeqModule(
        model={"kind": "encoder_decoder", "encoder": side, "decoder": side},
        special_tokens=special,
        generation={"num_beams": 3, "length_penalty": 0.6, "max_new_tokens": 10},
    )
    with torch.no_grad():
        lit.model.decoder.head.bias[special["eos_token_id"]] += 3.0
    lit.export(tmp_path / "model", src_tok, task=dm.task)
    sources = ["the cat sat on the mat . it was happy .", "he was born in paris . he moved to rome in 1990 ."]
    gen = load_generator(tmp_path / "model")
    hf = tf.EncoderDecoderModel.from_pretrained(tmp_path / "model").eval()
    hf_tok = tf.AutoTokenizer.from_pretrained(tmp_path / "model")
    ids, _ = gen.encode(sources)
    enc = hf_tok(sources, return_tensors="pt", padding=True)
    assert [row[row != hf_tok.pad_token_id].tolist() for row in enc["input_ids"]] == ids  # [CLS] text [SEP]
    for kw in ({"num_beams": 1}, {"num_beams": 3}):
        settings = gen.resolved_settings(kw)
        ours = gen.model.generate_target(enc["input_ids"], enc["attention_mask"], **settings)
        theirs = hf.generate(
            **enc,
            num_beams=kw["num_beams"],
            length_penalty=0.6,
            max_new_tokens=10,
            early_stopping=False,
            decoder_start_token_id=hf.config.decoder_start_token_id,
            eos_token_id=hf.config.eos_token_id,
            pad_token_id=hf.config.pad_token_id,
        )
        eos = hf.config.eos_token_id

        def cut(row, eos=eos):
            row = row.tolist()
            return row[: next((i + 1 for i in range(1, len(row)) if row[i] == eos), len(row))]

        assert [cut(r) for r in ours] == [cut(r) for r in theirs], kw
        # and predict's texts are those ids through bertgen's one decode path (hf penalty: as transformers)
        from bertgen.text import decode_generated

        texts = gen(sources, **kw, length_penalty_style="hf")
        assert texts == decode_generated(
            gen.target_tokenizer,
            theirs,
            eos_token_ids=[eos],
            drop_ids=[hf.config.pad_token_id, hf.config.decoder_start_token_id],
        )


# ---- int8 ----------------------------------------------------------------------------------------------------------
def test_int8_quantization(moved_folder, evaluated):
    from bertgen.quantization import Int8Linear, quantize_model

    lin = torch.nn.Linear(32, 48)
    x = torch.randn(5, 7, 32)
    q = Int8Linear.from_linear(lin)
    assert torch.allclose(q(x), lin(x), atol=0.05) and q(x).shape == (5, 7, 48)
    gen = load_generator(moved_folder, quantize="int8")
    assert any(isinstance(m, Int8Linear) for m in gen.model.modules())
    preds = gen([r["source"] for r in evaluated])
    assert len(preds) == len(evaluated) and any(preds)
    model = load_generator(moved_folder).model
    quantize_model(model, "int8", skip=("head", "decoder"))
    assert not any(isinstance(m, Int8Linear) for m in model.decoder.modules())
    with pytest.raises(PredictError, match="quantize='int4'"):
        load_generator(moved_folder, quantize="int4")


# ---- checkpoint averaging --------------------------------------------------------------------------------------------
def test_averaging_last_checkpoints(tiny_run, tmp_path):
    from bertgen.tokenization import load_tokenizer

    tok = load_tokenizer(tiny_run / "tokenizer")
    run = tmp_path / "run"
    shutil.copytree(tiny_run / ".hydra", run / ".hydra")
    shutil.copytree(tiny_run / "tokenizer", run / "tokenizer")
    (run / "checkpoints").mkdir()
    fingerprints = {"model": "m", "encode": "e", "task": "quickstart"}
    states = []
    for step, seed in ((10, 1), (20, 2), (30, 3)):
        lit = tiny_module(tok, seed)
        states.append({k: v.clone() for k, v in lit.state_dict().items()})
        torch.save(
            {
                "state_dict": lit.state_dict(),
                "hyper_parameters": dict(lit.hparams),
                "global_step": step,
                "bertgen_fingerprints": fingerprints,
            },
            run / "checkpoints" / f"best-step{step}-{step / 10:.2f}.ckpt",
        )
    shutil.copy(run / "checkpoints" / "best-step30-3.00.ckpt", run / "checkpoints" / "last.ckpt")
    out = average_run(run, tmp_path / "avg", last=2)
    assert json.loads((out / "averaged.json").read_text())["steps"] == [30, 20]
    gen = load_generator(out)  # an exported folder with its conventions
    key = "model.decoder.layers.0.mlp.fc.weight"
    got = dict(gen.model.named_parameters())["decoder.layers.0.mlp.fc.weight"]
    assert torch.allclose(got, (states[1][key] + states[2][key]) / 2)
    assert read_conventions(out)["task"] == "quickstart"
    best = average_run(run, tmp_path / "best3", best=3)
    assert json.loads((best / "averaged.json").read_text())["steps"] == [30, 20, 10]

    with pytest.raises(AveragingError, match="fewer than the 4 asked for"):
        average_run(run, tmp_path / "x", last=4)
    other = torch.load(run / "checkpoints" / "best-step10-1.00.ckpt", weights_only=True)
    other["bertgen_fingerprints"] = {**fingerprints, "model": "another"}
    torch.save(other, run / "checkpoints" / "best-step10-1.00.ckpt")
    with pytest.raises(AveragingError, match="not of the same run .* model architecture"):
        average_run(run, tmp_path / "x", best=3)
    elsewhere = tmp_path / "other" / "checkpoints"
    elsewhere.mkdir(parents=True)
    shutil.copy(run / "checkpoints" / "best-step20-2.00.ckpt", elsewhere / "a.ckpt")
    with pytest.raises(AveragingError, match="checkpoints of different runs"):
        average_run(None, tmp_path / "x", checkpoints=[run / "checkpoints" / "last.ckpt", elsewhere / "a.ckpt"])
    proc = run_cli("average.py", [f"run_dir={run}", "last=9", f"out={tmp_path / 'y'}"], cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: ")


# ---- a real training run (slow) --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_quickstart_run_predict_cli_equals_evaluate(tmp_path):
    run = tmp_path / "run"
    proc = run_cli("train.py", [*TINY_QUICKSTART, f"hydra.run.dir={run}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert read_conventions(run / "model")["task"] == "quickstart"
    run_evaluate(tmp_path / "eval", f"ckpt={run}", f"cache_dir={tmp_path / 'cache'}")
    rows = read_jsonl(tmp_path / "eval" / "predictions.jsonl")
    (tmp_path / "sources.txt").write_text("".join(r["source"] + "\n" for r in rows), encoding="utf-8")
    folder = tmp_path / "moved"
    shutil.copytree(run / "model", folder)
    proc = run_cli(
        "predict.py",
        [f"ckpt={folder}", f"input={tmp_path / 'sources.txt'}", f"output={tmp_path / 'p.txt'}"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "p.txt").read_text(encoding="utf-8").splitlines() == [r["prediction"] for r in rows]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"predict: {len(rows)} rows")


def test_predict_config_composes_with_and_without_a_task():
    from predict import options

    plain = options(compose("predict", ["ckpt=x", "input=-"]))
    assert plain.task is None and plain.nbest == 1 and plain.generation["num_beams"] is None
    given = options(compose("predict", ["ckpt=x", "input=-", "task=wikisplit", "generation.top_p=0.9"]))
    assert given.task["name"] == "wikisplit" and given.task["generation"]["num_beams"] == 4
    assert given.generation["top_p"] == 0.9

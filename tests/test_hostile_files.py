"""Hostile files (issue 20, defects 2 and 8): a model folder whose config.json lies about its weights, a checkpoint
write that hits a full disk, a parquet file that is really text, a malformed tokenizer.json. Each is one error naming
the file and the key, raised before anything large is allocated: through the Python API and through the command line
(one ``error:`` line on stderr, exit code 1, no traceback)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertgen.checkpoints import load_checkpoint
from bertgen.data.errors import DataFormatError
from bertgen.model import EncoderDecoder, load_model
from bertgen.model.config import ModelFileError
from bertgen.tokenization import TokenizerFileError, load_tokenizer

from conftest import MINILM, TINY_QUICKSTART, cli_command, run_cli

# ---------------------------------------------------------------------------------------------------------------
# Model folders: a copy of all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide, 12 heads, 30,522 rows) with config.json edited
# ---------------------------------------------------------------------------------------------------------------
BAD = object()  # config.json that is not JSON


def hostile_folder(root: Path, edit: dict | str | object) -> Path:
    """MiniLM with ``edit`` applied to its config.json (a dict of keys, the raw text, or `BAD`); the weights and
    tokenizer files are links to the real ones."""
    folder = root / "model"
    folder.mkdir(parents=True)
    for f in MINILM.iterdir():
        if f.name != "config.json":
            os.symlink(f, folder / f.name)
    text = (MINILM / "config.json").read_text()
    if edit is BAD:
        text = text[: len(text) // 2]  # truncated mid-object
    elif isinstance(edit, str):
        text = edit
    else:
        text = json.dumps({**json.loads(text), **edit})
    (folder / "config.json").write_text(text)
    return folder


# (the edit, the message after "<folder>/config.json: " for config values, after "<where>: " for the weights)
CONFIG_CASES = {
    "layers_100000": ({"num_hidden_layers": 100000}, "num_hidden_layers=100000: expected an integer in 1..512"),
    "hidden_1e9": ({"hidden_size": 1e9}, "hidden_size=1000000000.0: expected an integer in 1..65,536"),
    "hidden_10**9": ({"hidden_size": 10**9}, "hidden_size=1000000000: expected an integer in 1..65,536"),
    "negative_inter": ({"intermediate_size": -1536}, "intermediate_size=-1536: expected an integer in 1..1,048,576"),
    "negative_heads": ({"num_attention_heads": -12}, "num_attention_heads=-12: expected an integer in 1..1,024"),
    "vocab_1e12": ({"vocab_size": 10**12}, "vocab_size=1000000000000: expected an integer in 1..4,000,000"),
    "string_size": ({"hidden_size": "384"}, "hidden_size='384': expected an integer in 1..65,536"),
    "malformed": (BAD, r"invalid JSON \(Expecting .*: line \d+ column \d+ \(char \d+\)\)"),
    "not_an_object": ("[1, 2]", "expected a JSON object, found list"),
}
WEIGHT_CASES = {
    "hidden_768": (
        {"hidden_size": 768},  # 12 heads of 64: a consistent config, but not these weights
        "config.json and weights disagree: embeddings.word_embeddings.weight has shape (30522, 384), the config "
        "implies (30522, 768) for it",
    ),
    "vocab_1000": (
        {"vocab_size": 1000},
        "config.json and weights disagree: embeddings.word_embeddings.weight has shape (30522, 384), the config "
        "implies (1000, 384) for it",
    ),
    "layers_12": ({"num_hidden_layers": 12}, "config.json says num_hidden_layers=12 but the weights hold 6 layers"),
}


def _expected(folder: Path, case: str, where: str | None = None) -> str:
    """The whole message, as a regular expression."""
    if case in CONFIG_CASES:
        why = CONFIG_CASES[case][1]
        return re.escape(f"{folder / 'config.json'}: ") + (why if case == "malformed" else re.escape(why))
    return re.escape(f"{where or folder}: {WEIGHT_CASES[case][1]}")


ALL_CASES = {**CONFIG_CASES, **WEIGHT_CASES}


@pytest.mark.parametrize("case", list(ALL_CASES))
def test_model_folder_config_is_checked_before_allocation(case, tmp_path):
    """`load_model` (the folder's own kind: MiniLM is a BERT stack, loaded as a decoder) and `load_checkpoint` (what
    evaluate.py's ckpt=<folder> calls): one `ModelFileError` naming the file and the key, at once."""
    folder = hostile_folder(tmp_path, ALL_CASES[case][0])
    for load in (load_model, lambda f: load_checkpoint(str(f))):
        start = time.monotonic()
        with pytest.raises(ModelFileError) as e:
            load(folder)
        assert time.monotonic() - start < 10
        assert re.fullmatch(_expected(folder, case), str(e.value)), str(e.value)
        assert e.value.__cause__ is None and "\n" not in str(e.value)


@pytest.mark.parametrize("case", ["layers_100000", "negative_inter", "malformed", "hidden_768", "layers_12"])
def test_warm_start_sides_are_checked_before_allocation(case, tmp_path):
    """`EncoderDecoder.from_encoder_decoder_pretrained` (what train.py's model.checkpoint=<folder> builds)."""
    folder = hostile_folder(tmp_path, ALL_CASES[case][0])
    with pytest.raises(ModelFileError) as e:
        EncoderDecoder.from_encoder_decoder_pretrained(folder, folder)
    assert re.fullmatch(_expected(folder, case, where=f"encoder checkpoint {folder}"), str(e.value)), str(e.value)


@pytest.mark.parametrize(
    "side, edit, message",
    [
        ("decoder", {"num_hidden_layers": 3}, "({side}): config.json says num_hidden_layers=3 but the weights hold 1 "),
        (
            "encoder",
            {"hidden_size": 48},
            "({side}): config.json and weights disagree: embeddings.word_embeddings.weight has shape (100, 24), the "
            "config implies (100, 48) for it",
        ),
        ("encoder", {"vocab_size": -5}, "config.json: vocab_size=-5: expected an integer in 1..4,000,000"),
    ],
)
def test_encoder_decoder_folder_is_checked_before_allocation(side, edit, message, tmp_path):
    tiny = dict(
        family="bert-generation",
        vocab_size=100,
        hidden_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    folder = tmp_path / "e2d"
    EncoderDecoder.from_encoder_decoder_pretrained(tiny, tiny).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config[side].update(edit)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError) as e:
        load_model(folder)
    expected = f"{folder}/" + message if message.startswith("config.json") else f"{folder} " + message
    assert str(e.value).startswith(expected.format(side=side)), str(e.value)


_UNDER_A_MEMORY_LIMIT = """
import re, resource, sys, time, torch
from bertgen.errors import BertgenError
from bertgen.model import load_model

def vm_peak():
    return int(re.search(r"VmPeak:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) << 10

limit = vm_peak() + (1 << 30)  # what this process has mapped so far, plus 1 GiB
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
start = time.monotonic()
try:
    load_model(sys.argv[1])
except BertgenError as e:
    print(f"{type(e).__name__}: {e}")
print(f"seconds {time.monotonic() - start:.2f}")
try:  # the limit bites: 1.5 GiB more cannot be had
    torch.ones(3 << 29, dtype=torch.uint8)
    print("limit not in force")
except (RuntimeError, MemoryError):
    print("limit in force")
"""


@pytest.mark.parametrize(
    "edit, message",
    [
        # within the bounds, but 512 MiniLM layers are 3.6 GB of float32: the 6 layers of the weights say no
        ({"num_hidden_layers": 512}, "config.json says num_hidden_layers=512 but the weights hold 6 layers"),
        # every size at its bound: terabytes, refused from the meta-device shapes alone
        (
            {
                "vocab_size": 4_000_000,
                "hidden_size": 65536,
                "num_attention_heads": 1024,
                "intermediate_size": 1_048_576,
                "num_hidden_layers": 512,
                "max_position_embeddings": 1_048_576,
            },
            "config.json and weights disagree: embeddings.word_embeddings.weight has shape (30522, 384), the config "
            "implies (4000000, 65536) for it",
        ),
    ],
)
def test_huge_config_fails_under_a_one_gib_memory_limit(edit, message, tmp_path):
    """The issue's case (layers allocated until memory ran out) in a child process under RLIMIT_AS: the error comes
    from the shapes on the meta device, quickly, with nothing large allocated."""
    folder = hostile_folder(tmp_path, edit)
    r = subprocess.run(
        [sys.executable, "-c", _UNDER_A_MEMORY_LIMIT, str(folder)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0] == f"ModelFileError: {folder}: {message}", r.stdout
    assert float(lines[1].split()[1]) < 10 and lines[2] == "limit in force", r.stdout


# ---- the command line ----------------------------------------------------------------------------------------------
def error_line(r: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a failed command (exit code 1, no traceback)."""
    assert r.returncode == 1 and "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, r.stderr[-3000:]
    return errors[0]


@pytest.mark.parametrize("case", ["layers_100000", "vocab_1e12", "malformed", "hidden_768", "layers_12"])
def test_evaluate_py_with_a_hostile_model_folder(case, tmp_path):
    folder = hostile_folder(tmp_path, ALL_CASES[case][0])
    out = tmp_path / "eval"
    start = time.monotonic()
    r = run_cli("evaluate.py", [f"ckpt={folder}", "task=quickstart", f"hydra.run.dir={out}"], tmp_path, timeout=120)
    line = error_line(r)
    assert re.fullmatch("error: " + _expected(folder, case), line), line
    assert time.monotonic() - start < 60
    assert not (out / "metrics.json").exists() and not (out / "predictions.jsonl").exists()


@pytest.mark.parametrize("case", ["negative_heads", "hidden_768"])
def test_train_py_with_a_hostile_model_checkpoint(case, tmp_path):
    folder = hostile_folder(tmp_path, ALL_CASES[case][0])
    run = tmp_path / "run"
    args = [*TINY_QUICKSTART, "model=bert2bert", f"model.checkpoint={folder}", "trainer.max_steps=1"]
    r = run_cli("train.py", [*args, f"hydra.run.dir={run}"], tmp_path, timeout=120)
    line = error_line(r)
    assert re.fullmatch("error: " + _expected(folder, case, where=f"encoder checkpoint {folder}"), line), line
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").iterdir())
    assert not (run / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# A checkpoint write on a full disk (a real limit: ``ulimit -f`` in a child process; Python ignores SIGXFSZ, so the
# write fails with EFBIG, as it does on a full quota)
# ---------------------------------------------------------------------------------------------------------------
_SAVE_TWICE = """
import sys, torch
from bertgen.checkpoints import CheckpointWriteError, save_atomic
save_atomic({"w": torch.zeros(10)}, sys.argv[1])  # 1 KB: fits
try:
    save_atomic({"w": torch.zeros(1 << 20)}, sys.argv[1])  # 4 MB: does not
except CheckpointWriteError as e:
    print(f"CheckpointWriteError: {e}")
print(torch.load(sys.argv[1], weights_only=True)["w"].shape[0])
"""


def _limited(cmd: list[str], kib: int) -> list[str]:
    """``cmd`` under bash's ``ulimit -f <kib>`` (1024-byte blocks)."""
    return ["bash", "-c", f'ulimit -f {kib} && exec "$@"', "bash", *cmd]


def test_checkpoint_write_on_a_full_disk_says_disk_full(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    r = subprocess.run(
        _limited([sys.executable, "-c", _SAVE_TWICE, str(path)], 256), capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr[-3000:]
    message, kept = r.stdout.splitlines()
    assert re.fullmatch(
        rf"CheckpointWriteError: disk full: writing checkpoint {re.escape(str(path))} failed after 262,144 bytes "
        r"\([\d,]+ bytes free there\); the run stops with its previous checkpoints intact",
        message,
    ), message
    assert kept == "10" and os.listdir(path.parent) == ["last.ckpt"]  # the previous one, and no temporary file


def test_train_py_checkpoint_on_a_full_disk_fails_the_run_saying_disk_full(tmp_path):
    """A quickstart run under ``ulimit -f 1024`` (1 MiB: its data and tokenizer fit, its 12 MB checkpoint does not)."""
    run = tmp_path / "run"
    args = [
        *TINY_QUICKSTART,
        "task.val_max_examples=8",
        "batch_size=16",
        "global_batch_size=16",
        "trainer.max_steps=2",
        "task.val_check_interval=2",
        f"hydra.run.dir={run}",
    ]
    cmd, env = cli_command("train.py", args, tmp_path)
    r = subprocess.run(_limited(cmd, 1024), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    line = error_line(r)
    assert re.fullmatch(
        rf"error: disk full: writing checkpoint {re.escape(str(run / 'checkpoints'))}/best-step2-[\d.]+\.ckpt failed "
        r"after 1,048,576 bytes \([\d,]+ bytes free there\); the run stops with its previous checkpoints intact",
        line,
    ), line
    assert list((run / "checkpoints").iterdir()) == []  # no partial checkpoint
    assert not (run / "metrics.json").exists() and not (run / "model").exists()


# ---------------------------------------------------------------------------------------------------------------
# A parquet file that is really text
# ---------------------------------------------------------------------------------------------------------------
PARQUET_WHY = (
    "not a Parquet file (ArrowInvalid: Parquet magic bytes not found in footer. Either the file is corrupted or this "
    "is not a parquet file.)"
)


@pytest.fixture
def text_parquet(tmp_path) -> Path:
    path = tmp_path / "test.parquet"
    path.write_text("source\ttarget\nthe source\tthe target\n")
    return path


def test_parquet_file_that_is_text_names_the_path(text_parquet, wordpiece, tmp_path):
    from bertgen.data import Seq2SeqDataModule

    dm = Seq2SeqDataModule.from_files(
        wordpiece,
        data_files={"train": text_parquet},
        source_column="source",
        target_column="target",
        cache_dir=tmp_path / "cache",
        batch_size=2,
    )
    with pytest.raises(DataFormatError) as e:
        dm.setup(None)
    assert str(e.value) == f"{text_parquet}: {PARQUET_WHY}"
    assert e.value.__cause__ is None


def test_evaluate_py_with_a_parquet_file_that_is_text(text_parquet, tmp_path):
    args = [f"ckpt={MINILM}", "task=files", f"+task.data_files.test={text_parquet}", f"hydra.run.dir={tmp_path / 'e'}"]
    line = error_line(run_cli("evaluate.py", args, tmp_path, timeout=120))
    assert line == f"error: {text_parquet}: {PARQUET_WHY}"


# ---------------------------------------------------------------------------------------------------------------
# A malformed tokenizer.json
# ---------------------------------------------------------------------------------------------------------------
def _tokenizer_folder(root: Path, tokenizer_json: str | None = None, config_json: str | None = None) -> Path:
    folder = root / "tokenizer"
    folder.mkdir()
    for name, text in (("tokenizer.json", tokenizer_json), ("tokenizer_config.json", config_json)):
        (folder / name).write_text(text if text is not None else (MINILM / name).read_text())
    return folder


TRUNCATED = (MINILM / "tokenizer.json").read_text()[:3000] if MINILM.is_dir() else ""


@pytest.mark.parametrize(
    "tokenizer_json, config_json, message",
    [
        (
            TRUNCATED,
            None,
            "cannot read tokenizers JSON {folder}/tokenizer.json: EOF while parsing an object at line 1 column 3000",
        ),
        (
            '{"version": "1.0", "model": {"type": "WordPiece", "vocab": 5}}',
            None,
            "cannot read tokenizers JSON {folder}/tokenizer.json: invalid type: integer `5`, expected a map at line 1 "
            "column 62",
        ),
        (
            None,
            '{"do_lower_case": true,',
            "cannot read tokenizer file {folder}/tokenizer_config.json: Expecting property name enclosed in double "
            "quotes: line 1 column 24 (char 23)",
        ),
        (None, "[]", "{folder}/tokenizer_config.json: expected a JSON object, got list"),
    ],
    ids=["truncated", "wrong_schema", "config_truncated", "config_not_an_object"],
)
def test_malformed_tokenizer_files_name_the_file(tokenizer_json, config_json, message, tmp_path):
    folder = _tokenizer_folder(tmp_path, tokenizer_json, config_json)
    with pytest.raises(TokenizerFileError) as e:
        load_tokenizer(folder)
    assert str(e.value) == message.format(folder=folder)


def test_evaluate_py_with_a_malformed_tokenizer_json(tmp_path):
    folder = _tokenizer_folder(tmp_path, TRUNCATED)
    args = [f"ckpt={MINILM}", f"tokenizer={folder}", "task=quickstart", f"hydra.run.dir={tmp_path / 'e'}"]
    line = error_line(run_cli("evaluate.py", args, tmp_path, timeout=120))
    why = "EOF while parsing an object at line 1 column 3000"
    assert line == f"error: cannot read tokenizers JSON {folder / 'tokenizer.json'}: {why}"

"""Reliability and safety through the real command line: nothing executed from a checkpoint, no silent loss, every
bad input one clear error naming what is wrong."""

from __future__ import annotations

import csv
import os
import pickle
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from conftest import REPO, SHARED, TINY_QUICKSTART, TINY_WIKISPLIT, run_cli, start_cli

QUICK = [*TINY_QUICKSTART, "task.val_max_examples=8", "batch_size=16", "global_batch_size=16"]


class _Payload:
    """Unpickling this runs ``touch <marker>``: what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def craft_checkpoint(path: Path, marker: Path, legacy: bool = False, **extra) -> None:
    """A .ckpt whose unpickling runs code: torch's zip format, or a plain pickle (``legacy``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"state_dict": {}, "global_step": 0, "payload": _Payload(marker), **extra}
    if legacy:
        with open(path, "wb") as f:
            pickle.dump(data, f)
    else:
        torch.save(data, path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 4-step quickstart run (validation at steps 2 and 4, best checkpoint, export)."""
    run = tmp_path_factory.mktemp("reliability") / "run"
    r = run_cli(
        "train.py", [*QUICK, "trainer.max_steps=4", "task.val_check_interval=2", f"hydra.run.dir={run}"], run.parent
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return run


# ---- 1. nothing is ever unpickled beyond tensors and plain data ----------------------------------------------------
def test_no_unsafe_torch_load_anywhere_in_the_package():
    offenders = [
        f"{p.relative_to(REPO)}:{i}"
        for p in [*(REPO / "bertgen").rglob("*.py"), REPO / "train.py", REPO / "evaluate.py"]
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"weights_only\s*=\s*False", line) and not line.lstrip().startswith("#")
    ]
    assert offenders == []


@pytest.mark.parametrize("legacy", [False, True])
def test_crafted_last_ckpt_is_refused_on_resume_and_runs_nothing(tmp_path, legacy):
    run, marker = tmp_path / "run", tmp_path / "PWNED"
    craft_checkpoint(run / "checkpoints" / "last.ckpt", marker, legacy=legacy)
    r = run_cli(
        "train.py", [*QUICK, "optim=paper", "trainer.max_steps=1", "ckpt_path=last", f"hydra.run.dir={run}"], tmp_path
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "last.ckpt" in r.stderr and "safe (weights-only) loader refuses" in r.stderr
    assert not marker.exists()
    assert not (run / "model").exists() and not (run / "metrics.json").exists()


def test_export_of_a_crafted_best_checkpoint_runs_nothing(tmp_path):
    from bertgen.callbacks import ExportBestModel

    marker = tmp_path / "PWNED"
    best = tmp_path / "best.ckpt"
    craft_checkpoint(best, marker)

    class Trainer:
        checkpoint_callback = type("C", (), {"best_model_path": str(best)})()
        is_global_zero = True

    with pytest.raises(pickle.UnpicklingError):
        ExportBestModel(tmp_path / "model").on_fit_end(Trainer(), None)
    assert not marker.exists()


def test_evaluate_refuses_a_crafted_ckpt(trained, tmp_path):
    marker = tmp_path / "PWNED"
    crafted = tmp_path / "crafted" / "checkpoints" / "best.ckpt"
    craft_checkpoint(crafted, marker, hyper_parameters={})
    r = run_cli(
        "evaluate.py",
        [f"ckpt={crafted}", f"tokenizer={trained / 'tokenizer'}", f"hydra.run.dir={tmp_path / 'e'}"],
        tmp_path,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr and "refuses" in r.stderr, r.stderr[-2000:]
    assert not marker.exists()


# ---- 2. a checkpoint that cannot be written fails the run ------------------------------------------------------------
@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs root and setpriv")
def test_unwritable_checkpoint_folder_fails_the_run_loudly():
    root = Path(tempfile.mkdtemp(prefix="bertgen-ro-"))
    try:
        os.chmod(root, 0o777)
        run = root / "run"
        run.mkdir(mode=0o777)
        os.chmod(run, 0o777)
        (run / "checkpoints").mkdir(mode=0o755)  # owned by root: not writable by the unprivileged user
        before = set(Path(tempfile.gettempdir()).iterdir())
        r = run_cli(
            "train.py",
            [
                *QUICK,
                "trainer.max_steps=2",
                "task.val_check_interval=2",
                f"hydra.run.dir={run}",
                f"cache_dir={root / 'cache'}",
            ],
            root,
            user=65534,
        )
        assert r.returncode != 0, r.stdout[-2000:]
        assert "Permission denied" in r.stderr and "checkpoints" in r.stderr
        assert not (run / "metrics.json").exists() and not (run / "model").exists()
        leftovers = [p for p in set(Path(tempfile.gettempdir()).iterdir()) - before if p.suffix != ".lock"]
        assert not [p for p in leftovers if p.is_file() and p.stat().st_size > 1_000_000], leftovers
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- 3. logs survive resume ------------------------------------------------------------------------------------------
def test_resume_appends_to_the_training_log(tmp_path):
    run = tmp_path / "run"
    common = [*QUICK, "task.val_check_interval=2", "trainer.log_every_n_steps=1", f"hydra.run.dir={run}"]
    assert run_cli("train.py", [*common, "trainer.max_steps=2"], tmp_path).returncode == 0
    log = run / "logs" / "metrics.csv"
    first = list(csv.DictReader(open(log)))
    r = run_cli("train.py", [*common, "trainer.max_steps=4", "ckpt_path=last"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = list(csv.DictReader(open(log)))
    assert rows[: len(first)] == first and len(rows) > len(first)
    assert {int(r["step"]) for r in rows if r.get("train/loss")} >= {0, 1, 2, 3}


# ---- 4. vocabulary, positions ----------------------------------------------------------------------------------------
def test_evaluate_with_a_foreign_tokenizer_is_one_clear_error(trained, tmp_path):
    from bertgen.tokenization import train_sentencepiece

    small = train_sentencepiece(
        [f"word{i} and more text {i}" for i in range(300)], vocab_size=64, output_dir=tmp_path / "small"
    )
    assert small.vocab_size == 64
    r = run_cli(
        "evaluate.py",
        [
            f"ckpt={trained / 'model'}",
            "task=quickstart",
            f"data_dir={trained / 'data'}",
            f"tokenizer={tmp_path / 'small'}",
            f"hydra.run.dir={tmp_path / 'e'}",
        ],
        tmp_path,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "tokenizer has 64 tokens" in r.stderr and "not the tokenizer this model was trained with" in r.stderr
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_source_length_above_the_positions_fails_at_start(tmp_path):
    r = run_cli(
        "train.py",
        [
            *QUICK,
            "task.task_options.max_source_length=4096",
            "trainer.max_steps=1",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        tmp_path,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "max_source_length=4096 exceeds the encoder's" in r.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---- 6, 9. config values validated at start-up, each naming its key -------------------------------------------
@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.constant=-0.05", "optim.constant=-0.05: must be > 0"),
        ("optim.lr=-1.0", "optim.lr=-1.0: must be > 0"),
        ("trainer.max_steps=abc", "trainer.max_steps='abc': expected int"),
        ("label_smoothing=1.5", "label_smoothing=1.5: must be < 1"),
        ("global_batch_size=20", "global_batch_size 20 is not a multiple of batch_size 16"),
        ("+trainer.limt_val_batches=1", "limt_val_batches is not a lightning.Trainer argument"),
        ("model.cross_attention_init=copy", "model.cross_attention_init='copy': expected random or self_attention"),
    ],
)
def test_bad_config_values_fail_before_any_work(tmp_path, override, message):
    extra = ["optim=paper"] if override.startswith("optim.constant") else []
    r = run_cli("train.py", [*QUICK, *extra, override, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert message in r.stderr
    assert not (tmp_path / "run" / "data").exists()  # failed before the corpus was written


# ---- 7. a corrupt last.ckpt: a clear message and the intact alternative, never silently ---------------------
def test_truncated_last_ckpt_names_the_intact_alternative(trained, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))
    assert best
    r = run_cli(
        "train.py",
        [*QUICK, "trainer.max_steps=6", "task.val_check_interval=2", "ckpt_path=last", f"hydra.run.dir={run}"],
        tmp_path,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "last.ckpt cannot be read" in r.stderr and f"pass ckpt_path={best[-1]}" in r.stderr
    # the explicit choice resumes from it
    r = run_cli(
        "train.py",
        [*QUICK, "trainer.max_steps=6", "task.val_check_interval=2", f"ckpt_path={best[-1]}", f"hydra.run.dir={run}"],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.load(last, weights_only=True)["global_step"] == 6


def test_empty_last_ckpt_without_alternative(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    r = run_cli("train.py", [*QUICK, "trainer.max_steps=2", "ckpt_path=last", f"hydra.run.dir={run}"], tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "last.ckpt cannot be read (0 bytes" in r.stderr and "start the run afresh" in r.stderr


# ---- 10. smaller items ----------------------------------------------------------------------------------------
def test_summary_names_only_outputs_that_exist_and_messages_print_once(tmp_path):
    run = tmp_path / "run"
    r = run_cli("train.py", [*QUICK, "trainer.max_steps=2", f"hydra.run.dir={run}"], tmp_path)  # no validation ran
    assert r.returncode == 0, r.stderr[-2000:]
    assert "predictions:" not in r.stdout and not (run / "predictions").exists()
    out = r.stdout + r.stderr
    line = next(x for x in out.splitlines() if "`Trainer.fit` stopped" in x)
    assert sum("`Trainer.fit` stopped" in x for x in out.splitlines()) == 1, line
    modes = {p.name: p.stat().st_mode & 0o777 for p in [run / "model" / "model.safetensors", run / "metrics.json"]}
    assert all(m & 0o044 == 0o044 for m in modes.values()), modes  # readable by the group and others, as files are


def test_truncated_safetensors_names_the_file(trained, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(trained / "model", folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    r = run_cli(
        "evaluate.py",
        [f"ckpt={folder}", "task=quickstart", f"data_dir={trained / 'data'}", f"hydra.run.dir={tmp_path / 'e'}"],
        tmp_path,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{weights}: cannot read the weights (500 bytes" in r.stderr


# ---- the kill -9 soak: a run killed at random moments and resumed ends with the weights of one never killed ----------
@pytest.mark.slow
def test_kill_minus_9_soak_resumes_to_identical_weights(tmp_path):
    import random
    import signal
    import time

    kills, steps = 6, 1500
    common = [
        *QUICK,
        "deterministic=true",
        "task.val_check_interval=500",
        "callbacks.checkpoint.every_n_train_steps=1",
        "model.overrides.hidden_dropout_prob=0.1",
        f"trainer.max_steps={steps}",
        "export_model=false",
    ]
    ref = run_cli("train.py", [*common, f"hydra.run.dir={tmp_path / 'ref'}"], tmp_path, timeout=1200)
    assert ref.returncode == 0, ref.stderr[-2000:]

    run, rng, log = tmp_path / "soak", random.Random(0), []
    for _ in range(kills + 20):
        resume = ["ckpt_path=last"] if (run / "checkpoints" / "last.ckpt").is_file() else []
        proc = start_cli("train.py", [*common, *resume, f"hydra.run.dir={run}"], tmp_path, stdout=subprocess.DEVNULL)
        if len(log) < kills:
            delay = rng.uniform(4.0, 9.0)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                step = (
                    torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
                    if (run / "checkpoints" / "last.ckpt").is_file()
                    else None
                )
                log.append((round(delay, 1), step))
                continue
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        if (run / "metrics.json").is_file():
            break
        time.sleep(0.1)
    assert len(log) == kills, log  # every planned kill landed while training
    print(f"kill -9 soak: {kills} kills at (seconds after start, last saved step) {log}")
    a = torch.load(tmp_path / "ref" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == steps
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], atol=0, rtol=0, msg=k)


# ---- 5, 8, 10. bad data rows: skipped and counted on request; BOM, trailing blank lines, NUL, empty files ----------
WIKI = [*TINY_WIKISPLIT, "+task.task_options.max_source_length=64", "+task.task_options.max_target_length=64"]


def wiki_dir(root: Path, rows: int = 12) -> Path:
    real = (SHARED / "data" / "wikisplit" / "validation.tsv").read_text(encoding="utf-8").splitlines()
    root.mkdir(parents=True, exist_ok=True)
    for i, split in enumerate(("train", "validation", "test")):
        (root / f"{split}.tsv").write_text("\n".join(real[i * rows : (i + 1) * rows]) + "\n", encoding="utf-8")
    return root


def test_skip_invalid_from_the_command_line_counts_rows_by_cause(tmp_path):
    data = wiki_dir(tmp_path / "data")
    train = data / "train.tsv"
    train.write_bytes(
        train.read_bytes() + b"one column only\n" + b"bad \xff byte\tx\n" + b"nul\x00\tx\n" + b"\tno source\n"
    )
    r = run_cli("train.py", [*WIKI, f"data_dir={data}", f"hydra.run.dir={tmp_path / 'strict'}"], tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{train}:13: wrong column count" in r.stderr and "skip_invalid=true" in r.stderr
    r = run_cli(
        "train.py", [*WIKI, f"data_dir={data}", "skip_invalid=true", f"hydra.run.dir={tmp_path / 'skip'}"], tmp_path
    )
    assert r.returncode == 0, r.stderr[-2000:]
    from bertgen.run_record import RunRecord

    stats = RunRecord.load(tmp_path / "skip").data_stats
    assert stats["data/train/invalid_rows"] == 4 and stats["data/train/examples"] == 12
    assert {k.rsplit("/", 1)[1]: v for k, v in stats.items() if k.startswith("data/train/invalid/")} == {
        "wrong_column_count": 1,
        "invalid_utf8": 1,
        "nul_byte": 1,
        "empty_source": 1,
    }


def test_bom_and_trailing_blank_lines_are_not_data(tmp_path):
    from bertgen.data import Seq2SeqDataModule
    from bertgen.tokenization import load_tokenizer

    data = wiki_dir(tmp_path / "data")
    val = data / "validation.tsv"
    first = val.read_text(encoding="utf-8").split("\t", 1)[0]
    val.write_bytes(b"\xef\xbb\xbf" + val.read_bytes() + b"\n\n  \n")
    dm = Seq2SeqDataModule(
        "wikisplit",
        load_tokenizer(SHARED / "models" / "all-MiniLM-L6-v2"),
        data_dir=data,
        cache_dir=tmp_path / "cache",
        batch_size=4,
    )
    dm.setup("validate")
    assert len(dm.datasets["validation"]) == 12
    assert dm.source_text("validation", 0) == first and not dm.source_text("validation", 0).startswith("\ufeff")


def test_empty_split_file_is_named_and_leaves_no_cache_entry(tmp_path):
    data = wiki_dir(tmp_path / "data")
    (data / "validation.tsv").write_text("", encoding="utf-8")
    r = run_cli(
        "train.py",
        [*WIKI, f"data_dir={data}", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"],
        tmp_path,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{data / 'validation.tsv'}" in r.stderr and "no examples" in r.stderr
    assert "data_files" not in r.stderr and "network" not in r.stderr
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_dir() and not any(p.iterdir())]
    assert not leftovers and not list((tmp_path / "cache").rglob(".*.*"))
    entries = (
        [p for p in (tmp_path / "cache" / "wikisplit").iterdir()] if (tmp_path / "cache" / "wikisplit").is_dir() else []
    )
    assert all((p / "meta.json").is_file() for p in entries)
    assert all(p.stat().st_mode & 0o055 == 0o055 for p in entries)  # cache folders are not 0700

"""What keeps one run one run, through the real command line: a resume that would mix runs is refused before anything
is touched, a copied run dir keeps its best checkpoint, one process per run dir, SIGTERM saves and fails, and every bad
value is refused at start-up with its key."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_QUICKSTART, run_cli, start_cli

QUICK = [*TINY_QUICKSTART, "task.val_max_examples=8", "batch_size=16", "global_batch_size=16"]
RUN_FOUR = [*QUICK, "trainer.max_steps=4", "task.val_check_interval=2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished 4-step quickstart run (validation at steps 2 and 4, best checkpoint, export)."""
    run = tmp_path_factory.mktemp("guards") / "run"
    r = run_cli("train.py", [*RUN_FOUR, f"hydra.run.dir={run}"], run.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


def tree_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return r.stderr


# ---- a resume that would mix two runs is refused, and leaves the run dir as it was -----------------------------------
@pytest.mark.parametrize(
    "change, what",
    [
        ("+model.tokenizer.train_sentencepiece.character_coverage=0.98", "train_sentencepiece"),
        ("model.encoder.num_hidden_layers=1", "model architecture"),
        ("task.task_options.max_source_length=40", "task encoding"),
    ],
)
def test_resume_with_other_settings_is_refused_before_anything_is_touched(trained, tmp_path, change, what):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / ".bertgen.lock").unlink(missing_ok=True)
    before = {d: tree_hashes(run / d) for d in ("tokenizer", ".hydra", "checkpoints", "model")}
    r = run_cli(
        "train.py", [*RUN_FOUR, "trainer.max_steps=6", change, "ckpt_path=last", f"hydra.run.dir={run}"], tmp_path
    )
    err = one_error_line(r)
    assert what in err, err[-2000:]
    if what != "train_sentencepiece":  # found by the checkpoint's fingerprints: names the overrides that changed
        assert "not the same run" in err and "overrides not in the run's own: [" in err, err[-2000:]
        assert f"'{change}'" in err.split("overrides not in the run's own:")[1], err[-2000:]
    assert {d: tree_hashes(run / d) for d in before} == before  # no tokenizer retrained, no config rewritten


def test_tokenizer_files_changed_behind_the_runs_back_are_refused(trained, tmp_path):
    """The fingerprints are of the prepared tokenizer's files: a run dir whose tokenizer/ was replaced by one of the
    same size (other pieces, same ids count: the silent-corruption case) does not resume."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    other = tmp_path / "other"
    unigram = "model.tokenizer.train_sentencepiece.model_type=unigram"
    r = run_cli("train.py", [*QUICK, "trainer.max_steps=1", unigram, f"hydra.run.dir={other}"], tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "Vocabulary size too high (800). Please set it to a value <= 269" in r.stderr  # the corpus is too small
    coverage = "+model.tokenizer.train_sentencepiece.character_coverage=0.98"  # 800 pieces again, other ones
    r = run_cli("train.py", [*QUICK, "trainer.max_steps=1", coverage, f"hydra.run.dir={other}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    for f in (other / "tokenizer").iterdir():
        if f.name != "bertgen_trained_on.txt":  # the run's own marker stays: only the files changed
            shutil.copy(f, run / "tokenizer" / f.name)
    r = run_cli("train.py", [*RUN_FOUR, "trainer.max_steps=6", "ckpt_path=last", f"hydra.run.dir={run}"], tmp_path)
    err = one_error_line(r)
    assert "not the same run: the source tokenizer (its saved files)" in err, err[-2000:]


# ---- a copied run dir keeps its best checkpoint ----------------------------------------------------------------------
def test_copied_run_dir_keeps_its_best_checkpoint(trained, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    (run / ".bertgen.lock").unlink(missing_ok=True)
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))
    assert best
    # make one of them unbeatable: the resumed run must keep it as its best, not forget it and pick a newer one
    kept = best[0].with_name(best[0].name.rsplit("-", 1)[0] + "-99.00.ckpt")
    best[0].rename(kept)
    r = run_cli("train.py", [*RUN_FOUR, "trainer.max_steps=6", "ckpt_path=last", f"hydra.run.dir={run}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    record = json.loads((run / "metrics.json").read_text())
    assert record["global_step"] == 6
    assert Path(record["best_checkpoint"]).name == kept.name and record["best_score"] == pytest.approx(99.0)


def test_resuming_a_finished_run_keeps_its_scores(trained, tmp_path):
    """A resume at max_steps trains and validates nothing: the record keeps the scores of the same weights."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = json.loads((run / "metrics.json").read_text())
    assert before["metrics"]
    r = run_cli("train.py", [*RUN_FOUR, "ckpt_path=last", f"hydra.run.dir={run}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    after = json.loads((run / "metrics.json").read_text())
    assert after["global_step"] == before["global_step"] == 4 and after["metrics"] == before["metrics"]


# ---- one process per run dir -----------------------------------------------------------------------------------------
def test_stale_lock_is_taken_over_and_a_live_one_refuses(tmp_path):
    from bertgen.checkpoints import RunDirBusyError, RunDirLock

    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    me = {"host": socket.gethostname(), "run_dir": str(run.resolve()), "since": "then"}
    (run / RunDirLock.FILE).write_text(json.dumps({**me, "pid": dead.pid}))
    with RunDirLock(run):  # the holder is gone: taken over
        held = json.loads((run / RunDirLock.FILE).read_text())
        assert held["pid"] == os.getpid()
    assert not (run / RunDirLock.FILE).exists()  # released

    alive = subprocess.Popen(["sleep", "30"])
    try:
        (run / RunDirLock.FILE).write_text(json.dumps({**me, "pid": alive.pid}))
        with pytest.raises(RunDirBusyError, match=f"is in use by pid {alive.pid} on host"):
            RunDirLock(run).acquire()
        assert json.loads((run / RunDirLock.FILE).read_text())["pid"] == alive.pid  # not taken from a live holder
    finally:
        alive.kill()
        alive.wait()
    # copied along with the run dir (another run dir recorded): taken over
    (run / RunDirLock.FILE).write_text(json.dumps({**me, "run_dir": "/elsewhere", "pid": 1}))
    with RunDirLock(run):
        pass


def test_train_into_a_dir_with_a_stale_lock_runs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = {"pid": dead.pid, "host": socket.gethostname(), "run_dir": str(run.resolve()), "since": "then"}
    (run / ".bertgen.lock").write_text(json.dumps(lock))
    r = run_cli("train.py", [*QUICK, "trainer.max_steps=1", f"hydra.run.dir={run}"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "taking over the lock" in r.stdout + r.stderr
    assert not (run / ".bertgen.lock").exists()


# ---- SIGTERM: the state at that step is saved, the exit is a failure, and resuming is exact --------------------------
@pytest.mark.slow
def test_sigterm_saves_reports_and_resumes_to_identical_weights(tmp_path):
    steps = 400
    common = [
        *QUICK,
        "deterministic=true",
        "task.val_check_interval=1000",  # no validation: without the SIGTERM save, everything would be lost
        "model.overrides.hidden_dropout_prob=0.1",
        f"trainer.max_steps={steps}",
        "export_model=false",
    ]
    ref = run_cli("train.py", [*common, f"hydra.run.dir={tmp_path / 'ref'}"], tmp_path, timeout=1200)
    assert ref.returncode == 0, ref.stderr[-2000:]

    run = tmp_path / "run"
    log_path = tmp_path / "killed.log"
    with open(log_path, "w") as out:
        proc = start_cli("train.py", [*common, f"hydra.run.dir={run}"], tmp_path, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while "Total FLOPs" not in log_path.read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)  # the model summary: training starts now
        assert proc.poll() is None, log_path.read_text()[-3000:]
        # a second run into the same dir is refused while the first holds it
        second = run_cli("train.py", [*common, f"hydra.run.dir={run}"], tmp_path)
        assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr[-2000:]
        assert f"is in use by pid {proc.pid} on host" in second.stderr
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=300)
    text = log_path.read_text()
    assert rc == 143, text[-3000:]  # a scheduler sees a failure
    record = json.loads((run / "metrics.json").read_text())
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert record["status"] == "preempted" and record["global_step"] == saved and 0 < saved < steps, (record, saved)
    assert f"pre-empted (SIGTERM) at step {saved}" in text and "ckpt_path=last" in text
    assert not (run / ".bertgen.lock").exists()

    resumed = run_cli("train.py", [*common, "ckpt_path=last", f"hydra.run.dir={run}"], tmp_path, timeout=1200)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((run / "metrics.json").read_text()).get("status") is None  # finished
    a = torch.load(tmp_path / "ref" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == steps
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], atol=0, rtol=0, msg=k)


# ---- every bad value refused at start-up, naming its key, before any training ----------------------------------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        (["task.val_generation.num_beams=0"], "task.val_generation: num_beams must be >= 1, got 0"),
        (["task.generation.num_beams=0", "test_after_training=true"], "task.generation: num_beams must be >= 1"),
        (["trainer.max_steps=0"], "trainer.max_steps=0: nothing would be trained"),
        (["seed=-1"], "seed=-1"),
        (["trainer.precision=bogus"], "trainer.precision='bogus': expected one of"),
        (["trainer.devices=0"], "trainer.devices=0: expected a count >= 1"),
    ],
)
def test_bad_values_fail_at_start(tmp_path, overrides, message):
    run = tmp_path / "run"
    r = run_cli("train.py", [*QUICK, *overrides, f"hydra.run.dir={run}"], tmp_path, timeout=120)
    err = one_error_line(r)
    assert message in err, err[-2000:]
    assert not (run / "checkpoints").exists()  # nothing trained


@pytest.mark.parametrize(
    "override, message",
    [
        ("generation.num_beams=10000", "generation: num_beams=10000 needs 2 x num_beams <= the vocabulary size (800)"),
        ("batch_size=0", "batch_size=0"),
    ],
)
def test_bad_evaluate_values_fail_at_start(trained, tmp_path, override, message):
    r = run_cli(
        "evaluate.py",
        [f"ckpt={trained}", "task=quickstart", f"data_dir={trained / 'data'}", override, f"hydra.run.dir={tmp_path}/e"],
        tmp_path,
    )
    err = one_error_line(r)
    assert message in err, err[-2000:]


def test_encoder_decoder_folder_as_one_side_is_one_error(trained, tmp_path):
    r = run_cli(
        "train.py",
        [*QUICK, "model=bert2bert", f"model.checkpoint={trained / 'model'}", f"hydra.run.dir={tmp_path / 'r'}"],
        tmp_path,
    )
    err = one_error_line(r)
    assert "is a whole encoder-decoder model" in err and "+model.pretrained=" in err, err[-2000:]

"""Shared test fixtures and helpers. ``../shared`` (beside the repository) holds the real data, models and test vectors.

Helpers for the test files (``from conftest import ...``):

* `run_cli` / `start_cli`: ``train.py``, ``evaluate.py``, another script or ``python -m <module>`` in a child process,
  offline, its data cache in the folder it runs in;
* `compose`: a config of ``conf/`` composed with Hydra's compose API (what the command line would get);
* `run_evaluate`: evaluate.py in-process;
* `TINY_QUICKSTART`, `TINY_WIKISPLIT`: the overrides of a tiny training run, to which each test adds its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytest
from hydra import compose as _hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BERTGEN_SHARED", REPO.parent / "shared"))
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
if str(REPO) not in sys.path:  # train.py / evaluate.py live at the repository root
    sys.path.insert(0, str(REPO))

# ---- tiny training runs ----------------------------------------------------------------------------------------------
TINY_QUICKSTART = [
    # the offline quickstart on a corpus of 128 / 8 / 8 synthetic rows, short validation decoding
    "experiment=quickstart",
    "trainer.enable_progress_bar=false",
    "task.synthetic.train=128",
    "task.synthetic.validation=8",
    "task.synthetic.test=8",
    "task.val_generation.max_new_tokens=4",
]
TINY_WIKISPLIT = [
    # the quickstart model (all-MiniLM-L6-v2's WordPiece vocabulary) on WikiSplit rows: 2 steps of batch 4
    "model=quickstart",
    f"model.tokenizer={MINILM}",
    "task=wikisplit",
    "trainer.enable_progress_bar=false",
    "batch_size=4",
    "global_batch_size=4",
    "task.val_check_interval=2",
    "task.val_max_examples=4",
    "task.val_generation.max_new_tokens=4",
    "trainer.max_steps=2",
]

# ---- the command line in a child process -----------------------------------------------------------------------------
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
Script = str | Path | Sequence[str]


def cli_command(
    script: Script,
    args: Sequence[Any] = (),
    cwd: Path = REPO,
    *,
    env: Mapping[str, str | None] | None = None,
    user: int | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of `run_cli` / `start_cli` (see `run_cli`)."""
    if isinstance(script, str | Path):
        path = Path(script)
        cmd = [sys.executable, str(path if path.is_absolute() else REPO / path)]
    else:
        cmd = [sys.executable, *script]
    cmd += [str(a) for a in args]
    full = {**os.environ, **OFFLINE_ENV}
    if Path(cwd) != REPO:  # never the user's ~/.cache, nor the repository
        full["BERTGEN_DATA_CACHE"] = str(Path(cwd) / "cache")
    if user is not None:  # drop root's permission override: CI runs as root
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        full["HOME"] = str(cwd)
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return cmd, full


def run_cli(
    script: Script,
    args: Sequence[Any] = (),
    cwd: Path = REPO,
    *,
    timeout: float | None = 300,
    env: Mapping[str, str | None] | None = None,
    user: int | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python <script> <args>`` and return it finished, its stdout and stderr captured as text.

    ``script``: ``"train.py"`` / ``"evaluate.py"`` (a relative path is one in the repository), any script's path, or
    the arguments before ``args`` as a sequence: ``["-m", "bertgen.report"]``, ``["-c", code]``.
    The environment: this one, offline (`OFFLINE_ENV`), ``BERTGEN_DATA_CACHE=<cwd>/cache`` unless ``cwd`` is the
    repository, then ``env`` (a value of None removes the variable). ``user``: run as this user and group id, with
    ``HOME=<cwd>`` (needs root and ``setpriv``).
    """
    cmd, full = cli_command(script, args, cwd=cwd, env=env, user=user)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full)


def start_cli(
    script: Script,
    args: Sequence[Any] = (),
    cwd: Path = REPO,
    *,
    env: Mapping[str, str | None] | None = None,
    user: int | None = None,
    stdout: int | IO | None = subprocess.PIPE,
    stderr: int | IO | None = subprocess.PIPE,
) -> subprocess.Popen:
    """`run_cli`'s command started and not waited for (text mode): for tests that stream its output or kill it."""
    cmd, full = cli_command(script, args, cwd=cwd, env=env, user=user)
    return subprocess.Popen(cmd, cwd=cwd, stdout=stdout, stderr=stderr, text=True, env=full)


# ---- a tiny randomly initialised model -------------------------------------------------------------------------------
def tiny_seq2seq(tok, *, seed: int = 0, layers: int = 1, generation: Mapping[str, Any] | None = None):
    """A 32-wide rnd2rnd Seq2SeqModule (shared embeddings) over ``tok``'s vocabulary, seeded."""
    import torch

    from bertgen.lit_module import Seq2SeqModule

    side = dict(
        family="bert-generation",
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    special = {
        "decoder_start_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    torch.manual_seed(seed)
    return Seq2SeqModule(
        model={"kind": "encoder_decoder", "encoder": side, "decoder": side, "share_embeddings": True},
        special_tokens=special,
        generation=dict(generation or {"num_beams": 1, "max_new_tokens": 8}),
    )


def write_tiny_run(root: Path, lit, tok, sizes: Mapping[str, int], export_task=None) -> Path:
    """``root`` (whose ``data/`` holds the synthetic corpus of ``sizes``) as a quickstart run dir of ``lit``: its
    exported ``model/`` (with the task's conventions when ``export_task``) and ``.hydra/config.yaml``."""
    from omegaconf import OmegaConf

    lit.export(root / "model", tok, task=export_task)
    task = OmegaConf.create(OmegaConf.to_container(compose("train", ["task=quickstart"]).task, resolve=True))
    task.synthetic = dict(sizes)
    task.generation.max_new_tokens = 8
    (root / ".hydra").mkdir()
    OmegaConf.save(
        OmegaConf.create({"task": task, "model": {"name": "quickstart"}, "seed": 0}), root / ".hydra" / "config.yaml"
    )
    return root


# ---- Hydra configs, evaluate.py in-process ---------------------------------------------------------------------------
def compose(config_name: str, overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides`` (Hydra's global state cleared first)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return _hydra_compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def run_evaluate(out: Path, *overrides: str):
    """evaluate.py in-process: compose conf/evaluate.yaml with ``overrides`` and evaluate into ``out`` (a RunRecord)."""
    from bertgen.evaluation import evaluate

    from evaluate import options

    return evaluate(options(compose("evaluate", overrides), list(overrides)), out)


# ---- fixtures --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared data folder not found at {SHARED} (set BERTGEN_SHARED)")
    return SHARED


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Tests never touch the network: hub ids must fail fast and clearly.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def wordpiece():
    """The real BERT WordPiece tokenizer (uncased) of all-MiniLM-L6-v2."""
    from bertgen.tokenization import load_tokenizer

    return load_tokenizer(MINILM)


@pytest.fixture(scope="session")
def spiece(tmp_path_factory):
    """transformers' SentencePiece test model in a BertGeneration-style folder (``spiece.model``)."""
    import shutil

    from bertgen.tokenization import load_tokenizer

    folder = tmp_path_factory.mktemp("spiece")
    shutil.copy(SHARED / "data" / "tokenizers" / "test_sentencepiece.model", folder / "spiece.model")
    return load_tokenizer(folder)

"""Shared test fixtures. ``../shared`` (beside the repository) holds the real data, models and test vectors."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BERTGEN_SHARED", REPO.parent / "shared"))
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
if str(REPO) not in sys.path:  # train.py / evaluate.py live at the repository root
    sys.path.insert(0, str(REPO))


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

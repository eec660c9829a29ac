"""bertgen.hub downloads only what bertgen reads: the selection is a function of a repository's file list, checked
on the recorded lists of the paper's checkpoints (tests/fixtures/hub_file_lists.json), and fetch_folder
fetches exactly that selection from a loopback hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bertgen.hub import CheckpointNotFoundError, fetch_folder, select_checkpoint_files

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "hub_file_lists.json").read_text())["repos"]


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def selection_report(repo: str, rec: dict) -> tuple[list[str], str]:
    """The selection, and one line: files chosen, bytes downloaded and saved (sizes as recorded; None = unknown)."""
    files = rec["files"]
    chosen = select_checkpoint_files(files)
    skipped = [f for f in files if f not in chosen]

    def total(names: list[str]) -> str:
        known = [files[f] for f in names if files[f] is not None]
        missing = len(names) - len(known)
        if not known:
            return "size not recorded" if names else "0 GB"
        return _gb(sum(known)) + (f" + {missing} file(s) of unrecorded size" if missing else "")

    whole = f"; whole repository about {_gb(rec['repo_total_approx'])}" if rec.get("repo_total_approx") else ""
    line = (
        f"{repo}: {len(chosen)} of {len(files)} files chosen ({', '.join(chosen)}); downloaded {total(chosen)}; "
        f"saved {total(skipped)} ({', '.join(skipped)}){whole}{'' if rec['sizes_exact'] else ' [approximate sizes]'}"
    )
    return chosen, line


@pytest.mark.parametrize("repo", sorted(RECORDED))
def test_recorded_repositories_get_only_the_files_bertgen_reads(repo):
    rec = RECORDED[repo]
    chosen, line = selection_report(repo, rec)
    print(line)
    assert chosen == rec["expected"]
    assert not any(f.endswith((".h5", ".msgpack", ".ot", ".onnx", ".tflite", ".tar.gz")) or "/" in f for f in chosen)
    has_st = any(f.endswith(".safetensors") for f in rec["files"])
    assert ("pytorch_model.bin" in chosen) == (not has_st)  # .bin only when there is no safetensors


def test_selection_summary_bytes_saved(capsys):
    lines = [selection_report(repo, RECORDED[repo])[1] for repo in sorted(RECORDED)]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    files = RECORDED["openai-community/gpt2"]["files"]
    chosen = select_checkpoint_files(files)
    saved = sum(v for f, v in files.items() if f not in chosen and v is not None)
    assert saved > 5.0e9  # gpt2: 5.6 GB in all, 0.55 GB used
    bert = RECORDED["google-bert/bert-base-uncased"]["files"]
    assert sum(bert[f] or 0 for f in select_checkpoint_files(bert)) < 0.45e9


def test_selection_rules():
    sharded = [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
        "tokenizer.json",
        "onnx/model.onnx",
        "onnx/tokenizer.json",
    ]
    assert select_checkpoint_files(sharded) == [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
    ]
    bins = [f for f in sharded if "safetensors" not in f]
    assert select_checkpoint_files(bins) == [
        "config.json",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
        "tokenizer.json",
    ]
    assert select_checkpoint_files(sharded, tokenizer=False) == select_checkpoint_files(sharded)[:-1]
    assert select_checkpoint_files(["config.json", "spiece.model", "model.safetensors"], weights=False) == [
        "config.json",
        "spiece.model",
    ]
    assert select_checkpoint_files(["tf_model.h5", "flax_model.msgpack", "README.md"]) == []  # nothing usable
    assert select_checkpoint_files(iter(["config.json", "config.json"])) == ["config.json"]  # any iterable, deduped


# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def loopback_hub(monkeypatch, tmp_path):
    """A hub on 127.0.0.1 that serves the recorded repositories (tiny stand-in bytes), with an empty HF cache."""
    import huggingface_hub.constants as hf_constants
    import huggingface_hub.file_download as hf_file_download
    from huggingface_hub.utils import reset_sessions
    from test_download import Loopback, loopback_only

    server = Loopback()
    server.thread.start()
    loopback_only(monkeypatch)
    endpoint = f"{server.base}/huggingface.co"
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        hf_file_download, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    reset_sessions()
    yield server
    reset_sessions()
    server.server.shutdown()
    server.server.server_close()


@pytest.mark.parametrize("repo", ["google-bert/bert-base-uncased", "google/roberta2roberta_L-24_discofuse"])
def test_fetch_folder_downloads_only_the_selection(repo, loopback_hub, monkeypatch):
    import huggingface_hub.constants as hf_constants
    from huggingface_hub.utils import reset_sessions

    for path in RECORDED[repo]["files"]:
        loopback_hub.add_hub_file(repo, path, f"stand-in for {path}\n".encode(), kind="models")
    folder = fetch_folder(repo)
    got = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert got == RECORDED[repo]["expected"]
    fetched = sorted(
        {r[1].split("/resolve/")[-1].split("/", 1)[1] for r in loopback_hub.requests("GET") if "/resolve/" in r[1]}
    )
    assert fetched == RECORDED[repo]["expected"]  # nothing else crossed the wire
    # offline afterwards: the cached snapshot serves, no request is made
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    reset_sessions()
    n = len(loopback_hub.log)
    assert fetch_folder(repo) == folder and len(loopback_hub.log) == n


def test_unknown_repo_is_one_clear_error(loopback_hub):
    with pytest.raises(CheckpointNotFoundError, match="could not download checkpoint 'nobody/nothing'.*local folder"):
        fetch_folder("nobody/nothing")

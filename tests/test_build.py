"""`task.compose_splits`: a task's splits built from row slices of files (bertgen.data.build.compose_splits)."""

from __future__ import annotations

import json

import pytest

from bertgen.data.build import compose_splits, parse_slice, task_data_dir
from bertgen.errors import ConfigError


def _rows(prefix: str, n: int) -> str:
    return "".join(f"{prefix} {i}\t{prefix} {i} <::::> b .\n" for i in range(n))


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "tune.tsv").write_text(_rows("tune", 5))
    (folder / "validation.tsv").write_text(_rows("val", 10))
    (folder / "test.tsv").write_text(_rows("test", 4).rstrip("\n"))  # no final newline
    return folder


def _spec(source, **splits):
    return {
        "source_dir": str(source),
        "splits": splits
        or {"train": ["tune.tsv", "validation.tsv[:6]"], "validation": ["validation.tsv[6:]"], "test": ["test.tsv"]},
    }


def test_parse_slice():
    assert parse_slice("validation.tsv[4000:]") == ("validation.tsv", 4000, None)
    assert parse_slice("a.tsv[:10]") == ("a.tsv", None, 10)
    assert parse_slice("a.tsv[-3:]") == ("a.tsv", -3, None)
    assert parse_slice(" a.tsv ") == ("a.tsv", None, None)
    for bad in ("a.tsv[1]", "a.tsv[x:]", "a.tsv[1:2:3]", "[1:2]"):
        with pytest.raises(ConfigError, match="bad file slice"):
            parse_slice(bad)


def test_compose_writes_the_slices_in_order(source, tmp_path):
    out = compose_splits(_spec(source), tmp_path / "run" / "data")
    train = (out / "train.tsv").read_text().splitlines()
    assert train[:5] == _rows("tune", 5).splitlines() and train[5:] == _rows("val", 6).splitlines()
    assert (out / "validation.tsv").read_text().splitlines() == _rows("val", 10).splitlines()[6:]
    assert (out / "test.tsv").read_text() == _rows("test", 4)  # a final newline is added, rows unchanged
    manifest = json.loads((out / "compose.json").read_text())
    used = manifest["splits"]["train"]["train.tsv"]
    assert used["rows"] == 11 and [u["slice"] for u in used["from"]] == [[None, None], [None, 6]]
    assert all(len(u["sha256"]) == 64 for u in used["from"])


def test_task_data_dir_composes_into_the_run_dir_and_data_dir_wins(source, tmp_path):
    task = {"name": "wikisplit", "compose_splits": _spec(source)}
    assert task_data_dir(task, None, tmp_path / "run") == tmp_path / "run" / "data"
    assert (tmp_path / "run" / "data" / "train.tsv").is_file()
    assert task_data_dir(task, source, tmp_path / "other") == source
    assert not (tmp_path / "other").exists()


def test_composed_splits_feed_the_datamodule_and_the_content_hash(source, tmp_path, wordpiece):
    from bertgen.data import make_datamodule

    tok = wordpiece
    task = {"name": "wikisplit", "datamodule": "wikisplit", "compose_splits": _spec(source)}

    def fingerprint(spec_source, run):
        data = task_data_dir({**task, "compose_splits": _spec(spec_source)}, None, tmp_path / run)
        dm = make_datamodule(task, tok, data_dir=data, cache_dir=tmp_path / "cache", batch_size=4)
        dm.prepare_data()
        dm.setup("fit")
        return len(dm.datasets["train"]), len(dm.datasets["validation"]), dm.datasets["train"].split.meta["hash"]

    n_train, n_val, h1 = fingerprint(source, "a")
    assert (n_train, n_val) == (11, 4)
    (source / "tune.tsv").write_text(_rows("tuned", 5))  # same slices, other content: another cache entry
    assert fingerprint(source, "b")[2] != h1


@pytest.mark.parametrize(
    ("splits", "match"),
    [
        ({"train": ["nope.tsv"]}, "no file"),
        ({"train": ["validation.tsv[:11]"]}, "outside validation.tsv's 10 rows"),
        ({"train": ["validation.tsv[5:5]"]}, "selects no rows"),
        ({"train": ["validation.tsv[:6]"], "validation": ["validation.tsv[5:]"]}, "row 5 of validation.tsv"),
        ({"train": ["tune.tsv", "test.txt"]}, "different suffixes"),
        ({"train": ["data.csv"]}, "one-example-per-line"),
        ({"train": 3}, "expected a list of files"),
    ],
)
def test_bad_specs_give_one_clear_error(source, tmp_path, splits, match):
    (source / "test.txt").write_text("x\n")
    (source / "data.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match=match):
        compose_splits(_spec(source, **splits), tmp_path / "out")


def test_missing_source_dir_names_the_hint(tmp_path):
    spec = {"source_dir": str(tmp_path / "absent"), "splits": {"train": ["a.tsv"]}, "hint": "set BERTGEN_SHARED"}
    with pytest.raises(ConfigError, match=r"is not a folder \(set BERTGEN_SHARED\)"):
        compose_splits(spec, tmp_path / "out")
    with pytest.raises(ConfigError, match="unknown keys"):
        compose_splits({**spec, "sorce": 1}, tmp_path / "out")


def test_overlap_is_found_by_content_whatever_the_path(source, tmp_path):
    """The same file reached through ``../`` (or a copy) is one file: its rows cannot be in two splits."""
    (source / "copy.tsv").write_bytes((source / "validation.tsv").read_bytes())
    for other in (f"../{source.name}/validation.tsv[4:]", "copy.tsv[4:]", f"{source}/validation.tsv[4:]"):
        spec = _spec(source, train=["validation.tsv[:6]"], validation=[other])
        with pytest.raises(ConfigError, match=r"row 4 of \S+ is in both 'train' and 'validation'"):
            compose_splits(spec, tmp_path / "out")


def test_a_row_twice_in_one_split_needs_allow_repeats(source, tmp_path):
    spec = _spec(source, train=["tune.tsv", "tune.tsv[3:]"], validation=["validation.tsv"])
    with pytest.raises(ConfigError, match=r"row 3 of tune.tsv is used twice in 'train'.*allow_repeats=true"):
        compose_splits(spec, tmp_path / "out")
    out = compose_splits({**spec, "allow_repeats": True}, tmp_path / "out")
    assert len((out / "train.tsv").read_text().splitlines()) == 7

"""`python -m bertgen.report`: metrics.json of train.py and evaluate.py runs -> the paper's Tables 2-5 (+ a PNG)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bertgen import report
from bertgen.paper_tables import paper_tables, split_model_name
from bertgen.run_record import RunRecord

from conftest import run_cli


def train_run(d: Path, task: str, model: str, metrics: dict[str, float], fraction: float = 1.0) -> Path:
    """A run dir as train.py leaves it: the run record of its last validation."""
    headline = "sari" if "sari" in metrics else next(iter(metrics))
    RunRecord(
        source="train",
        task=task,
        model=model,
        split="validation",
        metrics={**metrics, "loss": 1.5},
        headline=headline,
        best_score=metrics[headline],
        global_step=10,
        train_fraction=fraction,
    ).save(d)
    return d


def eval_run(d: Path, task: str, model: str, metrics: dict[str, float], files=("test.tsv",)) -> Path:
    """A run dir as evaluate.py leaves it."""
    RunRecord(
        source="evaluate",
        task=task,
        model=model,
        split="test",
        metrics=metrics,
        headline="sari",
        dataset={"files": list(files)},
    ).save(d)
    return d


def test_paper_tables_are_complete_and_as_printed():
    TABLES = paper_tables()
    TABLE2 = TABLES[2]
    for t in TABLES.values():
        for row in t.rows:
            assert set(row.values) == {c.name for c in t.columns}, (t.number, row.label)
    # spot checks against the paper's Tables 2-5
    assert TABLE2.lookup("bert2bert", "base") == {
        "100% Exact": 63.9,
        "100% SARI": 89.3,
        "10% SARI": 86.1,
        "1% SARI": 81.2,
    }
    assert TABLE2.lookup("robertashare", "large")["100% SARI"] == 90.3
    assert TABLES[3].lookup("bertshare", "base") == {"Exact": 16.3, "SARI": 63.5, "BLEU": 77.2}
    assert TABLES[4].lookup("bert2gpt", "base")["nt2014 De→En"] == 31.4
    assert TABLES[5].lookup("robertashare", "large")["XSum R-2"] == 18.79
    assert TABLE2.lookup("quickstart", "base") is None
    assert split_model_name("bertshare_large") == ("bertshare", "large")
    assert split_model_name("quickstart") == ("quickstart", None)
    assert split_model_name("google/roberta2roberta_L-24_discofuse") == ("robertashare", "large")


def test_table2_layout_from_two_runs_with_paper_values_beside(tmp_path):
    a = train_run(tmp_path / "multirun" / "0", "discofuse", "bert2bert", {"sari": 88.25, "exact": 60.5})
    b = train_run(tmp_path / "multirun" / "1", "discofuse", "bertshare", {"sari": 87.0, "exact": 59.0})
    md = report.report([tmp_path / "multirun"], tmp_path / "out", png=False)
    assert (tmp_path / "out" / "report.md").read_text() == md
    lines = md.splitlines()
    i = lines.index("## Table 2 – DiscoFuse (test)")
    assert lines[i + 2] == "| model | size | split | 100% Exact | paper | 100% SARI | paper |"
    assert lines[i + 3] == "|---|---|---|---|---|---|---|"
    # rows sorted by model, each run's scores with the paper's Table 2 value beside them
    assert lines[i + 4] == "| bert2bert | base | validation | 60.50 | 63.9 | 88.25 | 89.3 |"
    assert lines[i + 5] == "| bertShare | base | validation | 59.00 | 63.9 | 87.00 | 89.2 |"
    assert f"`{a}`" in md and f"`{b}`" in md
    assert "Table 3" not in md and "Other runs" not in md


def test_fraction_columns_seed_means_and_evaluate_rows(tmp_path):
    train_run(tmp_path / "r0", "discofuse", "bert2bert", {"sari": 88.0, "exact": 60.0})
    train_run(tmp_path / "r1", "discofuse", "bert2bert", {"sari": 86.0, "exact": 58.0})  # a second seed
    train_run(tmp_path / "r2", "discofuse", "bert2bert", {"sari": 85.5, "exact": 40.0}, fraction=0.1)
    train_run(tmp_path / "r3", "discofuse", "bert2bert", {"sari": 80.0, "exact": 30.0}, fraction=0.01)
    eval_run(tmp_path / "e0", "discofuse", "bert2bert", {"sari": 89.0, "exact": 62.0, "keep": 1.0})
    md = report.report([tmp_path], None, png=False)
    assert (
        "| model | size | split | 100% Exact | paper | 100% SARI | paper | 10% SARI | paper | 1% SARI | paper |" in md
    )
    assert "| bert2bert | base | test | 62.00 | 63.9 | 89.00 | 89.3 | – | 86.1 | – | 81.2 |" in md
    assert (
        "| bert2bert | base | validation | 59.00 ±1.41 (n=2) | 63.9 | 87.00 ±1.41 (n=2) | 89.3 | 85.50 | 86.1 | "
        "80.00 | 81.2 |"
    ) in md


def test_tables_3_4_5_and_other_runs(tmp_path):
    eval_run(tmp_path / "w", "wikisplit", "bertshare_large", {"sari": 63.0, "exact": 16.0, "bleu": 77.0})
    eval_run(tmp_path / "mt", "wmt14_de_en", "bert2rnd", {"bleu": 30.0})
    eval_run(tmp_path / "mt16", "wmt14_en_de", "bert2rnd", {"bleu": 33.0}, files=("newstest2016.en", "newstest2016.de"))
    eval_run(tmp_path / "x", "xsum", "robertashare", {"rouge1": 39.0, "rouge2": 17.0, "rougeL": 32.0})
    train_run(tmp_path / "q", "quickstart", "quickstart", {"sari": 30.0, "exact": 1.0})
    md = report.report([tmp_path], None, png=False)
    assert "| bertShare | large | test | 16.00 | 16.6 | 63.00 | 63.7 | 77.00 | 77.3 |" in md
    # a newstest2016 run (named by its evaluated files) adds its nt2016 column; nt2016 De→En has no run: not shown
    assert "| model | size | split | nt2014 En→De | paper | nt2014 De→En | paper | nt2016 En→De | paper |" in md
    assert "| bert2rnd | base | test | – | 30.1 | 30.00 | 32.7 | 33.00 | 34.4 |" in md
    assert (
        "| robertaShare | base | test | – | 38.21 | – | 19.7 | – | 35.44 | – | 40.1 | – | 18.95 | – | 37.39 | "
        "39.00 | 39.87 | 17.00 | 17.5 | 32.00 | 32.37 |" in md
    )
    assert "## Other runs" in md and "| quickstart (quickstart, 100% train) | – | validation | 1.00 | 30.00 |" in md


def test_png_chart(tmp_path):
    pytest.importorskip("matplotlib")
    train_run(tmp_path / "r0", "discofuse", "bert2bert", {"sari": 88.0, "exact": 60.0})
    report.report([tmp_path / "r0"], tmp_path / "out")
    png = (tmp_path / "out" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"val/sari": 1}', "key 'schema' is None"),
        (
            '{"schema": 1, "source": "train", "model": "m", "split": "validation", "metrics": {}, "headline": "sari"}',
            "missing key 'task'",
        ),
        (
            '{"schema": 1, "source": "train", "task": "discofuse", "model": "m", "split": "validation", '
            '"metrics": {"sari": "x"}, "headline": "sari"}',
            "key 'metrics.sari' is 'x'",
        ),
        (
            '{"schema": 1, "source": "train", "task": "discofuse", "model": "m", "split": "validation", '
            '"metrics": {"loss": 1.0}, "headline": "sari"}',
            "no scores in 'metrics'",
        ),
        (
            '{"schema": 1, "source": "train", "task": "discofuse", "model": "m", "split": "dev", "metrics": {}, '
            '"headline": "sari"}',
            "split must be one of",
        ),
    ],
)
def test_bad_metrics_json_names_file_and_key(tmp_path, content, message):
    (tmp_path / "metrics.json").write_text(content)
    with pytest.raises(report.ReportError, match=message) as e:
        report.report([tmp_path], None)
    assert str(tmp_path / "metrics.json") in str(e.value)


def test_cli_prints_markdown_and_fails_clearly(tmp_path):
    train_run(tmp_path / "r0", "discofuse", "bert2bert", {"sari": 88.0, "exact": 60.0})
    ok = run_cli(["-m", "bertgen.report"], [tmp_path / "r0", "--out", tmp_path / "o", "--no-png"])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == (tmp_path / "o" / "report.md").read_text()
    assert not (tmp_path / "o" / "report.png").exists()
    (tmp_path / "empty").mkdir()
    bad = run_cli(["-m", "bertgen.report"], [tmp_path / "empty"])
    assert bad.returncode == 1
    assert (
        bad.stderr.strip()
        == f"error: {tmp_path / 'empty'}: no metrics.json in this folder or below it (is the run finished?)"
    )


def test_without_matplotlib_the_markdown_is_still_written(tmp_path, monkeypatch, capsys):
    train_run(tmp_path / "r0", "discofuse", "bert2bert", {"sari": 88.0, "exact": 60.0})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.png").write_bytes(b"stale chart of an earlier report")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    report.report([tmp_path / "r0"], tmp_path / "out")
    assert (tmp_path / "out" / "report.md").is_file() and not (tmp_path / "out" / "report.png").exists()
    assert "matplotlib is not installed" in capsys.readouterr().err

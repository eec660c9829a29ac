"""`python -m bertgen.report`: metrics.json of train.py and evaluate.py runs -> the paper's Tables 2-7 and the §5
ablations (+ a PNG), every cell a run's value, the paper's, or marked."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from bertgen import report
from bertgen.paper_tables import paper_tables, split_model_name
from bertgen.run_record import RunRecord

from conftest import run_cli


def train_run(
    d: Path, task: str, model: str, metrics: dict[str, float], fraction: float = 1.0, variant: str | None = None
) -> Path:
    """A run dir as train.py leaves it: the run record of its last validation."""
    headline = "sari" if "sari" in metrics else next(iter(metrics))
    RunRecord(
        variant=variant,
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


def eval_run(
    d: Path, task: str, model: str, metrics: dict[str, float], files=("test.tsv",), variant: str | None = None
) -> Path:
    """A run dir as evaluate.py leaves it."""
    RunRecord(
        variant=variant,
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
    # the ablations: rows are (model, variant); a plain run (no variant, or `full`) is the full-init row
    TABLE6, SEC5, TABLE7 = TABLES[6], TABLES[8], TABLES[7]
    assert [c.name for c in TABLE6.columns] == ["SARI"] and TABLE6.name == "Table 6" and SEC5.name == "§5"
    assert TABLE6.lookup("bertshare", "base") == TABLE6.lookup("bertshare", "base", "full") == {"SARI": 89.3}
    assert TABLE6.lookup("gpt", "base", "no_ckpt_embeddings") == {"SARI": 77.0}
    assert TABLE6.lookup("gpt", "base", "task_spm_frozen") == {"SARI": 69.7}
    assert TABLE6.lookup("bert2bert", "base") is None and TABLE2.lookup("bertshare", "base", "task_spm") is None
    assert SEC5.lookup("gpt", "base", "adafactor") == {"SARI": 88.1} and SEC5.lookup("gpt", "base") == {"SARI": 88.0}
    assert SEC5.lookup("bertshare", "base", "layers_cmaes") == {"SARI": 89.1}
    assert SEC5.lookup("bertshare", "base", "embeddings_only") == {"SARI": 87.1}  # a row of several models
    assert SEC5.lookup("rnd2gpt", "base", "embeddings_only") == {"SARI": 87.0}
    assert TABLE7.lookup("rnd2gpt", "base") == {"Length": 21.49, "Repetitions (%)": 16.28, "Quality": -0.303}
    assert TABLE7.lookup("gold", None) == {"Length": 24.61, "Repetitions (%)": 4.66, "Quality": 0.347}
    assert sorted(TABLES) == [2, 3, 4, 5, 6, 7, 8]
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
    assert lines[i + 2] == (
        "| model | size | split | 100% Exact | paper | 100% SARI | paper | 10% SARI | paper | 1% SARI | paper |"
    )
    assert lines[i + 3] == "|---|---|---|---|---|---|---|---|---|---|---|"
    # in the paper's row order, each run's scores with the paper's Table 2 value beside them
    assert lines[i + 4] == "| Geva et al. (2019) | – | – | n/a | 51.1 | n/a | 84.5 | n/a | – | n/a | – |"
    assert lines[i + 5] == "| *base (12 layers)* |  |  |  |  |  |  |  |  |  |  |"
    not_run = "| roberta2gpt | base | – | not run | 65.6 | not run | 89.9 | not run | 87.1 | not run | 80.3 |"
    assert lines[i + 6] == not_run
    b2b = "| bert2bert | base | validation | 60.50 | 63.9 | 88.25 | 89.3 | not run | 86.1 | not run | 81.2 |"
    b2b = lines.index(b2b)
    bs = lines.index("| bertShare | base | validation | 59.00 | 63.9 | 87.00 | 89.2 | not run | 86 | not run | 80.8 |")
    assert i < b2b < bs
    assert f"`{a}`" in md and f"`{b}`" in md
    # every table is printed; the plain bertShare run is also Table 6's full-init row and §5's base checkpoint
    assert "## Table 3 – WikiSplit (test)" in md and "Other runs" not in md
    assert "| bertShare: full init | `full` | base | validation | 87.00 | 89.3 |" in md
    assert "| base checkpoint | – | base | validation | 87.00 | 89.3 |" in md


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
    assert "| bert2bert | base | test | 62.00 | 63.9 | 89.00 | 89.3 | not run | 86.1 | not run | 81.2 |" in md
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
    # a newstest2016 run (named by its evaluated files) fills its nt2016 column
    assert "| model | size | split | nt2014 En→De | paper | nt2014 De→En | paper | nt2016 En→De | paper |" in md
    assert "| bert2rnd | base | test | not run | 30.1 | 30.00 | 32.7 | 33.00 | 34.4 | not run | 39.6 |" in md
    assert (
        "| robertaShare | base | test | not run | 38.21 | not run | 19.7 | not run | 35.44 | not run | 40.1 | not run "
        "| 18.95 | not run | 37.39 | 39.00 | 39.87 | 17.00 | 17.5 | 32.00 | 32.37 |" in md
    )
    assert "## Other runs" in md and "| quickstart (quickstart, 100% train) | – | validation | 1.00 | 30.00 |" in md


# A paper column's cell: a number or "–" (the paper gives none); a run column's: a run's value or a marker.
_RUN_CELL = re.compile(r"-?\d+\.\d\d( ±\d+\.\d\d \(n=\d+\))?|not run|n/a")
_PAPER_CELL = re.compile(r"-?\d+(\.\d+)?|–")


def _tables(md: str) -> dict[str, list[list[str]]]:
    """Each markdown table under its heading: rows of cells (header and block rows left out)."""
    out: dict[str, list[list[str]]] = {}
    title = None
    for line in md.splitlines():
        if line.startswith("## "):
            title = line[3:]
            out[title] = []
        elif line.startswith("| ") and title and not line.startswith(("| model |", "| *")):
            out[title].append([c.strip() for c in line.strip("|").split(" | ")])
    return out


def _xsum_eval(d: Path, model: str, metrics: dict[str, float], targets: list[str]) -> Path:
    eval_run(d, "xsum", model, metrics, files=("test.jsonl",))
    rows = [{"source": "doc", "target": t, "prediction": "p"} for t in targets]
    (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_tables_2_to_7_and_sec5_every_cell_filled_or_marked(tmp_path):
    """Tiny runs of every kind: plain, seeds, ablation variants, XSum with its Gold from the references."""
    train_run(tmp_path / "d0", "discofuse", "bertshare", {"sari": 88.0, "exact": 60.0})
    train_run(tmp_path / "d1", "discofuse", "gpt", {"sari": 80.0, "exact": 50.0}, variant="no_ckpt_embeddings")
    eval_run(tmp_path / "d2", "discofuse", "gpt", {"sari": 87.5, "exact": 58.0}, variant="adafactor")
    eval_run(tmp_path / "d3", "discofuse", "bertshare_large", {"sari": 88.5, "exact": 61.0}, variant="layers_cmaes")
    train_run(tmp_path / "d4", "discofuse", "bertshare", {"sari": 86.0, "exact": 55.0}, variant="embeddings_only")
    train_run(tmp_path / "d5", "discofuse", "rnd2rnd", {"sari": 85.0, "exact": 50.0}, variant="unknown_ablation")
    train_run(tmp_path / "d6", "discofuse", "rnd2gpt", {"sari": 84.0, "exact": 40.0}, 0.1, "embeddings_only")
    eval_run(tmp_path / "w", "wikisplit", "bert2bert", {"sari": 63.0, "exact": 16.0, "bleu": 77.0})
    eval_run(tmp_path / "mt", "wmt14_en_de", "bert2rnd", {"bleu": 29.0})
    scores = {"rouge1": 38.0, "rouge2": 16.0, "rougeL": 31.0, "length": 20.5, "repetitions": 25.0}
    # the references: 6 and 4 words ("paris" repeats, but 2 references have fewer than 500 words: all are common)
    refs = ["A man in Paris , Paris", "Rain fell all day"]
    _xsum_eval(tmp_path / "x0", "bertshare", scores, refs)
    _xsum_eval(tmp_path / "x1", "rnd2gpt", {**scores, "length": 21.0, "repetitions": 12.5}, refs)  # same split
    md = report.report([tmp_path], None, png=False)
    tables = _tables(md)
    titles = [t.split(" – ")[0].split(" (")[0] for t in tables]
    assert titles == ["Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "§5", "Other runs"]
    for title, rows in tables.items():
        if title.startswith("Other runs"):
            continue
        ablation = title.startswith(("Table 6", "§5"))
        first = 4 if ablation else 3
        assert rows, title
        for row in rows:
            assert all(row), (title, row)  # no empty cell
            values = row[first:]
            assert len(values) % 2 == 0, (title, row)
            for run_cell, paper_cell in zip(values[::2], values[1::2]):
                assert _RUN_CELL.fullmatch(run_cell), (title, row, run_cell)
                assert _PAPER_CELL.fullmatch(paper_cell), (title, row, paper_cell)
    # the runs are where their variants put them
    assert "| bertShare: full init | `full` | base | validation | 88.00 | 89.3 |" in md
    assert "| gpt: − embeddings from checkpoint | `no_ckpt_embeddings` | base | validation | 80.00 | 77 |" in md
    assert "| gpt tuned | `adafactor` | base | test | 87.50 | 88.1 | not run | – |" in md
    assert "| CMA-ES layers 9, 10, 13-18, 23, 24 | `layers_cmaes` | large | test | 88.50 | 89.1 | not run | – |" in md
    assert "| BERT embeddings (bertshare) | `embeddings_only` | base | validation | 86.00 | 87.1 | not run | – |" in md
    # §5's 10% run: a column of its own (the paper gives no number)
    assert "| GPT-2 embeddings (rnd2gpt) | `embeddings_only` | base | validation | not run | 87 | 84.00 | – |" in md
    assert "| rnd2rnd (discofuse, 100% train, variant unknown_ablation) | base | validation | 50.00 | 85.00 |" in md
    # variant runs are in no plain table: Table 2's bertShare row holds the plain run only, gpt's none
    assert "| bertShare | base | validation | 60.00 | 63.9 | 88.00 | 89.2 | not run | 86 | not run | 80.8 |" in md
    assert "| gpt | base | – | not run | 60.4 | not run | 88 | not run | 82.9 | not run | 74.5 |" in md
    # Table 7: runs' length and repetitions; Quality the paper's only; Gold once for the one evaluated split
    assert "| bertShare | base | test | 20.50 | 20.71 | 25.00 | 27.03 | n/a | -0.097 |" in md
    assert "| rnd2gpt | base | test | 21.00 | 21.49 | 12.50 | 16.28 | n/a | -0.303 |" in md
    assert "| rnd2rnd | base | – | not run | 20.9 | not run | 29.76 | n/a | -0.103 |" in md
    assert "| Gold | – | test | 5.00 | 24.61 | 0.00 | 4.66 | n/a | 0.347 |" in md


def test_gold_repetitions_from_the_references(tmp_path):
    # w0..w499 occur 3 times: they are the references' 500 most common words; "paris" (twice, in one reference) and
    # "in" are content words, so 1 reference of 4 repeats one
    common = " ".join(f"w{i}" for i in range(500))
    refs = [common, common, common, "Paris in Paris"]
    _xsum_eval(tmp_path / "x", "bertshare", {"rouge2": 1.0, "length": 1.0, "repetitions": 1.0}, refs)
    md = report.report([tmp_path], None, png=False)
    assert "| Gold | – | test | 375.75 | 24.61 | 25.00 | 4.66 | n/a | 0.347 |" in md  # (3 * 500 + 3) / 4 words


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
    train_run(tmp_path / "r0" / "ablation", "discofuse", "gpt", {"sari": 80.0, "exact": 50.0}, variant="task_spm")
    _xsum_eval(tmp_path / "r0" / "xsum", "rnd2rnd", {"rouge2": 10.0, "length": 20.0, "repetitions": 30.0}, ["a b"])
    ok = run_cli(["-m", "bertgen.report"], [tmp_path / "r0", "--out", tmp_path / "o", "--no-png"])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == (tmp_path / "o" / "report.md").read_text()
    for title in ("Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "§5"):
        assert f"## {title} – " in ok.stdout
    assert "| gpt: + task specific SentencePieces (16k) | `task_spm` | base | validation | 80.00 | 84.2 |" in ok.stdout
    assert "| rnd2rnd | base | test | 20.00 | 20.9 | 30.00 | 29.76 | n/a | -0.103 |" in ok.stdout
    assert "| Gold | – | test | 2.00 | 24.61 | 0.00 | 4.66 | n/a | 0.347 |" in ok.stdout
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


def test_variant_is_recorded_and_evaluate_copies_it_from_the_trained_run(tmp_path):
    """The config `variant` flows train config -> evaluate.py's run record -> the report; records without it read
    as the plain setup."""
    from omegaconf import OmegaConf

    from bertgen.data.tasks.quickstart import synthetic_texts, write_synthetic_fusion
    from bertgen.tokenization import train_sentencepiece

    from conftest import compose, run_evaluate, tiny_seq2seq

    # a run dir as train.py leaves it around an untrained tiny model (as tests/test_evaluation.py builds one)
    root = tmp_path / "run"
    sizes = {"train": 40, "validation": 4, "test": 4}
    write_synthetic_fusion(root / "data", sizes, seed=0)
    tok = train_sentencepiece(synthetic_texts(root / "data"), vocab_size=120, output_dir=root / "tokenizer")
    tiny_seq2seq(tok).export(root / "model", tok)
    task = OmegaConf.create(OmegaConf.to_container(compose("train", ["task=quickstart"]).task, resolve=True))
    task.synthetic, task.generation.max_new_tokens = sizes, 4
    (root / ".hydra").mkdir()
    config = {"task": task, "model": {"name": "quickstart"}, "seed": 0, "variant": "layers_first10"}
    OmegaConf.save(OmegaConf.create(config), root / ".hydra" / "config.yaml")
    assert compose("train").variant is None  # the default: the model's plain setup

    record = run_evaluate(tmp_path / "eval", f"ckpt={root}", f"cache_dir={tmp_path / 'cache'}")
    assert record.variant == "layers_first10" and RunRecord.load(tmp_path / "eval").variant == "layers_first10"
    md = report.report([tmp_path / "eval"], None, png=False)
    assert "| quickstart (quickstart, 100% train, variant layers_first10) | 1L-32H | test |" in md
    # an older record (no variant key) is the plain setup; a plain record does not write the key
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    del saved["variant"]
    assert RunRecord.from_dict(saved).variant is None and "variant" not in RunRecord.from_dict(saved).to_dict()

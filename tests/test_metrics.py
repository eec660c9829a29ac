"""bertgen.metrics against the shared reference vectors (shared/testdata/metrics/*.json).

Each vector file names its source of truth (tensor2tensor sari_hook, LaserTagger score_lib, sacreBLEU 2.6.0,
rouge-score 0.1.2, TF Official compute_bleu). Values there are 0-1 (SARI, Exact, ROUGE) or 0-100 (BLEU);
ours are 0-100 throughout.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch

from bertgen.data import TASKS, task_metrics
from bertgen.errors import ConfigError
from bertgen.metrics import (
    ROUGE,
    SARI,
    ExactMatch,
    NLTKCorpusBLEU,
    SacreBLEU,
    TensorFlowBLEU,
    bleu_tokenize_v14,
    sari_sentence,
    split_sentences,
)

from conftest import SHARED

VECTORS = SHARED / "testdata" / "metrics"
TOL = 1e-9  # pure-Python float64 references ; the task asks for 1e-4


def _load(name: str) -> dict:
    path = VECTORS / name
    if not path.is_file():
        pytest.fail(f"test vectors missing: {path}")
    return json.loads(path.read_text())


SARI_V = _load("sari_vectors.json")
EXACT_V = _load("exact_match_vectors.json")
BLEU_V = _load("bleu_vectors.json")
ROUGE_V = _load("rouge_vectors.json")


def _values(d: dict) -> dict[str, float]:
    return {k: float(v) for k, v in d.items()}


# ----------------------------------------------------------------------------------------------- SARI

SARI_VARIANTS = {
    "t2t_del_precision": dict(protocol="t2t"),
    "t2t_del_f1": dict(protocol="t2t", beta_for_deletion=1),
    "lasertagger_score_main": dict(protocol="lasertagger"),
    "lasertagger_keep_separators": dict(protocol="lasertagger", strip_separators=False),
}


@pytest.mark.parametrize("variant", sorted(SARI_VARIANTS))
@pytest.mark.parametrize("case", SARI_V["cases"], ids=lambda c: c["id"])
def test_sari_sentence_vectors(case, variant):
    m = SARI(**SARI_VARIANTS[variant])
    m.update([case["prediction"]], [case["references"]], [case["source"]])
    got = _values(m.compute())
    exp = case["expected"][variant]
    for key in ("sari", "keep", "add", "del"):
        assert got[key] / 100 == pytest.approx(exp[key], abs=TOL), key


@pytest.mark.parametrize("case", SARI_V["id_cases"], ids=lambda c: c["id"])
def test_sari_token_ids_drop_padding(case):
    for variant, beta in (("t2t_del_precision", 0), ("t2t_del_f1", 1)):
        got = sari_sentence(
            case["source_ids"],
            case["prediction_ids"],
            case["reference_ids"],
            max_gram_size=case["max_gram_size"],
            beta_for_deletion=beta,
            pad_id=0,
        )
        exp = case["expected"][variant]
        assert got.sari == pytest.approx(exp["sari"], abs=TOL)
        assert (got.keep, got.add, got.delete) == pytest.approx((exp["keep"], exp["add"], exp["del"]), abs=TOL)


@pytest.mark.parametrize("case", SARI_V["corpus_cases"], ids=lambda c: c["id"])
def test_sari_and_exact_corpus_vectors(case):
    exp = case["expected"]
    lt = SARI("lasertagger")
    t2t = SARI("t2t")
    exact, exact_cs = ExactMatch(), ExactMatch(lowercase=False)
    # two updates: corpus scores must not depend on how the corpus is batched
    half = len(case["predictions"]) // 2
    for sl in (slice(0, half), slice(half, None)):
        p, r, s = case["predictions"][sl], case["references"][sl], case["sources"][sl]
        lt.update(p, r, s)
        t2t.update(p, r, s)
        exact.update(p, r)
        exact_cs.update(p, r)
    got = _values(lt.compute())
    for key in ("sari", "keep", "add", "del"):
        assert got[key] / 100 == pytest.approx(exp["lasertagger_score_main"][key], abs=TOL)
    assert float(t2t.compute()["sari"]) / 100 == pytest.approx(exp["t2t_del_precision_mean_sari"], abs=TOL)
    assert float(exact.compute()) / 100 == pytest.approx(exp["lasertagger_score_main"]["exact"], abs=TOL)
    assert float(exact_cs.compute()) / 100 == pytest.approx(exp["exact_case_sensitive"], abs=TOL)


def test_sari_published_t2t_values():
    # sari_hook_test.py: 0.2695360, 0.6170966, 0.5088682 (assertAlmostEqual, 7 places)
    cases = {c["id"]: c for c in SARI_V["cases"]}
    for pub in SARI_V["published_values"]:
        if "expected_sari" in pub and pub.get("case_id") in cases:
            c = cases[pub["case_id"]]
            got = sari_sentence(c["source"].split(), c["prediction"].split(), [r.split() for r in c["references"]])
            assert got.sari == pytest.approx(pub["expected_sari"], abs=5e-8)


def test_sari_lasertagger_separator_removal_lowers_score():
    # LaserTagger score_lib_test: ignoring separators scores lower on this example
    case = next(c for c in SARI_V["cases"] if c["id"] == "lasertagger_score_lib_test")
    scores = []
    for strip in (True, False):
        m = SARI("lasertagger", strip_separators=strip)
        m.update([case["prediction"]], [case["references"]], [case["source"]])
        scores.append(float(m.compute()["sari"]))
    assert scores[0] < scores[1]


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_sari_empty_corpus_is_zero_and_reset_works():
    m = SARI()
    assert _values(m.compute()) == {"sari": 0.0, "keep": 0.0, "add": 0.0, "del": 0.0}
    m.update(["a b"], [["a b"]], ["a b"])
    assert float(m.compute()["sari"]) == pytest.approx(100.0)
    m.reset()
    assert float(m.compute()["sari"]) == 0.0


def test_sari_rejects_bad_input():
    m = SARI()
    with pytest.raises(ValueError, match="sources"):
        m.update(["a"], [["a"]])
    with pytest.raises(ValueError, match="2 predictions but 1 sources"):
        m.update(["a", "b"], [["a"], ["b"]], ["a"])
    with pytest.raises(TypeError, match=r"targets\[1\]\[0\] must be a str"):
        m.update(["a", "b"], [["a"], [3]], ["a", "b"])
    with pytest.raises(TypeError, match="preds must be a list of str"):
        m.update("a b", [["a"]], ["a"])
    with pytest.raises(ValueError, match="unknown SARI protocol"):
        SARI("easse")


# ---------------------------------------------------------------------------------------------- Exact


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_exact_cases_and_corpus():
    for case in EXACT_V["cases"]:
        for key, lc in (("lasertagger_exact", True), ("case_sensitive_exact", False)):
            m = ExactMatch(lowercase=lc)
            m.update([case["prediction"]], [case["references"]])
            assert float(m.compute()) / 100 == case["expected"][key], (case["id"], key)
    by_id = {c["id"]: c for c in EXACT_V["cases"]}
    rows = [by_id[i] for i in EXACT_V["corpus"]["case_ids"]]
    m = ExactMatch()
    m.update([c["prediction"] for c in rows], [c["references"] for c in rows])
    assert float(m.compute()) / 100 == pytest.approx(EXACT_V["corpus"]["expected"]["lasertagger_exact"], abs=TOL)
    assert float(ExactMatch().compute()) == EXACT_V["empty_corpus"]["expected"]["lasertagger_exact"]


def test_exact_published_lasertagger_value():
    pub = EXACT_V["published_values"][0]
    m = ExactMatch()
    m.update(pub["predictions"], pub["references"])
    assert float(m.compute()) / 100 == pytest.approx(pub["expected"])


# ----------------------------------------------------------------------------------------------- BLEU


@pytest.mark.parametrize("case", BLEU_V["cases"], ids=lambda c: c["id"])
def test_sacrebleu_vectors_all_configs(case):
    for config, kwargs in BLEU_V["configs"].items():
        m = SacreBLEU(**kwargs)
        m.update(case["hypotheses"], case["references"])
        exp = case["expected"][config]
        details = m.score_details()
        assert float(m.compute()) == pytest.approx(exp["score"], abs=TOL), config
        assert details.counts == exp["counts"] and details.totals == exp["totals"], config
        assert (details.sys_len, details.ref_len) == (exp["sys_len"], exp["ref_len"]), config
        assert details.bp == pytest.approx(exp["bp"], abs=TOL)
        assert m.signature == exp["signature"]


@pytest.mark.parametrize("case", BLEU_V["cases"], ids=lambda c: c["id"])
def test_tensorflow_uncased_bleu_vectors(case):
    exp = case["expected"].get("t2t_bleu_uncased")
    if exp is None:
        pytest.skip("multi-reference corpus: compute_bleu is single-reference (checked in the next test)")
    m = TensorFlowBLEU()
    m.update(case["hypotheses"], case["references"])
    if isinstance(exp, str):
        # the original raises ZeroDivisionError when every hypothesis is empty; we score it 0
        assert "ZeroDivisionError" in exp
        assert float(m.compute()) == 0.0
    else:
        assert float(m.compute()) == pytest.approx(exp, abs=1e-9)


def test_tensorflow_bleu_is_single_reference_and_keeps_backslash():
    with pytest.raises(ValueError, match=r"targets\[0\] has 2 references"):
        TensorFlowBLEU().update(["a b"], [["a b", "a c"]])
    # the original's character class never treats "\" as punctuation; everything else follows mteval-v14
    assert bleu_tokenize_v14("a\\b, c-d 3.14 $5 end.") == ["a\\b", ",", "c", "-", "d", "3.14", "$", "5", "end", "."]
    assert bleu_tokenize_v14("in 2019.") == ["in", "2019."]


def test_v14_tokenizer_agrees_with_sacrebleu_intl_on_real_text():
    # sacreBLEU's intl tokenizer implements the same mteval-v14 rules with the `regex` module; the two
    # differ only on "\\" (see above) and non-decimal digits such as "²" (\\P{N} vs [^\\d])
    from sacrebleu.tokenizers.tokenizer_intl import TokenizerV14International

    tok = TokenizerV14International()
    lines = (SHARED / "data" / "wmt14_en_de" / "tgt-test.txt").read_text(encoding="utf-8").splitlines()[:1000]
    for doc in (SHARED / "data" / "xsum" / "xsum_test_321.jsonl").read_text(encoding="utf-8").splitlines()[:50]:
        lines += json.loads(doc)["document"].split("\n")
    lines.append("Pizza 🍕 costs £5, 3.5% more — «really»?")
    for line in lines:
        assert " ".join(bleu_tokenize_v14(line)) == tok(line), line


def _nltk_corpus_bleu(hyps, refs):
    from nltk.translate.bleu_score import corpus_bleu

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return 100 * corpus_bleu([[r.split() for r in rs] for rs in refs], [h.split() for h in hyps])


@pytest.mark.parametrize("case", BLEU_V["cases"], ids=lambda c: c["id"])
def test_nltk_bleu_matches_installed_nltk(case):
    # installed NLTK (>= 3.4) sends a corpus with an unmatched order to ~1e-76: our "zero" mode
    m = NLTKCorpusBLEU(zero_order="zero")
    m.update(case["hypotheses"], case["references"])
    assert float(m.compute()) == pytest.approx(_nltk_corpus_bleu(case["hypotheses"], case["references"]), abs=1e-9)


def test_nltk_bleu_322_truncation():
    # NLTK 3.2.2 (Botha et al.'s version) drops orders from the first unmatched one: hand-computed here
    case = next(c for c in BLEU_V["cases"] if c["id"] == "zero_4gram_matches")
    m = NLTKCorpusBLEU()
    m.update(case["hypotheses"], case["references"])
    stats = m.stats.tolist()
    hyp_len, ref_len, matches, totals = stats[0], stats[1], stats[2:6], stats[6:]
    assert matches[3] == 0 and all(matches[:3])
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    expected = 100 * bp * math.exp(sum(0.25 * math.log(mm / t) for mm, t in zip(matches[:3], totals[:3])))
    assert float(m.compute()) == pytest.approx(expected, abs=1e-9)


def test_nltk_bleu_on_real_wikisplit_rows():
    rows = (SHARED / "data" / "wikisplit" / "validation.tsv").read_text(encoding="utf-8").splitlines()[:300]
    sources, targets = zip(*(r.split("\t") for r in rows))
    # a crude "system": the source with the first comma turned into a sentence break
    hyps = [s.replace(" , ", " . <::::> ", 1) for s in sources]
    refs = [[t] for t in targets]
    m = NLTKCorpusBLEU()
    m.update(hyps[:100], refs[:100])
    m.update(hyps[100:], refs[100:])
    assert float(m.compute()) == pytest.approx(_nltk_corpus_bleu(hyps, refs), abs=1e-9)
    s = SacreBLEU(tokenize="none")
    s.update(hyps, refs)
    import sacrebleu

    assert float(s.compute()) == pytest.approx(
        sacrebleu.BLEU(tokenize="none").corpus_score(list(hyps), [list(targets)]).score, abs=1e-9
    )


def test_sacrebleu_signature_counts_references():
    m = SacreBLEU(lowercase=True)
    m.update(["a b c d"], [["a b c d", "a b c e"]])
    assert m.signature.startswith("nrefs:2|case:lc|")
    m.update(["a b c d"], [["a b c d"]])
    assert m.signature.startswith("nrefs:var|")
    with pytest.raises(ValueError, match=r"targets\[0\] has no reference"):
        m.update(["a"], [[]])
    with pytest.raises(ValueError, match="downloads"):
        SacreBLEU(tokenize="flores200")


# ---------------------------------------------------------------------------------------------- ROUGE


@pytest.mark.parametrize("case", ROUGE_V["cases"], ids=lambda c: c["id"])
def test_rouge_vectors(case):
    m = ROUGE()
    m.update([case["prediction"]], [case["references"]])
    got = _values(m.compute())
    for key, exp in case["expected"]["rouge_score_stemmed"].items():
        assert got[key] / 100 == pytest.approx(exp["fmeasure"], abs=TOL), key
    unstemmed = ROUGE(use_stemmer=False)
    unstemmed.update([case["prediction"]], [case["references"]])
    got = _values(unstemmed.compute())
    for key, exp in case["expected"]["rouge_score_unstemmed_fmeasure"].items():
        assert got[key] / 100 == pytest.approx(exp, abs=TOL), key


def test_rouge_corpus_mean_in_batches():
    by_id = {c["id"]: c for c in ROUGE_V["cases"]}
    rows = [by_id[i] for i in ROUGE_V["corpus_mean_fmeasure_stemmed"]["case_ids"]]
    m = ROUGE()
    for i in range(0, len(rows), 7):
        m.update([c["prediction"] for c in rows[i : i + 7]], [c["references"] for c in rows[i : i + 7]])
    got = _values(m.compute())
    for key, exp in ROUGE_V["corpus_mean_fmeasure_stemmed"]["mean"].items():
        assert got[key] / 100 == pytest.approx(exp, abs=TOL), key


def test_rouge_published_rougelsum_values():
    m = ROUGE(("rougeLsum",), use_stemmer=False)
    m.update(["w1 w2 w6 w7 w8\nw1 w3 w8 w9 w5"], [["w1 w2 w3 w4 w5"]])
    assert float(m.compute()["rougeLsum"]) / 100 == pytest.approx(0.5333, abs=1e-4)


def test_rouge_needs_no_nltk_data(monkeypatch):
    import nltk

    def no_data(*args, **kwargs):
        raise AssertionError(f"NLTK data lookup {args!r}: would need a download")

    monkeypatch.setattr(nltk.data, "find", no_data)
    monkeypatch.setattr(nltk.data, "load", no_data)
    m = ROUGE(split_sentences=True)
    m.update(["Second sentence. First Sentence."], [["First sentence.\nSecond Sentence."]])
    assert float(m.compute()["rougeLsum"]) == pytest.approx(100.0)


def test_split_sentences():
    assert split_sentences('He said "Go." Then he left! Why? ok') == 'He said "Go."\nThen he left!\nWhy?\nok'
    assert split_sentences("already\nsplit. text") == "already\nsplit. text"
    with pytest.raises(ValueError, match="unknown ROUGE key"):
        ROUGE(("rougeW",))


# ------------------------------------------------------------------------------------------- registry


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_metrics_uniform_update(task):
    metrics, headline = task_metrics(task)
    preds = ["The cat sat on the mat .", "He was born in Paris . <::::> He died in Rome ."]
    targets = [["The cat sat on the mat ."], ["He was born in Paris . <::::> He died in Rome ."]]
    sources = ["The cat , which was black , sat on the mat .", "He was born in Paris and died in Rome ."]
    metrics.update(preds, targets, sources)
    scores = metrics.compute()
    assert headline in scores
    expected = {
        "discofuse": {"sari", "keep", "add", "del", "exact"},
        "quickstart": {"sari", "keep", "add", "del", "exact"},
        "wikisplit": {"sari", "keep", "add", "del", "exact", "bleu", "sacrebleu"},
        "gigaword": {"rouge1", "rouge2", "rougeL", "length", "repetitions"},
        "xsum": {"rouge1", "rouge2", "rougeL", "length", "repetitions"},
        "cnn_dailymail": {"rouge1", "rouge2", "rougeL", "rougeLsum", "length", "repetitions"},
        "wmt14_en_de": {"bleu", "sacrebleu"},
        "wmt14_de_en": {"bleu", "sacrebleu"},
        "files": {"rouge1", "rouge2", "rougeL", "sacrebleu"},
    }[task]
    assert set(scores) == expected
    # predictions equal the references: every similarity metric is at its maximum
    for key in expected - {"keep", "add", "del", "length", "repetitions"}:
        assert float(scores[key]) == pytest.approx(100.0), key
    if "length" in expected:  # Table 7's columns: (7 + 12) / 2 whitespace tokens; every word is common here
        assert float(scores["length"]) == pytest.approx(9.5) and float(scores["repetitions"]) == 0.0
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in scores.values())
    assert metrics.signatures()


def test_task_metrics_unknown_task():
    with pytest.raises(ConfigError, match="registered: cnn_dailymail"):
        task_metrics("squad")


def test_task_metrics_pickle_forward_and_reset():
    # Lightning pickles modules for spawn-based strategies and may deepcopy them
    import copy
    import pickle

    metrics, headline = task_metrics("wikisplit")
    metrics.update(["a b c d ."], [["a b c d ."]], ["a b c e ."])
    clone = pickle.loads(pickle.dumps(metrics))
    assert {k: float(v) for k, v in clone.compute().items()} == {k: float(v) for k, v in metrics.compute().items()}
    deep = copy.deepcopy(metrics)
    batch = deep(["a b c d ."], [["a b c x ."]], ["a b c e ."])  # forward: this batch's scores
    assert float(batch["exact"]) == 0.0 and float(deep.compute()["exact"]) == 50.0
    deep.reset()
    deep.update(["x y z w ."], [["x y z w ."]], ["x y z w ."])
    assert float(deep.compute()[headline]) == pytest.approx(100.0)

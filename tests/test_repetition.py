"""Table 7's automatic columns (Rothe et al. 2020, §6): `OutputLength` and `Repetition`, against hand-counted values.
Their 2-process agreement is in tests/test_metrics_ddp.py."""

from __future__ import annotations

import pytest

from bertgen.metrics import OutputLength, Repetition
from bertgen.metrics.repetition import words

PREDS = [
    "The cat saw the cat .",  # repeats {the, cat}
    "A dog ran , a dog !",  # repeats {a, dog}
    "Rain fell in Paris and Paris slept",  # repeats {paris}
    "no repeats here",
]
# reference word counts: the 4, cat 3, dog 2, paris 1 (distinct, so the common-word list has no ties)
REFS = [["the the the the cat"], ["cat cat dog"], ["dog paris"], ["."]]


@pytest.mark.parametrize(
    "common, expected",
    [
        (0, 75.0),  # every word counts: outputs 1, 2, 3 repeat one
        (1, 75.0),  # common {the}: output 1 still repeats "cat"
        (2, 50.0),  # common {the, cat}: output 1 repeats only common words
        (3, 50.0),  # common {the, cat, dog}: output 2 still repeats "a" (absent from the references)
        (4, 25.0),  # + paris: only output 2 is left
        (500, 25.0),  # fewer distinct reference words than the list's size
    ],
)
def test_repetition_hand_counted(common, expected):
    m = Repetition(common)
    m.update(PREDS, REFS)
    assert float(m.compute()) == expected


def test_repetition_batches_and_multi_references_equal_one_update():
    one = Repetition(2)
    one.update(PREDS, REFS)
    batched = Repetition(2)
    batched.update(PREDS[:1], REFS[:1])
    batched.update(PREDS[1:], REFS[1:])
    assert float(batched.compute()) == float(one.compute()) == 50.0
    # two references of one row both count towards the common words: "dog" joins {the, cat}
    multi = Repetition(3)
    multi.update(PREDS[1:2], [["dog dog dog dog dog", "the the the the"]])
    assert float(multi.compute()) == 100.0  # "a" still repeats
    multi = Repetition(3)
    multi.update(["the dog , the dog"], [["dog dog dog dog dog", "the the the the"]])
    assert float(multi.compute()) == 0.0


def test_words_are_lowercased_and_punctuation_never_counts():
    assert words("The cat's 29-year-old, CAT!") == ["the", "cat", "s", "29", "year", "old", "cat"]
    m = Repetition(0)
    m.update([". . , , ! !", "Cat cat"], ["x", "y"])
    assert float(m.compute()) == 50.0


def test_output_length_hand_counted():
    m = OutputLength()
    m.update(PREDS[:2])
    m.update(PREDS[2:])
    assert float(m.compute()) == (6 + 7 + 7 + 3) / 4  # whitespace tokens, punctuation tokens included


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_empty_corpus_reset_and_bad_input():
    for m in (Repetition(), OutputLength()):
        assert float(m.compute()) == 0.0
    m = Repetition(0)
    m.update(["a a"], ["b"])
    assert float(m.compute()) == 100.0
    m.reset()
    m.update(["a b"], ["b"])
    assert float(m.compute()) == 0.0
    with pytest.raises(ValueError, match="common_words"):
        Repetition(-1)
    with pytest.raises(TypeError, match=r"preds\[1\]"):
        Repetition().update(["a", 3], ["a", "b"])
    with pytest.raises(ValueError, match="2 predictions but 1 target rows"):
        Repetition().update(["a", "b"], ["a"])

"""LongBench-v2, RULER, LooGLE and AIME scorers against hand-worked official values."""

from __future__ import annotations

import json

import pytest

from sah_bench.scorers import (
    LOOGLE_SCORERS,
    boxed_match_score,
    choice_score,
    extract_boxed,
    extract_choice,
    extract_final_answer,
    loogle_cloze_counts,
    loogle_cloze_exact_score,
    loogle_cloze_micro_average,
    loogle_cloze_partial_score,
    loogle_rouge_l_recall_score,
    ruler_scorer,
    string_match_all,
    string_match_part,
)


@pytest.mark.parametrize(
    ("prediction", "letter"),
    [
        ("The correct answer is (B)", "B"),
        ("**The correct answer is (B)**", "B"),  # "*" dropped first
        ("The correct answer is B.", "B"),
        ("Reasoning...\nThe correct answer is (D)", "D"),
        ("The correct answer is Bob", "B"),  # no word boundary after the letter
        ("The correct answer is C, no: The correct answer is (B)", "B"),  # "(X)" form wins
        ("the correct answer is (B)", None),  # case-sensitive
        ("The correct answer is: B", None),
        ("The correct answer is (E)", None),  # A-D only
        ("The correct answer is (b)", None),
        ("The correct answer is  (B)", None),  # two spaces
        ("(B)", None),
        ("B", None),
        ("Answer: B", None),
        ("", None),
    ],
)
def test_longbench_v2_extract_answer(prediction: str, letter: str | None) -> None:
    assert extract_choice(prediction) == letter
    for reference in "ABCD":
        assert choice_score(prediction, [reference]) == float(reference == letter)


@pytest.mark.parametrize(
    ("prediction", "answers", "all_expected", "part_expected"),
    [
        ("The numbers are 123 and 456", ["123", "456", "789"], 2 / 3, 1.0),
        ("THE MAGIC WORD IS APPLE", ["apple"], 1.0, 1.0),  # case-insensitive
        ("12345", ["1234"], 1.0, 1.0),  # substring match
        ("nothing", ["a1", "b2"], 0.0, 0.0),
        ("", ["x"], 0.0, 0.0),
    ],
)
def test_ruler_string_match(
    prediction: str, answers: list[str], all_expected: float, part_expected: float
) -> None:
    assert string_match_all(prediction, answers) == pytest.approx(all_expected)
    assert string_match_part(prediction, answers) == part_expected


def test_ruler_scorer_per_task() -> None:
    assert ruler_scorer("qa_1") is string_match_part
    assert ruler_scorer("niah_multikey_2") is string_match_all
    assert ruler_scorer("cwe") is string_match_all


REF = [json.dumps({"<mask-0>": "Tom Hanks", "<mask-1>": "Paris"})]


@pytest.mark.parametrize(
    ("prediction", "exact", "partial"),
    [
        ('{"<mask-0>": "Tom Hanks", "<mask-1>": "Paris"}', 1.0, 1.0),
        ('{"<mask-0>": "Tom Hanks", "<mask-1>": "London"}', 0.5, 0.5),
        ('{"<mask-0>": "Hanks", "<mask-1>": "paris"}', 0.0, 0.5),  # shared word; case matters
        ("{'<mask-1>': 'Paris'}", 0.5, 0.5),  # a Python dict literal is read too
        ('The masked entities are {"<mask-0>": "Tom Hanks"}', 0.0, 0.0),  # not a dict literal
        ('{"<mask-0>": 5}', 0.0, 0.0),  # non-string value
        ('["Tom Hanks", "Paris"]', 0.0, 0.0),
        ("", 0.0, 0.0),
    ],
)
def test_loogle_cloze(prediction: str, exact: float, partial: float) -> None:
    assert loogle_cloze_exact_score(prediction, REF) == exact
    assert loogle_cloze_partial_score(prediction, REF) == partial


def test_loogle_cloze_micro_average_and_errors() -> None:
    one_mask = [json.dumps({"<mask-0>": "Rome"})]
    rows = [('{"<mask-0>": "Tom Hanks", "<mask-1>": "London"}', REF), ("Rome", one_mask)]
    assert loogle_cloze_counts(*rows[0]) == (1, 2)
    # micro: 1 matched of 3 masks (the per-row mean would be 1/4).
    assert loogle_cloze_micro_average(rows) == 0.3333
    assert loogle_cloze_micro_average([('{"<mask-0>": "Rome"}', one_mask)], partial=True) == 1.0
    with pytest.raises(ValueError, match="not a dict"):
        loogle_cloze_exact_score("{}", ["Tom Hanks"])
    with pytest.raises(ValueError, match="one reference"):
        loogle_cloze_exact_score("{}", [])


def test_loogle_rouge_l_recall() -> None:
    # rouge package: hyp {the, cat, sat}; ref words {the, cat, sat, on, mat} (5 distinct); the
    # LCS "the cat sat" -> R = 3/5.
    assert loogle_rouge_l_recall_score("the cat sat", ["the cat sat on the mat"]) == pytest.approx(
        0.6
    )
    assert loogle_rouge_l_recall_score("", ["None of it"]) == pytest.approx(1 / 3)  # "" -> "None"
    assert loogle_rouge_l_recall_score("...", ["x"]) == 0.0
    assert LOOGLE_SCORERS["shortdep_cloze"] is loogle_cloze_exact_score


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("so \\boxed{042}", 1.0),  # leading zeros
        ("first \\boxed{12}, finally \\boxed{42}", 1.0),  # the last box
        ("\\boxed{42} then \\boxed{12}", 0.0),
        ("\\boxed{\\text{42}}", 1.0),
        ("$\\boxed{42}$.", 1.0),
        ("\\boxed{ 42. }", 1.0),
        ("\\boxed{\\frac{1}{2}} but 42", 0.0),  # a non-integer box does not fall back
        ("\\boxed{x = 42}", 0.0),
        ("The answer is 42.", 1.0),  # no box: the last number
        ("42 apples, then 17", 0.0),
        ("the answer is 42.0", 1.0),
        ("\\boxed{42", 1.0),  # an unclosed box is no box: last number
        ("", 0.0),
        ("no digits", 0.0),
    ],
)
def test_aime(prediction: str, expected: float) -> None:
    assert boxed_match_score(prediction, ["42"]) == expected


def test_aime_helpers_and_reference() -> None:
    assert extract_boxed("\\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"
    assert extract_final_answer("\\boxed{007}") == "7"
    assert extract_final_answer("\\fbox{5}") == "5"
    assert boxed_match_score("\\boxed{7}", ["007"]) == 1.0
    with pytest.raises(ValueError, match="not an integer"):
        boxed_match_score("\\boxed{7}", ["seven"])

"""LongBench scorers against values worked out by hand from THUDM ``metrics.py`` / ``eval.py``.

The ``rouge`` package (not ``rouge-score``): sentences split at ".", words split on " ",
case-sensitive, and the counts are of *distinct* words: with P = |LCS words| / |hyp words| and
R = |LCS words| / |ref words| (sets), F = 2PR / (P + R + 1e-8).
"""

from __future__ import annotations

import math

import pytest

from sah_bench.scorers import (
    LONGBENCH_SCORERS,
    classification_score,
    code_sim_score,
    count_score,
    first_code_line,
    longbench_e_bucket,
    longbench_e_bucket_scores,
    longbench_e_buckets,
    longbench_percent,
    longbench_postprocess,
    qa_f1_score,
    qa_f1_zh_score,
    retrieval_score,
    retrieval_zh_score,
    rouge_score,
    rouge_zh_score,
)


def _f(p: float, r: float) -> float:
    return 2 * p * r / (p + r + 1e-8)


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        # normalised: [cat, sat, on, mat] vs [cat, on, mat]: P = 3/4, R = 1 -> 6/7.
        ("The cat sat on the mat!", ["a cat on a mat"], 6 / 7),
        ("The cat sat on the mat!", ["dog", "cat sat on mat"], 1.0),  # max over references
        ("The Eiffel Tower.", ["eiffel tower"], 1.0),  # case, articles, punctuation
        ("x x", ["x"], 2 / 3),  # multiset: P = 1/2, R = 1
        ("", ["cat"], 0.0),
        ("the", ["a"], 0.0),  # both normalise to nothing
        ("Paris\nFrance", ["Paris"], 2 / 3),  # newlines are whitespace: P = 1/2, R = 1
        ("U.S.A", ["USA"], 1.0),  # dots are dropped, not split on
        ("don't", ["dont"], 1.0),
        ("café", ["cafe"], 0.0),  # no accent folding in LongBench
    ],
)
def test_qa_f1(prediction: str, answers: list[str], expected: float) -> None:
    assert qa_f1_score(prediction, answers) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        # jieba words [北京, 是, 首都] (the "。" normalises away) vs [北京]: P = 1/3, R = 1.
        ("北京是首都。", ["北京"], 0.5),
        ("北京", ["上海", "北京"], 1.0),
        ("", ["北京"], 0.0),
        ("ＡＢ", ["ab"], 0.0),  # full-width letters are not folded by lower()
    ],
)
def test_qa_f1_zh(prediction: str, answers: list[str], expected: float) -> None:
    assert qa_f1_zh_score(prediction, answers) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        # hyp words {the, cat, was, found, under, bed} (6), ref {the, cat, was, under, bed} (5);
        # the LCS "the cat was under the bed" has 5 distinct words: P = 5/6, R = 1.
        ("the cat was found under the bed", ["the cat was under the bed"], _f(5 / 6, 1)),
        ("The Cat", ["the cat"], 0.0),  # case-sensitive
        ("cat, dog", ["cat dog"], _f(1 / 2, 1 / 2)),  # "cat," is its own word
        # "." splits sentences and the union LCS is taken per reference sentence: the order of
        # the two hypothesis sentences does not matter, a single sentence gets LCS 2 only.
        ("a b. c d", ["c d a b"], _f(1, 1)),
        ("a b c d", ["c d a b"], _f(1 / 2, 1 / 2)),
        # A trailing space after the last "." is an empty sentence whose word "" counts in P.
        ("a b. ", ["a b"], _f(2 / 3, 1)),
        ("a b.", ["a b"], _f(1, 1)),
        ("", ["a b"], 0.0),  # the package raises on an empty hypothesis; LongBench gives 0
        ("...", ["a b"], 0.0),  # only dots: no sentence either
        ("a b", ["..."], 0.0),  # empty reference raises too
        ("nothing in common", ["the cat", "nothing at all"], _f(1 / 3, 1 / 3)),  # max over refs
    ],
)
def test_rouge_package_semantics(prediction: str, answers: list[str], expected: float) -> None:
    assert rouge_score(prediction, answers) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_rouge_zh_joins_jieba_words() -> None:
    import jieba

    assert list(jieba.cut("我爱北京")) == ["我", "爱", "北京"]
    assert list(jieba.cut("我爱上海")) == ["我", "爱", "上海"]
    # words {我, 爱, 北京} vs {我, 爱, 上海}: LCS 2 -> P = R = 2/3.
    assert rouge_zh_score("我爱北京", ["我爱上海"]) == pytest.approx(_f(2 / 3, 2 / 3))
    assert rouge_zh_score("", ["我爱上海"]) == 0.0


def test_classification_matches_official_list_rule() -> None:
    classes = ["Location", "Number", "Person", "Description"]
    assert classification_score("Number", ["Number"], all_classes=classes) == 1.0
    assert classification_score("Number or Person", ["Number"], all_classes=classes) == 0.5
    assert classification_score("Person", ["Number"], all_classes=classes) == 0.0
    assert classification_score("number", ["Number"], all_classes=classes) == 0.0  # case
    assert classification_score("NumberLocation", ["Number"], all_classes=classes) == 0.5
    # A class that is a proper substring of the reference is not held against it ...
    nested = ["Entity", "Entity type", "Other"]
    assert classification_score("Entity type", ["Entity type"], all_classes=nested) == 1.0
    # ... but the official loop removes from the list it iterates over: after "abb" is removed
    # the next name ("ab", also a substring of the reference) is skipped and stays: 1/2.
    quirky = ["abbreviation", "abb", "ab", "Other"]
    assert classification_score("abbreviation", ["abbreviation"], all_classes=quirky) == 0.5
    # With "ab" first the loop removes "ab", skips "abb" -> [abbreviation, abb] again: 1/2.
    reordered = ["ab", "abb", "abbreviation"]
    assert classification_score("abbreviation", ["abbreviation"], all_classes=reordered) == 0.5
    # Only "abb" and then the reference: "abb" removed, the reference skipped but kept: 1.
    pair = ["abb", "abbreviation"]
    assert classification_score("abbreviation", ["abbreviation"], all_classes=pair) == 1.0
    with pytest.raises(ValueError, match="all_classes"):
        classification_score("Number", ["Number"])


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("Paragraph 12", ["Paragraph 12"], 1.0),
        ("Paragraph 12 or Paragraph 3", ["Paragraph 12"], 0.5),
        ("12.5", ["Paragraph 12"], 0.5),  # two numbers: 12 and 5
        ("Paragraph 012", ["Paragraph 12"], 0.0),  # compared as strings
        ("no idea", ["Paragraph 12"], 0.0),
    ],
)
def test_retrieval(prediction: str, answers: list[str], expected: float) -> None:
    assert retrieval_score(prediction, answers) == pytest.approx(expected)


def test_retrieval_zh_and_bad_reference() -> None:
    assert retrieval_zh_score("答案是段落5", ["段落5"]) == 1.0
    assert retrieval_zh_score("段落5和段落15", ["段落5"]) == 0.5
    with pytest.raises(ValueError, match="Paragraph"):
        retrieval_score("1", ["twelve"])


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("There are 3 unique paragraphs, 3 in total", ["3"], 1.0),
        ("3 of 12", ["3"], 0.5),
        ("three", ["3"], 0.0),
        ("3", [" 3"], 0.0),  # the reference is compared as str(), not stripped
    ],
)
def test_count(prediction: str, answers: list[str], expected: float) -> None:
    assert count_score(prediction, answers) == pytest.approx(expected)


def test_first_code_line_rule() -> None:
    assert first_code_line("\n\n```python\n# comment\n    return x\n```") == "    return x"
    assert first_code_line("x = '#'\ny = 2") == "y = 2"  # a "#" anywhere skips the line
    assert first_code_line("a // b\n") == ""  # the empty last line has no marker
    assert first_code_line("# only\n// comments") == ""
    assert first_code_line("  \nreturn x") == "  "  # only newlines are stripped in front


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("return x", ["return x"], 1.0),
        # difflib: matching block "return " (7 of 8 + 8 chars): 14/16 = 87.5 -> round() = 88.
        ("return x", ["return y"], 0.88),
        # "abc" vs "abd": 4/6 = 66.67 -> 67 (an integer percent).
        ("abc", ["abd"], 0.67),
        ("", ["return x"], 0.0),  # one side empty -> 0
        ("", [""], 1.0),  # identical strings -> 100 before the empty check
        ("```\n# c\n    return x", ["    return x", "return"], 1.0),
    ],
)
def test_code_sim(prediction: str, answers: list[str], expected: float) -> None:
    assert code_sim_score(prediction, answers) == pytest.approx(expected)


def test_code_sim_uses_difflib_path() -> None:
    # difflib (LongBench's fuzzywuzzy without python-Levenshtein) first takes the longest block
    # "aa" (a[0:2] = b[2:4]); nothing is left on either side of it, so M = 2: 4/7 -> 57. The
    # Levenshtein path would count the LCS "aaa" (6/7 -> 86).
    import difflib

    from fuzzywuzzy import fuzz

    assert fuzz.SequenceMatcher is difflib.SequenceMatcher
    assert code_sim_score("aaa", ["abaa"]) == 0.57


def test_postprocess_first_line_tasks_only() -> None:
    assert longbench_postprocess("trec", "\n\nLocation\nNumber") == "Location"
    assert longbench_postprocess("samsum_e", " Anna calls. \nBob") == " Anna calls. "  # no strip
    assert longbench_postprocess("qasper", " text\nmore ") == " text\nmore "
    assert longbench_postprocess("lsht", "") == ""


def test_percent_and_e_buckets() -> None:
    assert longbench_percent([1.0, 0.0, 0.5]) == 50.0
    assert longbench_percent([1 / 3]) == 33.33
    assert longbench_percent([2 / 3]) == 66.67
    assert math.isnan(longbench_percent([]))
    assert [longbench_e_bucket(n) for n in (0, 3999, 4000, 7999, 8000, 50000)] == [
        "0-4k",
        "0-4k",
        "4-8k",
        "4-8k",
        "8k+",
        "8k+",
    ]
    buckets = longbench_e_bucket_scores([1.0, 0.0, 0.25, 1 / 3], [100, 3999, 4000, 9000])
    assert buckets == {"0-4k": 50.0, "4-8k": 25.0, "8k+": 33.33}
    records = [{"score": 1.0, "length": 5000}, {"score": 0.5, "length": 7000}]
    result = longbench_e_buckets(records)
    assert list(result) == ["0-4k", "4-8k", "8k+"]
    assert math.isnan(result["0-4k"]) and math.isnan(result["8k+"]) and result["4-8k"] == 75.0
    with pytest.raises(ValueError, match="length"):
        longbench_e_buckets([{"score": 1.0}])
    with pytest.raises(ValueError, match="number of words"):
        longbench_e_bucket("long")  # type: ignore[arg-type]


def test_numpy_lengths_are_accepted() -> None:
    import numpy as np

    assert longbench_e_bucket(np.int32(4000)) == "4-8k"  # type: ignore[arg-type]


def test_registry_covers_all_21_tasks() -> None:
    assert len(LONGBENCH_SCORERS) == 21
    assert LONGBENCH_SCORERS["trec"] is classification_score
    assert LONGBENCH_SCORERS["repobench-p"] is code_sim_score

"""InfiniteBench scorers against values worked out by hand from OpenBMB ``compute_scores.py``.

Labels are given as the hub stores them (lists of strings; choice tasks one letter plus the
row's ``options``).
"""

from __future__ import annotations

import pytest

from sah_bench.scorers import (
    INFINITEBENCH_SCORERS,
    code_debug_score,
    code_run_score,
    first_int_score,
    kv_retrieval_score,
    longbook_choice_score,
    longdialogue_score,
    math_calc_score,
    math_find_score,
    option_choice_score,
    qa_f1_score,
    qa_f1_zh_char_score,
    rouge_lsum_score,
)


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("The pass key is 71432.", 1.0),
        ("key 071432", 0.0),  # compared as text
        ("1 then 71432", 0.0),  # only the first digit run counts
        ("71432abc", 1.0),
        ("", 0.0),
        ("٧١٤٣٢", 0.0),  # non-ASCII digits are separators
    ],
)
def test_passkey(prediction: str, expected: float) -> None:
    assert first_int_score(prediction, ["71432"]) == expected


def test_first_int_reads_only_the_first_reference() -> None:
    assert first_int_score("7", ["5", "7"]) == 0.0
    with pytest.raises(ValueError, match="empty"):
        first_int_score("7", [])


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ('is: "c14cb8ba-002b"', 1.0),  # quotes and colon become spaces
        ("The value is c14cb8ba-002b.", 1.0),
        ("{c14cb8ba-002b}", 1.0),
        ("c14cb8ba-002bX", 0.0),  # whole words only
        ("C14CB8BA-002B", 0.0),  # case-sensitive
        ("", 0.0),
    ],
)
def test_kv_retrieval(prediction: str, expected: float) -> None:
    assert kv_retrieval_score(prediction, ["c14cb8ba-002b"]) == expected


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("Ace Rothstein", ["ACE", "ACE ROTHSTEIN"], 1.0),  # words upper-cased
        ("The killer is ace.", ["ACE"], 1.0),
        ("Nicky", ["ACE"], 0.0),
        ("Remo", ["Remo"], 0.0),  # the label is not upper-cased
        ("ROTHSTEIN", ["ACE", "ROTHSTEIN"], 0.0),  # first reference only
        ("ace rothstein", ["ACE ROTHSTEIN"], 0.0),  # a two-word label is never one word
        ("", ["ACE"], 0.0),
    ],
)
def test_longdialogue(prediction: str, answers: list[str], expected: float) -> None:
    assert longdialogue_score(prediction, answers) == expected


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("88", "88", 1.0),
        ("The answer is 88.", "88", 1.0),
        ("x 7 y 8", "8", 0.0),  # the first number
        ("-5", "-5", 0.0),  # no sign in the regex: 5 != -5
        ("0.5", "0.5", 1.0),
        ("1/2", "0.5", 0.0),
        ("2", "2.0", 1.0),  # a float label compares float(first)
        ("88.0", "88", 0.0),  # int label, decimal first number: official int() raises
        ("no number", "3", 0.0),
    ],
)
def test_math_find(prediction: str, answer: str, expected: float) -> None:
    assert math_find_score(prediction, [answer]) == expected


def test_math_find_bad_label() -> None:
    with pytest.raises(ValueError, match="neither an int nor a float"):
        math_find_score("1", ["one"])


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("1, 3, 6", ["1", "3", "6"], 1.0),
        ("1 3 7 6", ["1", "3", "6"], 2 / 3),  # prefix of matches, stops at the first miss
        ("[1, 3, -1, -11]", ["1", "3", "-1", "-11"], 0.5),  # signs are dropped: 1 != -1
        ("[1, 3, -1, -11]", ["[1, 3, -1, -11]"], 0.5),  # a list-repr label is read too
        ("5 1 3", ["1", "3"], 0.0),
        ("", ["1"], 0.0),
    ],
)
def test_math_calc(prediction: str, answers: list[str], expected: float) -> None:
    assert math_calc_score(prediction, answers) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("The return value is 4.", "4", 1.0),
        ("-4", "-4", 1.0),
        ("+4", "4", 1.0),  # int() accepts a sign
        ("`4`", "4", 1.0),
        ("4)", "4", 0.0),  # ")" is not a separator: int("4)") fails
        ("The answer is 4 units", "4", 0.0),  # the last word decides
        ("", "4", 0.0),
        ("4", "four", 0.0),
    ],
)
def test_code_run(prediction: str, answer: str, expected: float) -> None:
    assert code_run_score(prediction, [answer]) == expected


DEBUG_OPTIONS = ["cmd_gen", "_parser", "repack_carchive", "foo_bar"]


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("C. repack_carchive", 1.0),
        ("C: yes", 1.0),
        ("The answer is: C", 1.0),
        ("answer: repack_carchive", 1.0),  # the function name counts too
        # "option" is blanked first, then "is:" is found: "repack_carchive" follows.
        ("The correct option is: repack_carchive", 1.0),
        ("The answer is: Option C", 1.0),  # "Option" blanked, spaces collapsed
        ("is: C", 1.0),
        ("C", 0.0),  # a bare letter is not read
        ("Answer: C", 0.0),  # the cues are case-sensitive
        ("My answer is:", 0.0),  # nothing after the cue
        ("**C**. repack", 0.0),
        ("The function with the error is: B. _parser", 0.0),
    ],
)
def test_code_debug(prediction: str, expected: float) -> None:
    assert code_debug_score(prediction, ["C"], options=DEBUG_OPTIONS) == expected


CHOICE_OPTIONS = ["Walking Georgie", "Snowfield", "Hall Farm", "X"]


@pytest.mark.parametrize(
    ("prediction", "if_a", "if_b"),
    [
        ("A. Walking Georgie", 1.0, 0.0),
        ("B. Hall Farm", 0.0, 1.0),  # the first character decides
        ("Walking Georgie", 1.0, 0.0),  # equal to the option text
        ("Based on the text, the answer is A", 0.0, 1.0),  # first character "B"
        ("The answer is Walking Georgie.", 1.0, 0.0),
        ("So the option is A.", 1.0, 0.0),
        ("the answer is: A", 1.0, 0.0),
        ("the answer is: a", 0.0, 0.0),  # case-sensitive after the cue
        ("the answer is", 0.0, 0.0),  # nothing after the cue
        ("I think A", 1.0, 0.0),  # the first word that is a letter
        ("I think it's (A)", 0.0, 0.0),  # "(A)" is not a word in "ABCD"
        ("I pick BC", 0.0, 0.0),  # "BC" is a substring of "ABCD", and not the label
        ("", 0.0, 0.0),
        ("   ", 0.0, 0.0),
    ],
)
def test_longbook_choice(prediction: str, if_a: float, if_b: float) -> None:
    assert longbook_choice_score(prediction, ["A"], options=CHOICE_OPTIONS) == if_a
    assert longbook_choice_score(prediction, ["B"], options=CHOICE_OPTIONS) == if_b
    assert option_choice_score(prediction, ["A"], options=CHOICE_OPTIONS) == if_a


def test_choice_label_forms_and_errors() -> None:
    # The option text as reference, or the official [text, letter] pair, work the same.
    assert longbook_choice_score("A", ["Walking Georgie"], options=CHOICE_OPTIONS) == 1.0
    assert longbook_choice_score("A", ["Walking Georgie", "A"]) == 1.0
    with pytest.raises(ValueError, match="options"):
        longbook_choice_score("A", ["A"])
    with pytest.raises(ValueError, match="neither a letter"):
        longbook_choice_score("A", ["Nowhere"], options=CHOICE_OPTIONS)


def test_longbook_qa_chn_is_character_f1() -> None:
    # chars [北, 京, 是, 首, 都] vs [北, 京]: P = 2/5, R = 1 -> 4/7 (jieba words would give 1/2).
    assert qa_f1_zh_char_score("北京是首都。", ["北京"]) == pytest.approx(4 / 7)
    assert qa_f1_zh_char_score("", ["北京"]) == 0.0
    assert qa_f1_zh_char_score("上海", ["北京", "上海"]) == 1.0


def test_longbook_sum_is_rouge_lsum() -> None:
    # Lower-cased alphanumeric tokens; one LCS over the whole line: "it was happy" vs
    # "happy was it" -> LCS 1, F = 1/3 ...
    assert rouge_lsum_score("happy was it", ["it was happy"]) == pytest.approx(1 / 3)
    # ... but newlines split summary sentences and the union LCS then hits every token.
    assert rouge_lsum_score("happy\nwas\nit", ["it was happy"]) == pytest.approx(1.0)
    assert rouge_lsum_score("THE CAT, sat!", ["the cat sat"]) == pytest.approx(1.0)
    assert rouge_lsum_score("", ["the cat"]) == 0.0
    # best reference: "the cat" vs [the, cat, sat]: P = 1, R = 2/3 -> F = 0.8.
    assert rouge_lsum_score("the cat", ["dog", "the cat sat"]) == pytest.approx(0.8)


def test_registry_covers_all_hub_configs() -> None:
    assert len(INFINITEBENCH_SCORERS) == 12
    assert INFINITEBENCH_SCORERS["longbook_qa_eng"] is qa_f1_score
    assert INFINITEBENCH_SCORERS["longbook_sum_eng"] is rouge_lsum_score

"""LOFT RAG parsing and metrics against values worked out from google-deepmind/loft."""

from __future__ import annotations

import math

import pytest

from sah_bench.scorers import (
    LOFT_RAG_SCORERS,
    coverage_score,
    loft_em_score,
    loft_f1_score,
    loft_normalize,
    multi_value_subspan_em_score,
    parse_final_answers,
    set_em_score,
    subspan_em_score,
)


@pytest.mark.parametrize(
    ("prediction", "expected"),
    [
        ("Final Answer: ['Spain']", ["Spain"]),
        ("['child bride', 'the devil's sleep']", ["child bride", "the devil's sleep"]),
        ('**Final Answer:** ["Taíno"]', ["Taíno"]),
        ("`['x']`", ["x"]),
        ("Final Answer: [1942, 'x']", ["1942", "x"]),  # items are str()-ed
        ("['a'], ['b']", ["['a']", "['b']"]),  # a tuple of lists
        ("Spain", []),  # no brackets: nothing is read
        ("Final Answer: [Spain]", []),  # not a literal
        # Only the first line with brackets is tried, even when it does not parse.
        ("Reasoning [see doc 3]\nFinal Answer: ['Spain']", []),
        ("thinking...\nFinal Answer: ['Spain', 'France']\n['x']", ["Spain", "France"]),
        ("", []),
    ],
)
def test_parse_final_answers(prediction: str, expected: list[str]) -> None:
    assert parse_final_answers(prediction) == expected


def test_normalize_is_nfd_squad() -> None:
    composed, decomposed = "Ta\u00edno", "Tai\u0301no"
    assert loft_normalize(composed) == loft_normalize(decomposed) == "tai\u0301no"
    assert loft_normalize("The  U.S.   Army!") == "us army"


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("Final Answer: ['in Spain']", ["Spain", "Taíno"], 1.0),  # reference inside answer
        ("['Spain']", ["Kingdom of Spain"], 0.0),  # one direction only
        ("['Portugal', 'Spain']", ["Spain"], 0.0),  # first answer only
        ("['Tai\u0301no people']", ["Ta\u00edno"], 1.0),  # NFD on both sides
        ("['The']", ["Spain"], 0.0),
        ("['Spain']", ["The"], 1.0),  # a reference normalising to "" is in every answer
        ("Spain", ["Spain"], 0.0),  # unbracketed answer is never read
        ("[]", ["Spain"], 0.0),
    ],
)
def test_single_value_subspan_em(prediction: str, answers: list[str], expected: float) -> None:
    assert subspan_em_score(prediction, answers) == expected


def test_single_value_em_and_f1() -> None:
    assert loft_em_score("['the Spain!']", ["Spain"]) == 1.0
    assert loft_em_score("['in Spain']", ["Spain"]) == 0.0
    # [spain, and, portugal] vs [spain]: P = 1/3, R = 1 -> 1/2.
    assert loft_f1_score("['Spain and Portugal']", ["France", "Spain"]) == pytest.approx(0.5)
    assert loft_f1_score("nothing", ["Spain"]) == 0.0


BOOKS = ["Five Point Someone", "One Night @ the Call Center", "The 3 Mistakes of My Life"]


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("['A Case of Need', 'Other']", ["A Case of Need"], 1.0),
        (str(BOOKS), BOOKS, 1.0),
        # "@" and "the" vanish in the reference ("one night call center") but "at" stays in the
        # answer: neither contains the other, so not every reference is matched.
        (
            "['Five Point Someone', 'One Night at the Call Center', 'The 3 Mistakes of My Life']",
            BOOKS,
            0.0,
        ),
        # One answer can serve only one reference.
        (
            "['Harry Potter and the Goblet of Fire']",
            ["Harry Potter", "Harry Potter and the Goblet"],
            0.0,
        ),
        # A greedy pairing would give answer 1 to "harry potter" and fail; the optimal one works.
        (
            "['Harry Potter and the Goblet of Fire', 'Harry Potter']",
            ["Harry Potter", "Harry Potter and the Goblet"],
            1.0,
        ),
        ("['The', 'X']", ["Spain"], 1.0),  # "" (from "The") is inside every reference
        ("[]", ["Spain"], 0.0),
    ],
)
def test_multi_value_subspan_em(prediction: str, answers: list[str], expected: float) -> None:
    assert multi_value_subspan_em_score(prediction, answers) == expected


def test_coverage_and_set_em() -> None:
    wrong = "['Five Point Someone', 'One Night at the Call Center', 'The 3 Mistakes of My Life']"
    assert coverage_score(wrong, BOOKS) == pytest.approx(2 / 3)
    assert coverage_score("['a', 'a', 'b']", ["a", "c"]) == 0.5
    assert math.isnan(coverage_score("no list", ["a"]))  # the official mean skips such rows
    assert set_em_score("['b', 'a', 'a']", ["a", "b"]) == 1.0
    assert set_em_score("['a']", ["a", "b"]) == 0.0


def test_registry_primary_metrics() -> None:
    assert LOFT_RAG_SCORERS["nq"] is subspan_em_score
    assert LOFT_RAG_SCORERS["quest"] is multi_value_subspan_em_score

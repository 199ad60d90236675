"""The offline synthetic suite: deterministic, at the target length, answers recoverable."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from sah_bench import SYNTHETIC_TASKS, generate_row, get_benchmark, whitespace_token_count
from sah_bench.synthetic import generate_rows


def full_prompt(row: dict) -> str:
    return row["context"] + row["question"] + " " + row["answer_prefix"]


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_rows_are_deterministic_and_fit_the_target(task: str) -> None:
    a = generate_row(task, 3, 7, 600, whitespace_token_count)
    b = generate_row(task, 3, 7, 600, whitespace_token_count)
    assert a == b
    assert a != generate_row(task, 4, 7, 600, whitespace_token_count)
    n = whitespace_token_count(full_prompt(a))
    assert 0.9 * 600 <= n <= 600


def test_length_is_measured_with_the_given_counter() -> None:
    def chars_over_four(text: str) -> int:  # a stand-in "tokenizer"
        return len(text) // 4

    row = generate_row("niah_single", 0, 0, 1000, chars_over_four)
    assert 0.9 * 1000 <= chars_over_four(full_prompt(row)) <= 1000
    long_row = generate_row("niah_single", 0, 0, 8000, whitespace_token_count)
    assert 0.95 * 8000 <= whitespace_token_count(full_prompt(long_row)) <= 8000


def test_needles_hold_the_answers() -> None:
    for task in ("niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery"):
        row = generate_row(task, 1, 0, 400, whitespace_token_count)
        for value in row["answers"]:
            assert f"is: {value}." in row["context"]
    single = generate_row("niah_single", 1, 0, 400, whitespace_token_count)
    key = re.search(r"for (\S+) mentioned", single["question"]).group(1)  # type: ignore[union-attr]
    assert f"for {key} is: {single['answers'][0]}." in single["context"]


def test_variable_tracking_chain_resolves_to_the_answers() -> None:
    row = generate_row("vt", 0, 0, 500, whitespace_token_count)
    value = re.search(r"value (\d+)", row["question"]).group(1)  # type: ignore[union-attr]
    assignments = re.findall(r"VAR (\w+) = (VAR \w+|\d+)\.", row["context"])
    resolved: dict[str, str] = {}
    for name, rhs in assignments:  # the chain is written in dependency order
        resolved[name] = resolved[rhs[4:]] if rhs.startswith("VAR ") else rhs
    assert sorted(n for n, v in resolved.items() if v == value) == sorted(row["answers"])


def test_common_and_frequent_words_are_the_true_top_counts() -> None:
    cwe = generate_row("cwe", 0, 0, 1500, whitespace_token_count)
    listing = cwe["context"].split("\n\n")[1]
    words = re.findall(r"\d+\. (\w+)", listing)
    counts = Counter(words)
    top = [w for w, _ in counts.most_common(10)]
    assert sorted(top) == sorted(cwe["answers"])
    assert counts.most_common(11)[9][1] > counts.most_common(11)[10][1]

    fwe = generate_row("fwe", 0, 0, 1500, whitespace_token_count)
    text = fwe["context"].split("\n\n")[1].replace(" ...", "")
    counts = Counter(text.split())
    assert [w for w, _ in counts.most_common(3)] == fwe["answers"]


def test_several_questions_share_one_context() -> None:
    rows = generate_rows("niah_multikey", 0, 0, 500, whitespace_token_count, 3)
    assert len(rows) == 3 and len({r["context"] for r in rows}) == 1
    assert len({r["answer_prefix"] for r in rows}) == 1
    assert len({r["answers"][0] for r in rows}) == 3
    bench = get_benchmark("synthetic", target_tokens=500, num_samples=2, questions_per_context=3)
    assert len(bench.load_rows("niah_multikey")) == 6
    assert len(bench.load_rows("niah_multikey", max_rows=4)) == 4


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="target_tokens"):
        get_benchmark("synthetic", target_tokens=10)
    with pytest.raises(ValueError, match="num_samples"):
        get_benchmark("synthetic", num_samples=0)
    with pytest.raises(ValueError, match="unknown task"):
        generate_row("nope", 0, 0, 500, whitespace_token_count)

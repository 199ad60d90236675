"""Every scorer against values worked out by hand from its published definition."""

from __future__ import annotations

import math

import pytest

from sah_bench.scorers import (
    boxed_match_score,
    choice_score,
    classification_score,
    code_sim_score,
    count_score,
    coverage_score,
    extract_boxed,
    extract_choice,
    first_int_score,
    kv_retrieval_score,
    math_find_score,
    option_choice_score,
    parse_final_answers,
    qa_f1_score,
    qa_f1_zh_score,
    retrieval_score,
    retrieval_zh_score,
    rouge_score,
    rouge_zh_score,
    string_match_all,
    string_match_part,
    subspan_em_score,
)


def test_qa_f1_worked_example() -> None:
    # normalised: pred [cat, sat, on, mat], ref [cat, on, mat]: P = 3/4, R = 1, F1 = 6/7.
    assert qa_f1_score("The cat sat on the mat!", ["a cat on a mat"]) == pytest.approx(6 / 7)
    assert qa_f1_score("The cat sat on the mat!", ["dog", "cat sat on mat"]) == 1.0
    assert qa_f1_score("", ["cat"]) == 0.0
    # Repeated tokens count as a multiset: pred [a, a] vs ref [a] -> P = 1/2, R = 1, F1 = 2/3.
    assert qa_f1_score("x x", ["x"]) == pytest.approx(2 / 3)


def test_qa_f1_chinese_uses_jieba_words() -> None:
    import jieba

    assert list(jieba.cut("北京是首都")) == ["北京", "是", "首都"]
    # pred words [北京, 是, 首都], ref [北京]: P = 1/3, R = 1, F1 = 1/2.
    assert qa_f1_zh_score("北京是首都。", ["北京"]) == pytest.approx(0.5)


def test_rouge_l_worked_example() -> None:
    # LCS of 6 tokens; P = 6/7, R = 6/6 -> F = 12/13.
    pred, ref = "the cat was found under the bed", "the cat was under the bed"
    assert rouge_score(pred, [ref]) == pytest.approx(12 / 13)
    assert rouge_score("nothing in common", ["the cat"]) == 0.0


def test_rouge_l_chinese() -> None:
    # jieba: [我, 爱, 北京] vs [我, 爱, 上海] -> LCS 2, P = R = 2/3, F = 2/3.
    assert rouge_zh_score("我爱北京", ["我爱上海"]) == pytest.approx(2 / 3)


def test_classification_score() -> None:
    classes = ["Location", "Number", "Person", "Description"]
    assert classification_score("Number", ["Number"], all_classes=classes) == 1.0
    assert classification_score("Number or Person", ["Number"], all_classes=classes) == 0.5
    assert classification_score("Person", ["Number"], all_classes=classes) == 0.0
    # A class that is a proper substring of the reference is not held against it.
    nested = ["Entity", "Entity type", "Other"]
    assert classification_score("Entity type", ["Entity type"], all_classes=nested) == 1.0
    with pytest.raises(ValueError, match="all_classes"):
        classification_score("Number", ["Number"])


def test_retrieval_and_count() -> None:
    assert retrieval_score("Paragraph 12", ["Paragraph 12"]) == 1.0
    assert retrieval_score("Paragraph 12 or Paragraph 3", ["Paragraph 12"]) == 0.5
    assert retrieval_score("no idea", ["Paragraph 12"]) == 0.0
    assert retrieval_zh_score("答案是段落5", ["段落5"]) == 1.0
    assert count_score("There are 7 unique paragraphs out of 10", ["7"]) == 0.5
    assert count_score("7", ["7"]) == 1.0
    with pytest.raises(ValueError, match="paragraph"):
        retrieval_score("Paragraph 1", ["no paragraph here"])


def test_code_similarity() -> None:
    pred = "```python\n    return x + 1\n```"
    assert code_sim_score(pred, ["    return x + 1"]) == 1.0
    # "abc" vs "abd": Indel distance 2 over total length 6 -> similarity 1 - 2/6.
    assert code_sim_score("# comment\nabc", ["abd"]) == pytest.approx(2 / 3)


def test_string_match() -> None:
    assert string_match_all("12 and 34", ["12", "34", "56"]) == pytest.approx(2 / 3)
    assert string_match_part("12 and 34", ["12", "34", "56"]) == 1.0
    assert string_match_part("Found ABC", ["abc"]) == 1.0
    assert string_match_part("nothing", ["abc"]) == 0.0


def test_boxed_answers() -> None:
    assert extract_boxed(r"so \boxed{\frac{1}{2}} done") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{1} then \boxed{2}") == "2"
    assert boxed_match_score(r"The answer is $\boxed{042}$.", ["42"]) == 1.0
    assert boxed_match_score(r"\boxed{41}", ["42"]) == 0.0
    assert boxed_match_score("so the answer is 204.", ["204"]) == 1.0
    assert boxed_match_score("no number", ["204"]) == 0.0
    assert boxed_match_score(r"\boxed{1,000}", ["1000"]) == 1.0


def test_multiple_choice() -> None:
    assert extract_choice("The correct answer is (B)") == "B"
    assert extract_choice("(C) because ...") == "C"
    assert extract_choice("I am not sure") is None
    assert choice_score("The correct answer is (B).", ["B"]) == 1.0
    assert choice_score("The correct answer is (A).", ["B"]) == 0.0
    options = ["foo", "bar", "baz", "qux"]
    assert option_choice_score("C. baz", ["baz"], options=options) == 1.0
    assert option_choice_score("The answer is: baz", ["baz"], options=options) == 1.0
    assert option_choice_score("A", ["baz"], options=options) == 0.0


def test_infinitebench_scorers() -> None:
    assert first_int_score("The pass key is 71432.", ["71432"]) == 1.0
    assert first_int_score("7 1432", ["71432"]) == 0.0
    assert kv_retrieval_score('"a1b2": "d4e5-f6".', ["d4e5-f6"]) == 1.0
    assert kv_retrieval_score("d4e5", ["d4e5-f6"]) == 0.0
    assert math_find_score("3.5 is the answer", ["3.5"]) == 1.0
    assert math_find_score("-2", ["-2"]) == 1.0
    assert math_find_score("4", ["3"]) == 0.0


def test_loft_scorers() -> None:
    assert parse_final_answers("Reasoning...\nFinal Answer: ['Paris', 'Lyon']") == [
        "Paris",
        "Lyon",
    ]
    assert parse_final_answers('Final Answer: ["A b", "C"]') == ["A b", "C"]
    assert subspan_em_score("Final Answer: ['The Paris']", ["paris"]) == 1.0
    assert subspan_em_score("Final Answer: ['Rome']", ["paris"]) == 0.0
    assert coverage_score("Final Answer: ['Paris', 'Lyon']", ["Paris", "Nice"]) == 0.5


def test_scores_lie_in_unit_interval() -> None:
    values = [
        qa_f1_score("a b c", ["b c d"]),
        rouge_score("a b c", ["b c d"]),
        string_match_all("x", ["x", "y"]),
        count_score("1 2 3", ["2"]),
    ]
    assert all(0.0 <= v <= 1.0 and not math.isnan(v) for v in values)

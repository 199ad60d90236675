"""InfiniteBench (Zhang et al., 2024, "∞Bench: Extending Long Context Evaluation Beyond 100K
Tokens"): nine of its tasks, with the official per-task scorers.

Retrieval (passkey, number_string, kv_retrieval), math_find, code_debug and English novel
QA / choice / summary / dialogue tasks. The hub mirror stores each task as a split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.scorers import (
    first_int_score,
    kv_retrieval_score,
    math_find_score,
    option_choice_score,
    qa_f1_score,
    rouge_score,
    string_match_part,
)


@dataclass(frozen=True)
class InfiniteBenchTask:
    scorer: Scorer
    max_new_tokens: int
    context_template: str
    question_template: str
    answer_prefix: str = ""
    with_options: bool = False


_OPTIONS = "\n\nOptions:\nA. {A}\nB. {B}\nC. {C}\nD. {D}"

TASKS: dict[str, InfiniteBenchTask] = {
    "passkey": InfiniteBenchTask(
        first_int_score,
        6,
        "There is a pass key hidden in the noisy text below. Find it and remember it.\n\n"
        "{context}\n\n",
        "{input}",
        "The pass key is",
    ),
    "number_string": InfiniteBenchTask(
        first_int_score,
        12,
        "A special sequence of digits is hidden in the noisy text below. Find it.\n\n{context}\n\n",
        "{input}",
        "The sequence of digits is",
    ),
    "kv_retrieval": InfiniteBenchTask(
        kv_retrieval_score,
        50,
        "Below is a JSON object of key-value pairs.\n\n{context}\n\n",
        "{input}",
        "The value associated with the specified key is:",
    ),
    "math_find": InfiniteBenchTask(
        math_find_score,
        3,
        "{context}\n\n",
        "{input}\nAnswer with the number only.",
        "The answer is:",
    ),
    "code_debug": InfiniteBenchTask(
        option_choice_score,
        5,
        "The code below contains exactly one function with an obvious error.\n\n{context}\n\n",
        "Which function has the deliberate error?"
        + _OPTIONS
        + "\n\nAnswer with the option letter.",
        "The correct option is:",
        with_options=True,
    ),
    "longbook_qa_eng": InfiniteBenchTask(
        qa_f1_score,
        10,
        "Read the book below and answer the question.\n\n{context}\n\n",
        "Question: {input}\nAnswer briefly.",
        "Answer:",
    ),
    "longbook_choice_eng": InfiniteBenchTask(
        option_choice_score,
        40,
        "Read the book below and answer the question.\n\n{context}\n\n",
        "Question: {input}" + _OPTIONS + "\n\nAnswer with the option letter.",
        "The letter of the correct answer is",
        with_options=True,
    ),
    "longbook_sum_eng": InfiniteBenchTask(
        rouge_score,
        1200,
        "Summarise the book below.\n\n{context}\n\n",
        "Write a summary of the book above.",
        "Summary:",
    ),
    "longdialogue_qa_eng": InfiniteBenchTask(
        string_match_part,
        40,
        'Below is a dialogue script in which one character\'s name is replaced by "$$MASK$$".'
        "\n\n{context}\n\n",
        'Which character is "$$MASK$$"? Answer with the name only.',
        "The name that has been replaced with $$MASK$$ is likely",
    ),
}


class InfiniteBench(Benchmark):
    name: ClassVar[str] = "infinitebench"
    hub_id: ClassVar[str] = "MaxJeblick/InfiniteBench"
    all_subsets: ClassVar[tuple[str, ...]] = tuple(TASKS)

    def hub_location(self, subset: str) -> tuple[str | None, str]:
        return None, subset

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        task = TASKS[subset]
        answers = record["answer"] if "answer" in record else record["answers"]
        options = [str(o) for o in (record.get("options") or [])]
        fields: dict[str, Any] = {"input": record.get("input") or ""}
        if task.with_options:
            if len(options) < 4:
                raise ValueError(f"infinitebench/{subset}: record needs 4 options, got {options!r}")
            fields.update(A=options[0], B=options[1], C=options[2], D=options[3])
        row: dict[str, Any] = {
            "context": task.context_template.format(context=record["context"]),
            "question": task.question_template.format(**fields),
            "answer_prefix": task.answer_prefix,
            "answers": answers,
            "task": subset,
            "max_new_tokens": task.max_new_tokens,
        }
        if task.with_options:
            row["options"] = options
        return [row]

    def scorer(self, subset: str) -> Scorer:
        return TASKS[subset].scorer

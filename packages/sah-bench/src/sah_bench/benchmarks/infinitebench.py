"""InfiniteBench (Zhang et al., 2024, "∞Bench: Extending Long Context Evaluation Beyond 100K
Tokens"): its tasks from the hub copy ``MaxJeblick/InfiniteBench``, with per-task scorers.

The hub copy has one config per task, split ``test``, and six columns: ``context`` (an
instruction prefix + the raw context), ``question`` (the raw input; the choice tasks append their
options as "A. …" to "D. …"), ``answer_prefix``, ``answer`` (a list of strings; the choice tasks
hold one letter), ``task`` and ``max_new_tokens`` (official + 20). The text columns are passed
through unchanged; the generation budget is the official one (OpenBMB ``eval_utils.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    #: Official generation budget (OpenBMB ``src/eval_utils.py``).
    max_new_tokens: int
    #: The question ends with the four options "A. …" to "D. …".
    with_options: bool = False


TASKS: dict[str, InfiniteBenchTask] = {
    "passkey": InfiniteBenchTask(first_int_score, 6),
    "number_string": InfiniteBenchTask(first_int_score, 12),
    "kv_retrieval": InfiniteBenchTask(kv_retrieval_score, 50),
    "code_debug": InfiniteBenchTask(option_choice_score, 5, with_options=True),
    "math_find": InfiniteBenchTask(math_find_score, 3),
    "longdialogue_qa_eng": InfiniteBenchTask(string_match_part, 40),
    "longbook_qa_eng": InfiniteBenchTask(qa_f1_score, 40),
    "longbook_choice_eng": InfiniteBenchTask(option_choice_score, 40, with_options=True),
    "longbook_sum_eng": InfiniteBenchTask(rouge_score, 1200),
}

#: The four options at the end of a choice question, as the hub copy appends them.
_OPTIONS = re.compile(r"\nA\. (.*?)\nB\. (.*?)\nC\. (.*?)\nD\. (.*?)\s*\Z", re.DOTALL)


def parse_options(question: str) -> list[str] | None:
    """The texts of options A-D at the end of ``question``, or None if it has none."""
    match = _OPTIONS.search(question)
    return None if match is None else [g.strip() for g in match.groups()]


class InfiniteBench(Benchmark):
    name: ClassVar[str] = "infinitebench"
    hub_id: ClassVar[str] = "MaxJeblick/InfiniteBench"
    all_subsets: ClassVar[tuple[str, ...]] = tuple(TASKS)

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        missing = [k for k in ("context", "question", "answer_prefix") if k not in record]
        if missing or ("answer" not in record and "answers" not in record):
            raise ValueError(
                f"infinitebench/{subset}: record lacks {missing or ['answer']} (keys "
                f"{sorted(record)}); rows must follow the hub schema of {self.hub_id} "
                "(context, question, answer_prefix, answer, task, max_new_tokens)"
            )
        task = TASKS[subset]
        row: dict[str, Any] = {
            "context": record["context"],
            "question": record["question"],
            "answer_prefix": record["answer_prefix"],
            "answers": record["answer"] if "answer" in record else record["answers"],
            "task": subset,
            "max_new_tokens": task.max_new_tokens,
        }
        if task.with_options:
            options = parse_options(str(record["question"]))
            if options is None:
                raise ValueError(
                    f"infinitebench/{subset}: question does not end with the options "
                    f"'A. …' to 'D. …': {str(record['question'])[-120:]!r}"
                )
            row["options"] = options
        return [row]

    def scorer(self, subset: str) -> Scorer:
        task = TASKS[subset]
        return _letter_label(task.scorer) if task.with_options else task.scorer


def _letter_label(scorer: Scorer) -> Scorer:
    """Score a choice row whose reference is the letter: give the scorer the official label.

    OpenBMB's ``get_answer`` labels a choice question ``[option text, letter]``; the hub copy
    keeps only the letter, and the option texts come back from the question (``options``).
    """

    def score(prediction: str, answers: Sequence[str], **extras: Any) -> float:
        options = list(extras.get("options") or [])
        label: list[str] = []
        for answer in answers:
            index = "ABCD".find(str(answer).strip())
            if len(str(answer).strip()) == 1 and 0 <= index < len(options):
                label.append(options[index])
            label.append(str(answer))
        return float(scorer(prediction, label, **extras))

    return score

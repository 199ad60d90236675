"""InfiniteBench (Zhang et al., 2024, "∞Bench: Extending Long Context Evaluation Beyond 100K
Tokens"): its 12 tasks from the hub copy ``MaxJeblick/InfiniteBench``, with per-task scorers.

The hub copy has one config per task, split ``test``, and six columns: ``context`` (an
instruction prefix + the raw context), ``question`` (the raw input; the choice tasks append their
options as "A. …" to "D. …"), ``answer_prefix``, ``answer`` (a list of strings; the choice tasks
hold one letter), ``task`` and ``max_new_tokens`` (official + 20). The text columns are passed
through unchanged; the generation budget is the official one (OpenBMB ``eval_utils.py``).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.scorers import INFINITEBENCH_SCORERS

#: Official generation budgets (OpenBMB ``src/eval_utils.py``); the hub rows carry these + 20.
MAX_NEW_TOKENS: dict[str, int] = {
    "passkey": 6,
    "number_string": 12,
    "kv_retrieval": 50,
    "code_run": 5,
    "code_debug": 5,
    "math_find": 3,
    "math_calc": 30000,
    "longdialogue_qa_eng": 40,
    "longbook_qa_eng": 40,
    "longbook_choice_eng": 40,
    "longbook_sum_eng": 1200,
    "longbook_qa_chn": 40,
}

#: Tasks whose question ends with the four options "A. …" to "D. …".
CHOICE_TASKS: frozenset[str] = frozenset({"code_debug", "longbook_choice_eng"})

#: The four options at the end of a choice question, as the hub copy appends them.
_OPTIONS = re.compile(r"\nA\. (.*?)\nB\. (.*?)\nC\. (.*?)\nD\. (.*?)\s*\Z", re.DOTALL)


def parse_options(question: str) -> list[str] | None:
    """The texts of options A-D at the end of ``question``, or None if it has none."""
    match = _OPTIONS.search(question)
    return None if match is None else [g.strip() for g in match.groups()]


class InfiniteBench(Benchmark):
    name: ClassVar[str] = "infinitebench"
    hub_id: ClassVar[str] = "MaxJeblick/InfiniteBench"
    all_subsets: ClassVar[tuple[str, ...]] = tuple(MAX_NEW_TOKENS)

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        missing = [k for k in ("context", "question", "answer_prefix") if k not in record]
        if missing or ("answer" not in record and "answers" not in record):
            raise ValueError(
                f"infinitebench/{subset}: record lacks {missing or ['answer']} (keys "
                f"{sorted(record)}); rows must follow the hub schema of {self.hub_id} "
                "(context, question, answer_prefix, answer, task, max_new_tokens)"
            )
        row: dict[str, Any] = {
            "context": record["context"],
            "question": record["question"],
            "answer_prefix": record["answer_prefix"],
            "answers": record["answer"] if "answer" in record else record["answers"],
            "task": subset,
            "max_new_tokens": MAX_NEW_TOKENS[subset],
        }
        if subset in CHOICE_TASKS:
            options = parse_options(str(record["question"]))
            if options is None:
                raise ValueError(
                    f"infinitebench/{subset}: question does not end with the options "
                    f"'A. …' to 'D. …': {str(record['question'])[-120:]!r}"
                )
            row["options"] = options
        return [row]

    def scorer(self, subset: str) -> Scorer:
        # The choice scorers rebuild the official [option text, letter] label from the
        # hub's letter and the row's ``options``.
        return INFINITEBENCH_SCORERS[subset]

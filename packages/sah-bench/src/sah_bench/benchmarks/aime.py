"""AIME 2024 and AIME 2025 (American Invitational Mathematics Examination): 30 problems each,
integer answers 0-999, scored by exact match of the final ``\\boxed{}`` answer.

From the hub copies ``xAlg-AI/att-hub-aime2024`` (one config, named by no one; split ``test``;
``answer`` a string; no ``task`` column) and ``xAlg-AI/att-hub-aime2025`` (config ``aime2025``,
split ``test``; ``answer`` a list, or possibly its repr string "['4']"). Their ``context`` /
``question`` / ``answer_prefix`` are passed through; the answer becomes a list of strings
whatever its storage. Local rows in the plain ``problem`` / ``answer`` form are also accepted
(with this module's own instruction, since the hub copy's prompt is no official one).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.rows import as_answer_list
from sah_bench.scorers import AIME_SCORER

_INSTRUCTION = (
    "Solve the problem. Reason step by step, then put the final answer (an integer from 0 to "
    "999) in \\boxed{}."
)


class Aime2024(Benchmark):
    name: ClassVar[str] = "aime2024"
    hub_id: ClassVar[str] = "xAlg-AI/att-hub-aime2024"
    all_subsets: ClassVar[tuple[str, ...]] = ("aime2024",)
    #: The hub copies' generation budget.
    max_new_tokens: ClassVar[int] = 32000
    #: Config of the hub copy (None: its only config, unnamed as the original loader does).
    hub_config: ClassVar[str | None] = None

    def hub_location(self, subset: str) -> tuple[str | None, str]:
        return self.hub_config, "test"

    def local_records(self, subset: str) -> list[dict[str, Any]]:
        assert self.data_path is not None
        if self.data_path.is_file():
            from sah_bench.local_data import read_records

            return read_records(self.data_path)
        return super().local_records(subset)

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        if "context" in record and "question" in record:
            row = super().to_rows(subset, record)[0]
            row["task"] = subset
            row["answers"] = as_answer_list(row.get("answers"), list_repr=True)
            row.setdefault("max_new_tokens", self.max_new_tokens)
            return [row]
        problem = record.get("problem", record.get("Problem"))
        answer = record.get("answer", record.get("Answer"))
        if problem is None or answer is None:
            raise ValueError(
                f"{self.name}: record needs 'problem' and 'answer' (or the common schema), "
                f"got keys {sorted(record)}"
            )
        return [
            {
                "context": f"Problem:\n{problem}\n\n",
                "question": _INSTRUCTION,
                "answer_prefix": "",
                "answers": as_answer_list(answer, list_repr=True),
                "task": subset,
                "max_new_tokens": self.max_new_tokens,
            }
        ]

    def scorer(self, subset: str) -> Scorer:
        return AIME_SCORER


class Aime2025(Aime2024):
    name: ClassVar[str] = "aime2025"
    hub_id: ClassVar[str] = "xAlg-AI/att-hub-aime2025"
    all_subsets: ClassVar[tuple[str, ...]] = ("aime2025",)
    hub_config: ClassVar[str | None] = "aime2025"

"""LongBench-v2 (Bai et al., 2024, "LongBench v2: Towards Deeper Understanding and Reasoning on
Realistic Long-context Multitasks"): 503 four-way multiple-choice questions.

Scored by accuracy: the answer letter is read from "The correct answer is (X)" (a leading bare
letter is also accepted). Subsets: ``all`` and the slices by difficulty (``easy``, ``hard``) and
by length (``short``, ``medium``, ``long``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.scorers import choice_score

_CONTEXT = (
    "Read the document below, then answer the question that follows.\n\n"
    "<document>\n{context}\n</document>\n\n"
)
_QUESTION = (
    "Question: {question}\n\nOptions:\n(A) {A}\n(B) {B}\n(C) {C}\n(D) {D}\n\n"
    'Reply in the form "The correct answer is (X)", where X is the letter of the right option.'
)


class LongBenchV2(Benchmark):
    name: ClassVar[str] = "longbench_v2"
    hub_id: ClassVar[str] = "THUDM/LongBench-v2"
    all_subsets: ClassVar[tuple[str, ...]] = ("all", "easy", "hard", "short", "medium", "long")
    subset_field: ClassVar[str] = "__never_present__"

    def hub_location(self, subset: str) -> tuple[str | None, str]:
        return None, "train"

    def local_records(self, subset: str) -> list[dict[str, Any]]:
        return self._slice(subset, super().local_records("all"))

    def hub_records(self, subset: str) -> list[dict[str, Any]]:
        return self._slice(subset, super().hub_records(subset))

    def _slice(self, subset: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if subset == "all":
            return records
        key = "difficulty" if subset in ("easy", "hard") else "length"
        return [r for r in records if str(r.get(key, "")).lower() == subset]

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        question = _QUESTION.format(
            question=record["question"],
            A=record["choice_A"],
            B=record["choice_B"],
            C=record["choice_C"],
            D=record["choice_D"],
        )
        return [
            {
                "context": _CONTEXT.format(context=record["context"]),
                "question": question,
                "answer_prefix": "",
                "answers": [str(record["answer"]).strip()],
                "task": subset,
                "max_new_tokens": 128,
                "domain": str(record.get("domain", "")),
            }
        ]

    def scorer(self, subset: str) -> Scorer:
        return choice_score

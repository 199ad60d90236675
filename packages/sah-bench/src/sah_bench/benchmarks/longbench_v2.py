"""LongBench-v2 (Bai et al., 2024, "LongBench v2: Towards Deeper Understanding and Reasoning on
Realistic Long-context Multitasks"): 503 four-way multiple-choice questions.

From the hub copy ``Xnhyacinth/LongBench-v2``: configs ``0shot`` and ``cot``, split ``test``. Its
``context`` (the "Please read the following text…" wrapper around the document), ``question``
(question + the four choices) and ``answer_prefix`` (the format instruction) form the official
0-shot prompt byte for byte and are passed through. (The hub's ``cot`` is single-pass; the
official CoT run is two-pass.) Scored by accuracy; the subset metrics also give the official
report: accuracy × 100, rounded to one decimal, overall and per difficulty / length bucket.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.scorers import LONGBENCH_V2_SCORER

#: Official generation budgets (LongBench ``pred.py``); the hub rows carry these + 20.
V2_MAX_NEW_TOKENS: dict[str, int] = {"0shot": 128, "cot": 1024}

#: Row fields passed through (the report's buckets and the raw source fields).
PASSTHROUGH_FIELDS: tuple[str, ...] = ("_id", "domain", "sub_domain", "difficulty", "length")

#: The official report's buckets: (row field, value).
BUCKETS: tuple[tuple[str, str], ...] = (
    ("difficulty", "easy"),
    ("difficulty", "hard"),
    ("length", "short"),
    ("length", "medium"),
    ("length", "long"),
)


class LongBenchV2(Benchmark):
    name: ClassVar[str] = "longbench_v2"
    hub_id: ClassVar[str] = "Xnhyacinth/LongBench-v2"
    all_subsets: ClassVar[tuple[str, ...]] = tuple(V2_MAX_NEW_TOKENS)

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        if "answer_prefix" not in record:
            raise ValueError(
                f"longbench_v2/{subset}: record has no 'answer_prefix' (keys {sorted(record)}); "
                f"rows must follow the hub schema of {self.hub_id} (context/question/"
                "answer_prefix hold the official prompt); THUDM's raw format is not read"
            )
        row: dict[str, Any] = {
            "context": record["context"],
            "question": record["question"],
            "answer_prefix": record["answer_prefix"],
            "answers": [str(record["answer"]).strip()],
            "task": subset,
            "max_new_tokens": V2_MAX_NEW_TOKENS[subset],
        }
        for name in PASSTHROUGH_FIELDS:
            if record.get(name) is not None:
                row[name] = str(record[name])
        return [row]

    def scorer(self, subset: str) -> Scorer:
        return LONGBENCH_V2_SCORER

    def aggregate(self, subset: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        metrics = super().aggregate(subset, records)
        report: dict[str, float | None] = {"overall": _percent(records)}
        for field, value in BUCKETS:
            report[value] = _percent([r for r in records if _field(r, field) == value])
        metrics["official"] = report
        return metrics


def _field(record: dict[str, Any], name: str) -> str:
    extra = record.get("extra")
    value = record.get(name) if name in record else None
    if value is None and isinstance(extra, dict):
        value = extra.get(name)
    return str(value).lower() if value is not None else ""


def _percent(records: Sequence[dict[str, Any]]) -> float | None:
    scores = [float(r["score"]) for r in records if not math.isnan(float(r["score"]))]
    return round(100 * sum(scores) / len(scores), 1) if scores else None

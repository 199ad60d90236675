"""ZeroSCROLLS (Shaham et al., 2023, "ZeroSCROLLS: A Zero-Shot Benchmark for Long Text
Understanding"): ten tasks whose test answers are not public.

Predictions can only be submitted to the official leaderboard, so here each row scores NaN and
the subset's metrics are length statistics of the predictions (words and characters), which is
what a sparse method can still be compared on offline.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer

ZEROSCROLLS_TASKS: tuple[str, ...] = (
    "gov_report",
    "summ_screen_fd",
    "qmsum",
    "qasper",
    "narrative_qa",
    "quality",
    "musique",
    "squality",
    "space_digest",
    "book_sum_sort",
)

_MAX_NEW_TOKENS: dict[str, int] = {
    "gov_report": 1024,
    "summ_screen_fd": 512,
    "qmsum": 512,
    "squality": 512,
    "book_sum_sort": 256,
}


def no_public_answers(prediction: str, answers: Sequence[str], **_: object) -> float:
    """ZeroSCROLLS has no public test answers: every prediction scores NaN."""
    return math.nan


class ZeroScrolls(Benchmark):
    name: ClassVar[str] = "zeroscrolls"
    hub_id: ClassVar[str] = "tau/zero_scrolls"
    all_subsets: ClassVar[tuple[str, ...]] = ZEROSCROLLS_TASKS

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        text = str(record["input"])
        split_at = record.get("query_start_index")
        if split_at is None or int(split_at) <= 0:
            context, question = text, ""
        else:
            context, question = text[: int(split_at)], text[int(split_at) :]
        output = record.get("output")
        return [
            {
                "context": context,
                "question": question,
                "answer_prefix": "",
                "answers": [] if output is None else [str(output)],
                "task": subset,
                "max_new_tokens": _MAX_NEW_TOKENS.get(subset, 128),
                "id": str(record.get("id", "")),
            }
        ]

    def scorer(self, subset: str) -> Scorer:
        return no_public_answers

    def aggregate(self, subset: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        words = [len(str(r.get("prediction", "")).split()) for r in records]
        chars = [len(str(r.get("prediction", ""))) for r in records]
        return {
            "score": None,
            "n_questions": len(records),
            "per_task": {},
            "prediction_words_mean": statistics.fmean(words) if words else 0.0,
            "prediction_words_median": statistics.median(words) if words else 0.0,
            "prediction_chars_mean": statistics.fmean(chars) if chars else 0.0,
            "empty_predictions": sum(w == 0 for w in words),
        }

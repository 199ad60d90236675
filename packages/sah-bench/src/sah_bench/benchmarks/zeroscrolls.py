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

#: Official generation budgets (ZeroSCROLLS' own; the hub copy carries the same values).
ZEROSCROLLS_MAX_NEW_TOKENS: dict[str, int] = {
    "gov_report": 1024,
    "summ_screen_fd": 512,
    "qmsum": 512,
    "squality": 512,
    "qasper": 128,
    "narrative_qa": 64,
    "quality": 10,
    "musique": 32,
    "space_digest": 36,
    "book_sum_sort": 256,
}


def no_public_answers(prediction: str, answers: Sequence[str], **_: object) -> float:
    """ZeroSCROLLS has no public test answers: every prediction scores NaN."""
    return math.nan


class ZeroScrolls(Benchmark):
    """ZeroSCROLLS from ``simonjegou/zero_scrolls``: one ``default`` config, split ``test``,
    the ten tasks concatenated and told apart by ``task``.

    (``tau/zero_scrolls`` is a loading-script repo that ``datasets`` >= 4 refuses.) The copy's
    ``context`` / ``question`` / ``answer_prefix`` are passed through; a record in tau's source
    form (``input`` + indices) is sliced the same way the copy was built: the document up to
    ``document_end_index``, the query up to ``query_end_index``, the rest (stripped) as prefix.
    """

    name: ClassVar[str] = "zeroscrolls"
    hub_id: ClassVar[str] = "simonjegou/zero_scrolls"
    all_subsets: ClassVar[tuple[str, ...]] = ZEROSCROLLS_TASKS

    def hub_location(self, subset: str) -> tuple[str | None, str]:
        return None, "test"

    def select_records(self, subset: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if str(r.get("task")) == subset]

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        if "context" in record and "question" in record:
            context, question = str(record["context"]), str(record["question"])
            prefix = str(record.get("answer_prefix") or "")
        else:
            context, question, prefix = _slice_source(subset, record)
        output = record.get("output")
        return [
            {
                "context": context,
                "question": question,
                "answer_prefix": prefix,
                # Test answers are not public (the copy stores "" / None): no references.
                "answers": [str(output)] if output else [],
                "task": subset,
                "max_new_tokens": ZEROSCROLLS_MAX_NEW_TOKENS[subset],
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


def _slice_source(subset: str, record: dict[str, Any]) -> tuple[str, str, str]:
    """(context, question, answer prefix) of a record in tau's source form."""
    try:
        text = str(record["input"])
        doc_end = int(record["document_end_index"])
        query_end = int(record["query_end_index"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"zeroscrolls/{subset}: record needs context/question/answer_prefix or "
            f"input/document_end_index/query_end_index, got keys {sorted(record)}"
        ) from None
    return text[:doc_end], text[doc_end:query_end], text[query_end:].strip()

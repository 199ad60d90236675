"""LongBench's evaluation protocol around the per-row metrics (THUDM ``eval.py``).

- trec, triviaqa, samsum and lsht score only the first line: ``pred.lstrip("\\n").split("\\n")[0]``
  (no other stripping; every other task scores the raw prediction).
- Each row scores the max over its references; a task reports ``round(100 * mean, 2)``.
- LongBench-E buckets rows by the ``length`` column (words): ``< 4000`` is "0-4k", ``< 8000``
  "4-8k", the rest "8k+", each reported as ``round(100 * mean, 2)``; an empty bucket is NaN, as
  ``np.mean([])`` gives there.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Tasks whose prediction is cut to its first line before scoring (``_e`` variants included).
FIRST_LINE_TASKS: frozenset[str] = frozenset({"trec", "triviaqa", "samsum", "lsht"})

#: LongBench-E bucket names, in report order.
E_BUCKETS: tuple[str, ...] = ("0-4k", "4-8k", "8k+")


def longbench_postprocess(task: str, prediction: str) -> str:
    """The prediction as ``eval.py`` scores it for ``task`` (``<task>_e`` uses the base task)."""
    base = task[:-2] if task.endswith("_e") else task
    if base in FIRST_LINE_TASKS:
        return prediction.lstrip("\n").split("\n")[0]
    return prediction


def longbench_percent(scores: Sequence[float]) -> float:
    """``round(100 * mean, 2)``; NaN for no scores (where ``eval.py`` would divide by zero)."""
    if len(scores) == 0:
        return math.nan
    return round(100 * sum(float(s) for s in scores) / len(scores), 2)


def longbench_e_bucket(length: float) -> str:
    """The LongBench-E bucket of a row of ``length`` words."""
    if isinstance(length, bool) or not isinstance(length, numbers.Real) or math.isnan(length):
        raise ValueError(f"LongBench-E length must be a number of words, got {length!r}")
    if length < 4000:
        return "0-4k"
    if length < 8000:
        return "4-8k"
    return "8k+"


def longbench_e_bucket_scores(
    scores: Sequence[float], lengths: Sequence[float]
) -> dict[str, float]:
    """``eval.scorer_e``: per-bucket ``round(100 * mean, 2)`` of per-row scores."""
    if len(scores) != len(lengths):
        raise ValueError(
            f"longbench_e_bucket_scores: {len(scores)} scores but {len(lengths)} lengths"
        )
    grouped: dict[str, list[float]] = {name: [] for name in E_BUCKETS}
    for score, length in zip(scores, lengths, strict=True):
        grouped[longbench_e_bucket(length)].append(float(score))
    return {name: longbench_percent(values) for name, values in grouped.items()}


def longbench_e_buckets(
    records: Iterable[Mapping[str, Any]], *, score_key: str = "score", length_key: str = "length"
) -> dict[str, float]:
    """LongBench-E buckets of scored records (each with a per-row score in [0, 1] and a length).

    Returns ``{"0-4k": x, "4-8k": y, "8k+": z}`` on the 0-100 scale, as ``eval.py --e``.
    """
    scores: list[float] = []
    lengths: list[float] = []
    for index, record in enumerate(records):
        for key in (score_key, length_key):
            if key not in record or record[key] is None:
                raise ValueError(
                    f"longbench_e_buckets: record {index} has no {key!r} (keys {sorted(record)})"
                )
        scores.append(float(record[score_key]))
        lengths.append(record[length_key])
    return longbench_e_bucket_scores(scores, lengths)

"""LongBench (Bai et al., 2023, "LongBench: A Bilingual, Multitask Benchmark for Long Context
Understanding"): 21 tasks plus the length-balanced ``_e`` variants, with the official metrics.

Rows come from the hub copy, whose ``context`` + ``question`` + ``answer_prefix`` is the
official prompt (the document part is the request's context, prefilled once). Metrics: QA-F1
(English / Chinese with jieba), ROUGE-L, classification, passage retrieval, passage count and
code similarity; TREC, TriviaQA, SAMSum and LSHT score only the first line of the prediction,
as the official evaluation does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.benchmarks.snapshot import is_snapshot
from sah_bench.scorers import (
    LONGBENCH_SCORERS,
    longbench_e_bucket_scores,
    longbench_percent,
    longbench_postprocess,
)


@dataclass(frozen=True)
class LongBenchTask:
    #: Official generation budget (THUDM ``config/dataset2maxlen.json``); the hub rows carry
    #: this + 20, which we do not use.
    max_new_tokens: int
    #: True for the five Chinese tasks, which the hub copy does not hold (local data only).
    chinese: bool = False


TASKS: dict[str, LongBenchTask] = {
    "narrativeqa": LongBenchTask(128),
    "qasper": LongBenchTask(128),
    "multifieldqa_en": LongBenchTask(64),
    "multifieldqa_zh": LongBenchTask(64, chinese=True),
    "hotpotqa": LongBenchTask(32),
    "2wikimqa": LongBenchTask(32),
    "musique": LongBenchTask(32),
    "dureader": LongBenchTask(128, chinese=True),
    "gov_report": LongBenchTask(512),
    "qmsum": LongBenchTask(512),
    "multi_news": LongBenchTask(512),
    "vcsum": LongBenchTask(512, chinese=True),
    "trec": LongBenchTask(64),
    "triviaqa": LongBenchTask(32),
    "samsum": LongBenchTask(128),
    "lsht": LongBenchTask(64, chinese=True),
    "passage_count": LongBenchTask(32),
    "passage_retrieval_en": LongBenchTask(32),
    "passage_retrieval_zh": LongBenchTask(32, chinese=True),
    "lcc": LongBenchTask(64),
    "repobench-p": LongBenchTask(64),
}

#: Row fields passed through to the scorer and the results (beyond the common schema).
PASSTHROUGH_FIELDS: tuple[str, ...] = ("dataset", "language", "_id")

#: The 13 tasks that have a length-balanced ``_e`` variant.
E_TASKS: tuple[str, ...] = (
    "qasper",
    "multifieldqa_en",
    "hotpotqa",
    "2wikimqa",
    "gov_report",
    "multi_news",
    "trec",
    "triviaqa",
    "samsum",
    "passage_count",
    "passage_retrieval_en",
    "lcc",
    "repobench-p",
)


def _length(record: dict[str, Any]) -> float:
    value = record.get("length")
    extra = record.get("extra")
    if value is None and isinstance(extra, dict):
        value = extra.get("length")
    if value is None:
        raise ValueError(
            "longbench: an _e record has no 'length' (word count), needed for the length buckets"
        )
    return float(value)


def _json_number(value: float) -> float | None:
    # eval.py's empty bucket is nan (np.mean of nothing); metrics.json stores null instead.
    return None if math.isnan(value) else value


def base_task(subset: str) -> str:
    return subset[:-2] if subset.endswith("_e") else subset


class LongBench(Benchmark):
    """LongBench's 21 tasks and 13 ``_e`` variants, from the hub copy ``Xnhyacinth/LongBench``.

    The hub copy (config = task, split ``test``) already holds the official prompt, split into
    ``context`` (instruction + document), ``question`` (the task's question template applied to
    THUDM's ``input``) and ``answer_prefix``; they are passed through unchanged. The five
    Chinese tasks are not on the hub: they load only from local data in that same schema.
    """

    name: ClassVar[str] = "longbench"
    hub_id: ClassVar[str] = "Xnhyacinth/LongBench"
    all_subsets: ClassVar[tuple[str, ...]] = (*TASKS, *(f"{t}_e" for t in E_TASKS))
    subset_field: ClassVar[str] = "dataset"

    @property
    def subsets(self) -> Sequence[str]:
        # The Chinese tasks only exist in local data: a run over the hub copy (or a snapshot
        # of it) without named subsets skips them rather than failing five cells.
        if self.data_path is not None and not is_snapshot(self.data_path):
            return list(self.all_subsets)
        return [s for s in self.all_subsets if not TASKS[base_task(s)].chinese]

    def record_subset(self, record: dict[str, Any]) -> str:
        return str(record.get("dataset", record.get("task")))

    def check_hub_subset(self, subset: str) -> None:
        if TASKS[base_task(subset)].chinese:
            english = [s for s in self.subsets if not TASKS[base_task(s)].chinese]
            raise ValueError(
                f"longbench: subset {subset!r} is a Chinese task, which the hub copy "
                f"{self.hub_id} does not hold; give it as local data (data_path, rows with "
                f"context/question/answer_prefix/answers) or pick one of {english}"
            )

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        if "question" not in record or "answer_prefix" not in record:
            raise ValueError(
                f"longbench/{subset}: record has no 'question'/'answer_prefix' (keys "
                f"{sorted(record)}); rows must follow the hub schema of {self.hub_id} "
                "(context and question hold the official prompt). THUDM's raw `input` "
                "format is not read: its prompt would have to be rebuilt"
            )
        task = TASKS[base_task(subset)]
        row: dict[str, Any] = {
            "context": record["context"],
            "question": record["question"],
            "answer_prefix": record["answer_prefix"],
            "answers": record["answers"],
            "task": subset,
            "max_new_tokens": task.max_new_tokens,
        }
        classes = record.get("all_classes")
        if classes is not None and len(classes) > 0:
            row["all_classes"] = [str(c) for c in classes]
        if record.get("length") is not None:
            row["length"] = int(record["length"])
        for name in PASSTHROUGH_FIELDS:
            if record.get(name) is not None:
                row[name] = str(record[name])
        return [row]

    def scorer(self, subset: str) -> Scorer:
        return LONGBENCH_SCORERS[base_task(subset)]

    def aggregate(self, subset: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Mean scores plus THUDM ``eval.py``'s report under ``official``: the task score × 100
        rounded to 2 decimals; for ``_e`` subsets, per length bucket (``length`` in words:
        < 4000, < 8000, the rest), each × 100 rounded (None for an empty bucket, where the
        official ``np.mean`` gives nan)."""
        metrics = super().aggregate(subset, records)
        kept = [r for r in records if not math.isnan(float(r["score"]))]
        scores = [float(r["score"]) for r in kept]
        official: dict[str, float | None] = {"score": _json_number(longbench_percent(scores))}
        if subset.endswith("_e"):
            buckets = longbench_e_bucket_scores(scores, [_length(r) for r in kept])
            official.update({name: _json_number(v) for name, v in buckets.items()})
        metrics["official"] = official
        return metrics

    def postprocess(self, subset: str, prediction: str) -> str:
        # eval.py: only trec/triviaqa/samsum/lsht are cut to their first line; nothing else is
        # stripped (the scorers normalise for themselves; code similarity keeps indentation).
        return longbench_postprocess(base_task(subset), prediction)

"""The search objective: fidelity of a sparse config on a small calibration set.

A trial answers the calibration requests (the synthetic suite or any benchmark subset, a few
requests) through the sparse config while ``sah_core``'s micro-metric logger records every
sparse attention call, and reduces the records to means over calls:

* ``density`` -- share of the attention entries attended;
* ``output_error`` -- ``||o - o_dense|| / ||o_dense||`` against dense attention on the same
  inputs;
* ``attention_mass_recall`` -- share of the dense softmax mass on the attended keys;
* ``accuracy`` -- the benchmark's own score of the answers (mean over questions).

The score (lower is better) is::

    error_weight * output_error + recall_weight * (1 - recall) + accuracy_weight * (1 - accuracy)
      + density_penalty * max(0, density - target)

with defaults ``1, 0, 0, 10``: the relative output error, plus a penalty when the measured
density overshoots the target. ``Objective.for_kind("accuracy")`` optimises task accuracy
instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: What an objective can be built around (``--objective``).
OBJECTIVE_KINDS: tuple[str, ...] = ("error", "recall", "accuracy")
#: Score given to a pruned (invalid) point: worse than any evaluated one, so the search
#: algorithm learns to avoid the region without ever running it.
INVALID_SCORE = 1000.0


@dataclass(frozen=True)
class Objective:
    """Weights of the score (see module doc); every weight >= 0, at least one term > 0."""

    error_weight: float = 1.0
    recall_weight: float = 0.0
    accuracy_weight: float = 0.0
    density_penalty: float = 10.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"objective {name}={value!r} is not allowed: use a number >= 0")
        if self.error_weight == self.recall_weight == self.accuracy_weight == 0:
            raise ValueError(
                "objective weights error=0, recall=0, accuracy=0 are not allowed: give at least "
                "one of them a weight > 0"
            )

    @classmethod
    def for_kind(cls, kind: str, density_penalty: float = 10.0) -> Objective:
        """``error`` (default), ``recall`` (1 - mass recall) or ``accuracy`` (1 - accuracy)."""
        weights = {
            "error": (1.0, 0.0, 0.0),
            "recall": (0.0, 1.0, 0.0),
            "accuracy": (0.0, 0.0, 1.0),
        }
        if kind not in weights:
            raise ValueError(f"objective {kind!r} is not allowed; use one of {list(weights)}")
        error, recall, accuracy = weights[kind]
        return cls(error, recall, accuracy, density_penalty)

    @property
    def micro_metrics(self) -> tuple[str, ...]:
        """The micro metrics the score needs (density always: the penalty reads it)."""
        names = ["density"]
        if self.error_weight > 0:
            names.append("output_error")
        if self.recall_weight > 0:
            names.append("attention_mass_recall")
        return tuple(names)

    def score(self, measured: Mapping[str, Any], target: float) -> float:
        """The score of ``measured`` (keys as in :class:`Measurement`) at ``target``."""

        def term(name: str) -> float:
            value = measured.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise ValueError(f"the calibration run measured no {name}: cannot score it")
            return float(value)

        total = self.density_penalty * max(0.0, term("density") - target)
        if self.error_weight > 0:
            total += self.error_weight * term("output_error")
        if self.recall_weight > 0:
            total += self.recall_weight * (1.0 - term("attention_mass_recall"))
        if self.accuracy_weight > 0:
            total += self.accuracy_weight * (1.0 - term("accuracy"))
        return total


@dataclass
class Measurement:
    """What one calibration run measured (means over attention calls / questions)."""

    density: float | None
    output_error: float | None
    attention_mass_recall: float | None
    accuracy: float | None
    n_requests: int
    n_questions: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(
    adapter: Any,
    bench: Any,
    subset: str,
    groups: Sequence[Any],
    metrics: Sequence[str],
    *,
    generation_kwargs: Mapping[str, Any] | None = None,
    request_kwargs: Mapping[str, Any] | None = None,
) -> Measurement:
    """Answer ``groups`` (request groups of ``bench``'s ``subset``) with ``adapter`` and
    reduce the micro metrics and scores of the answers."""
    from sah_bench.executor.micro_metrics import MicroMetricsCapture, summarize_micro_metrics
    from sah_bench.rows import row_extras

    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    scores: list[float] = []
    capture = MicroMetricsCapture(adapter, tuple(metrics))
    try:
        for group in groups:
            gen = dict(generation_kwargs or {})
            cap = gen.pop("max_new_tokens", None)
            budget = group.max_new_tokens if cap is None else min(int(cap), group.max_new_tokens)
            gen["max_new_tokens"] = budget
            capture.start()
            response = adapter.process_request(group.to_request(), gen, dict(request_kwargs or {}))
            records.extend(capture.stop())
            answers = response.response_list
            if len(answers) != len(group.rows):
                raise ValueError(
                    f"adapter returned {len(answers)} answer(s) for {len(group.rows)} question(s)"
                )
            for row, answer in zip(group.rows, answers, strict=True):
                scores.append(float(bench.score(subset, answer, row["answers"], **row_extras(row))))
    finally:
        capture.close()
    summary = summarize_micro_metrics(records)
    return Measurement(
        density=summary["density"],
        output_error=summary["output_error"],
        attention_mass_recall=summary["attention_mass_recall"],
        accuracy=sum(scores) / len(scores) if scores else None,
        n_requests=len(groups),
        n_questions=len(scores),
        seconds=time.perf_counter() - started,
    )

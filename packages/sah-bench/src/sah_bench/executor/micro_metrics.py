"""Collecting an adapter's micro metrics (per-layer attention density) for each request.

Two sources, tried in order after each request:

1. the adapter's ``last_request_micro_metrics`` attribute (a list of dicts), for adapters that
   gather their own;
2. ``sah_core``'s :class:`~sah_core.metrics.MicroMetricLogger`, activated around the request
   (a context variable, so only this request's attention calls are recorded) writing to a
   scratch folder whose lines are read back. It is used only when ``sah_core`` is already
   imported (a real adapter imports it), so fake adapters never pay for torch.

Records look like ``{"layer_idx": 3, "density": 0.06, ...}``; the older
``{"metric": "..._density", "value": 0.06, "layer_idx": 3}`` form is read too.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import sys
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Fidelity metrics the executor asks ``sah_core`` for by default (density is cheap; output
#: error and attention-mass recall each recompute dense attention).
DEFAULT_MICRO_METRICS: tuple[str, ...] = ("density",)
MICRO_METRICS: tuple[str, ...] = ("density", "output_error", "attention_mass_recall")
_ALIASES = {"mass_recall": "attention_mass_recall"}


def check_micro_metrics(names: Any) -> tuple[str, ...]:
    """The metric names in canonical form (``mass_recall`` -> ``attention_mass_recall``),
    without repeats; anything else -> ValueError naming it and the allowed names."""
    if isinstance(names, str) or not isinstance(names, list | tuple):
        raise ValueError(f"metrics={names!r} must be a list, e.g. ['density', 'output_error']")
    out: list[str] = []
    for name in names:
        canonical = _ALIASES.get(name, name) if isinstance(name, str) else name
        if canonical not in MICRO_METRICS:
            raise ValueError(
                f"metric {name!r} is not allowed; use any of {[*MICRO_METRICS, *sorted(_ALIASES)]}"
            )
        if canonical not in out:
            out.append(canonical)
    return tuple(out)


class MicroMetricsCapture:
    """Brackets one request and returns the micro-metric records it produced."""

    def __init__(self, adapter: Any, metrics: tuple[str, ...] = DEFAULT_MICRO_METRICS) -> None:
        self.adapter = adapter
        self.metrics = tuple(metrics)
        self._scratch: Path | None = None
        self._active: AbstractContextManager[Any] | None = None

    def start(self) -> None:
        if hasattr(self.adapter, "last_request_micro_metrics"):
            return
        if "sah_core" not in sys.modules or not self.metrics:
            return
        from sah_core.metrics import MicroMetricLogger

        self._scratch = Path(tempfile.mkdtemp(prefix="sah-micro-"))
        self._active = MicroMetricLogger(self._scratch, metrics=self.metrics)
        self._active.__enter__()

    def stop(self) -> list[dict[str, Any]]:
        own = getattr(self.adapter, "last_request_micro_metrics", None)
        if isinstance(own, list):
            return [dict(r) for r in own]
        if self._active is None or self._scratch is None:
            return []
        self._active.__exit__(None, None, None)
        self._active = None
        records: list[dict[str, Any]] = []
        for path in sorted(self._scratch.glob("*.jsonl")):
            with path.open(encoding="utf-8") as fh:
                records.extend(json.loads(line) for line in fh if line.strip())
        shutil.rmtree(self._scratch, ignore_errors=True)
        self._scratch = None
        return records

    def close(self) -> None:
        if self._active is not None:
            self._active.__exit__(None, None, None)
            self._active = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def _metric_value(record: dict[str, Any], metric: str) -> float | None:
    if record.get(metric) is not None:
        return float(record[metric])
    name = str(record.get("metric", record.get("name", "")))
    if metric in name and record.get("value") is not None:
        return float(record["value"])
    return None


def _layer(record: dict[str, Any]) -> int | None:
    layer = record.get("layer_idx")
    if layer is None and isinstance(record.get("metadata"), dict):
        layer = record["metadata"].get("layer_idx")
    return None if layer is None else int(layer)


def summarize_micro_metrics(
    records: list[dict[str, Any]], *, dense: bool = False
) -> dict[str, Any]:
    """Mean density overall and per layer (plus output error / recall when recorded).

    Without density records, a dense config reports density 1.0 (every key attended) and a
    sparse one None (unmeasured).
    """
    out: dict[str, Any] = {}
    for metric in ("density", "output_error", "attention_mass_recall"):
        per_layer: dict[int, list[float]] = {}
        values: list[float] = []
        for record in records:
            value = _metric_value(record, metric)
            if value is None:
                continue
            values.append(value)
            layer = _layer(record)
            if layer is not None:
                per_layer.setdefault(layer, []).append(value)
        out[metric] = statistics.fmean(values) if values else None
        out[f"per_layer_{metric}"] = {
            str(layer): statistics.fmean(v) for layer, v in sorted(per_layer.items())
        }
    if out["density"] is None and dense:
        out["density"] = 1.0
    return out

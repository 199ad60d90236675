"""Per-layer fidelity metrics of sparse attention, written to ``micro_metrics.jsonl``.

Off by default: ``ResearchAttention`` only asks :meth:`MicroMetricLogger.active`, a context
variable lookup, so there is no overhead while no logger is active. When a logger is active
each recorded call appends one JSON line::

    {"layer_idx": 3, "call": 17, "shape": [B, Hq, Q, K], "mask": "index",
     "backend": "reference/gather",
     "density": 0.06, "output_error": 0.012, "attention_mass_recall": 0.97, ...extra}

* ``density`` -- share of the (query, key) pairs the attention mask allows that are attended:
  a causal prefill counts only its causal half, padding keys are not counted (a stack without
  maskers runs with a full mask: 1.0; an empty final mask attends nothing: 0.0); without an
  attention mask, of all ``[B, Hq, Q, K]`` entries. ``density_qk`` is the share of all
  ``[B, Hq, Q, K]`` entries (the value ``density`` had before 0.3);
* ``backend`` -- the attention backend that ran (``"reference/gather"``, ``"triton"``, ...);
* ``output_error`` -- ``||o - o_dense|| / ||o_dense||`` against dense attention on the same
  inputs (same attention mask and sink logits);
* ``attention_mass_recall`` -- mean over rows of the share of the dense softmax mass (over
  keys) that falls on keys the mask attends.

Use it per request/cell as a context manager (``with MicroMetricLogger(dir): ...``; nested
and per-thread/async-task safe through ``contextvars``) or process-wide with
``MicroMetricLogger.enable(dir)`` / ``MicroMetricLogger.disable()``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import random
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import numpy as np
import torch

from sah_core.attention.common import grouped_scores, masked_keys, plan_chunk_rows
from sah_core.attention.dense import dense_attention
from sah_core.attention.softmax import softmax_with_sink
from sah_core.mask import Mask

logger = logging.getLogger(__name__)

METRICS_FILENAME = "micro_metrics.jsonl"
ALL_METRICS = ("density", "output_error", "attention_mass_recall")

_current: contextvars.ContextVar[MicroMetricLogger | None] = contextvars.ContextVar(
    "sah_micro_metric_logger", default=None
)
_process_wide: MicroMetricLogger | None = None


class MicroMetricLogger:
    """Writes per-layer, per-call fidelity metrics (see module doc).

    ``max_records`` caps the lines written (None = no cap); ``sampling_factor`` in (0, 1] is
    the share of calls recorded (drawn from a private RNG seeded with ``seed``); ``metrics``
    picks a subset of :data:`ALL_METRICS`; ``extra`` is merged into every line (e.g. the
    benchmark cell).
    """

    def __init__(
        self,
        path_dir: str | Path,
        *,
        max_records: int | None = None,
        sampling_factor: float = 1.0,
        metrics: tuple[str, ...] | list[str] = ALL_METRICS,
        extra: dict[str, Any] | None = None,
        seed: int = 0,
        filename: str = METRICS_FILENAME,
    ) -> None:
        if max_records is not None and (
            isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 0
        ):
            raise ValueError(f"max_records={max_records!r} is not allowed: use an int >= 0 or None")
        if isinstance(sampling_factor, bool) or not (0.0 < float(sampling_factor) <= 1.0):
            raise ValueError(
                f"sampling_factor={sampling_factor!r} is not allowed: use a number in (0, 1]"
            )
        unknown = sorted(set(metrics) - set(ALL_METRICS))
        if unknown:
            raise ValueError(f"metrics={unknown} are not allowed: choose from {list(ALL_METRICS)}")
        self.path_dir = Path(path_dir)
        self.path = self.path_dir / filename
        self.max_records = max_records
        self.sampling_factor = float(sampling_factor)
        self.metrics = tuple(metrics)
        self.extra = dict(extra or {})
        self.records_written = 0
        self._rng = random.Random(seed)
        self._calls: dict[Any, int] = {}
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._tokens: list[contextvars.Token[MicroMetricLogger | None]] = []

    # ------------------------------------------------------------------ activation
    @staticmethod
    def active() -> MicroMetricLogger | None:
        """The logger in effect here (context first, then process-wide), or None."""
        return _current.get() or _process_wide

    @classmethod
    def enable(cls, path_dir: str | Path, **options: Any) -> MicroMetricLogger:
        """Start a process-wide logger (replacing any previous one) and return it."""
        global _process_wide
        cls.disable()
        _process_wide = cls(path_dir, **options)
        return _process_wide

    @classmethod
    def disable(cls) -> None:
        """Stop and close the process-wide logger, if any."""
        global _process_wide
        if _process_wide is not None:
            _process_wide.close()
            _process_wide = None

    @classmethod
    def is_enabled(cls) -> bool:
        return cls.active() is not None

    def __enter__(self) -> Self:
        self._tokens.append(_current.set(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _current.reset(self._tokens.pop())
        self.close()

    # ------------------------------------------------------------------ writing
    def should_record(self) -> bool:
        """Whether the next call is recorded (caps and sampling)."""
        if self.max_records is not None and self.records_written >= self.max_records:
            return False
        return self.sampling_factor >= 1.0 or self._rng.random() < self.sampling_factor

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line (``extra`` merged in)."""
        line = json.dumps({**self.extra, **record}, sort_keys=True)
        with self._lock:
            if self.max_records is not None and self.records_written >= self.max_records:
                return
            if self._file is None:
                self.path_dir.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()
            self.records_written += 1

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    @torch.no_grad()
    def record_attention(
        self,
        layer_idx: int | None,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: Mask,
        output: torch.Tensor,
        *,
        scaling: float,
        attention_mask: torch.Tensor | None = None,
        s_aux: torch.Tensor | None = None,
        query_chunk_size: int | None = None,
        backend: str | None = None,
    ) -> dict[str, Any]:
        """Compute the metrics of one attention call (``output`` is ``[B, Hq, Q, D]``) and
        log them; returns the record. ``backend`` names the attention backend that ran."""
        call = self._calls.get(layer_idx, 0)
        self._calls[layer_idx] = call + 1
        record: dict[str, Any] = {
            "layer_idx": layer_idx,
            "call": call,
            "shape": list(mask.shape),
            "mask": mask.representation,
            "backend": backend,
            "time": time.time(),
        }
        if "density" in self.metrics:
            record["density"], record["density_qk"] = densities(
                mask, attention_mask, query_chunk_size
            )
        if "output_error" in self.metrics:
            record["output_error"] = relative_output_error(
                output, queries, keys, values, scaling, attention_mask, s_aux, query_chunk_size
            )
        if "attention_mass_recall" in self.metrics:
            record["attention_mass_recall"] = attention_mass_recall(
                mask, queries, keys, scaling, attention_mask, query_chunk_size
            )
        self.log(record)
        return record


def densities(
    mask: Mask, attention_mask: torch.Tensor | None, query_chunk_size: int | None = None
) -> tuple[float, float]:
    """``(allowed_pair_density, mask.get_density())``; for an index mask on the CPU with an
    fp32 (or no) attention mask both come from one pass over the entries (a decode step's
    handful of torch reductions cost more than the step's attention)."""
    counts = _index_counts(mask, attention_mask)
    if counts is None:
        return allowed_pair_density(mask, attention_mask, query_chunk_size), mask.get_density()
    attended, hits, total = counts
    qk = attended / mask.numel()
    if attention_mask is None:
        return qk, qk
    return (hits / total if total else 0.0), qk


def _index_counts(mask: Mask, attention_mask: torch.Tensor | None) -> tuple[int, int, int] | None:
    """``(attended entries, attended entries the attention mask allows, allowed pairs)`` of
    an index mask, by the numba kernels; None when they do not apply (other kinds or
    devices, a bool or low-precision attention mask)."""
    if mask.representation != "index" or mask.numel() == 0 or mask.device.type != "cpu":
        return None
    if attention_mask is not None and (
        attention_mask.dtype != torch.float32 or attention_mask.device.type != "cpu"
    ):
        return None
    from sah_core.metrics._density_numba import allowed_pairs, index_hits

    indices, weights = mask.index_view()
    b, hq, q, k = mask.shape
    threshold = np.float32(torch.finfo(torch.float32).min / 2)
    total = 0
    bias = _NO_MASK
    if attention_mask is not None:
        cut = attention_mask[..., :k].detach()
        total = allowed_pairs(cut.numpy(), threshold) * (b // cut.shape[0]) * (hq // cut.shape[1])
        bias = cut.expand(b, hq, q, k).numpy()
    attended, hits = index_hits(
        indices.numpy(),
        _NO_WEIGHTS if weights is None else weights.detach().float().numpy(),
        weights is not None,
        bias,
        attention_mask is not None,
        threshold,
    )
    return int(attended), int(hits), int(total)


_NO_MASK = np.zeros((1, 1, 1, 1), np.float32)
_NO_WEIGHTS = np.zeros((1, 1, 1, 1), np.float32)


def allowed_pair_density(
    mask: Mask, attention_mask: torch.Tensor | None, query_chunk_size: int | None = None
) -> float:
    """Share of the (query, key) pairs the attention mask allows (the causal part of a
    prefill, minus padding) that ``mask`` attends; without an attention mask, of all
    ``B*Hq*Q*K`` entries. A full mask gives 1.0, an empty one 0.0."""
    if attention_mask is None:
        return mask.get_density()
    kind = mask.representation
    if kind == "empty" or mask.numel() == 0:
        return 0.0
    b, hq, q, k = mask.shape
    allowed = ~masked_keys(attention_mask[..., :k])  # [B|1, 1|Hq, Q, K]
    total = int(allowed.sum()) * (b // allowed.shape[0]) * (hq // allowed.shape[1])
    if total == 0:
        return 0.0
    if kind == "full":
        return 1.0
    if kind == "index":
        indices, weights = mask.index_view()
        hit = indices >= 0
        if weights is not None:
            hit &= weights > 0
        full_rows = allowed.expand(b, hq, q, k)
        hit &= full_rows.gather(-1, indices.clamp(min=0))
        return int(hit.sum()) / total
    attended = 0
    chunk = plan_chunk_rows(query_chunk_size, b * hq * k)
    for start in range(0, q, chunk):
        end = min(q, start + chunk)
        part = mask.query_slice(start, end).get_dense_mask() > 0
        attended += int((part & allowed[:, :, start:end]).sum())
    return attended / total


def relative_output_error(
    output: torch.Tensor,
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    scaling: float,
    attention_mask: torch.Tensor | None,
    s_aux: torch.Tensor | None,
    query_chunk_size: int | None = None,
) -> float:
    """``||output - dense|| / ||dense||`` (Frobenius, fp32) against dense attention."""
    dense = dense_attention(
        queries,
        keys,
        values,
        scaling=scaling,
        attention_mask=attention_mask,
        s_aux=s_aux,
        query_chunk_size=query_chunk_size,
        use_sdpa=False,
    ).float()
    denom = float(torch.linalg.vector_norm(dense))
    diff = float(torch.linalg.vector_norm(output.float() - dense))
    return diff / denom if denom > 0 else diff


def attention_mass_recall(
    mask: Mask,
    queries: torch.Tensor,
    keys: torch.Tensor,
    scaling: float,
    attention_mask: torch.Tensor | None,
    query_chunk_size: int | None = None,
) -> float:
    """Mean over rows of the dense softmax mass on attended keys (full mask -> 1, empty
    mask -> 0: nothing attended)."""
    if mask.representation == "full":
        return 1.0
    if mask.representation == "empty":
        return 0.0
    b, hq, q, k = mask.shape
    chunk = plan_chunk_rows(query_chunk_size, b * hq * k)
    total = 0.0
    rows = 0
    for start in range(0, q, chunk):
        end = min(q, start + chunk)
        logits = grouped_scores(queries[:, :, start:end], keys, scaling).float()
        if attention_mask is not None:
            logits.add_(attention_mask[:, :, start:end].float())
        probs = softmax_with_sink(logits, None)
        kept = mask.query_slice(start, end).get_dense_mask() > 0
        per_row = (probs * kept).sum(-1)
        has_keys = probs.sum(-1) > 0
        total += float(per_row[has_keys].sum())
        rows += int(has_keys.sum())
    return total / rows if rows else 1.0

"""Row top-k on the CPU: a sampled threshold, one filtering pass, a quickselect on the rest.

``torch.topk`` on the CPU runs ``nth_element`` over (value, index) pairs of the whole row,
about 5 ns per element plus ~1 µs per row on the 2-core machine; the exact top-k maskers at
prefill call it on every causal score row, where it costs about twice the dense attention.
The selection needs far less: a threshold ``t`` from an evenly strided sample of the row
(a little below the sample's share of the top ``k``), one pass keeping the entries ``>= t``
(typically 10-20 % of the row), and a quickselect for the ``k``-th largest of those. When
fewer than ``k`` entries pass, the row is selected from all its entries instead, so the
result never depends on the sample: it is exactly the top ``k`` of each row, ties toward the
lower index (NaN ranks highest, as in ``torch.topk``).

Compiled with numba (``cache=True``: the first call in a fresh environment compiles for a
few seconds, later processes load the cached machine code). :func:`row_top_k` falls back to
``torch.topk`` where the kernel does not apply (not fp32 on the CPU, small problems).
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

import torch

#: Problems smaller than this (rows x columns) go to ``torch.topk``: the kernel's fixed
#: cost (a parallel region) is larger than the saving there.
MIN_ELEMENTS = 1 << 16
# numba's workqueue threading layer (fork-safe, no second OpenMP runtime next to torch's)
# must not be entered by two threads at once: a call that finds it busy uses torch.topk.
_BUSY = threading.Lock()


@functools.lru_cache(maxsize=1)
def _kernel() -> Any:
    """The numba kernel (compiled, or loaded from numba's cache, on first use)."""
    os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
    from sah_core.attention import _cpu_top_k_numba

    return _cpu_top_k_numba.top_k_rows


def kernel_applies(scores: torch.Tensor, k: int) -> bool:
    """True when :func:`row_top_k` runs the kernel for these inputs (else ``torch.topk``)."""
    return (
        scores.device.type == "cpu"
        and scores.dtype == torch.float32
        and not scores.requires_grad
        and scores.dim() >= 1
        and k > 0
        and 8 * k <= scores.shape[-1]  # a dense selection: torch's nth_element is faster
        and scores.numel() >= MIN_ELEMENTS
        and scores.stride(-1) == 1
    )


def row_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` of the ``k`` largest entries of each row of ``scores [..., L]``,
    like ``scores.topk(k, dim=-1, sorted=False)`` (the same value set; ties go to the lower
    index; the order within a row is unspecified). ``scores`` is only read."""
    if not kernel_applies(scores, k):
        values, indices = scores.topk(k, dim=-1, sorted=False)
        return values, indices
    lead = scores.shape[:-1]
    length = scores.shape[-1]
    flat = scores.reshape(-1, length)  # a view for a last-dim slice of a contiguous buffer
    rows = flat.shape[0]
    values = torch.empty((rows, k), dtype=torch.float32)
    indices = torch.empty((rows, k), dtype=torch.int64)
    threads = max(1, torch.get_num_threads())
    blocks = min(rows, 8 * threads)
    kernel = _kernel()
    if not _BUSY.acquire(blocking=False):
        values, indices = scores.topk(k, dim=-1, sorted=False)
        return values, indices
    try:
        _set_threads(threads)
        kernel(flat.numpy(), k, blocks, values.numpy(), indices.numpy())
    finally:
        _BUSY.release()
    return values.view(*lead, k), indices.view(*lead, k)


def _set_threads(threads: int) -> None:
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]

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
few seconds, later processes load the cached machine code). Every fp32 CPU selection uses it,
so one tie rule holds whatever the batch; :func:`row_top_k` is ``torch.topk`` elsewhere (CUDA,
other dtypes).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from sah_core.attention.numba_threads import (
    PARALLEL_MIN_ELEMENTS,
    choose_threading_layer,
    parallel_section,
)


@functools.lru_cache(maxsize=1)
def _kernels() -> tuple[Any, Any]:
    """The numba kernels, parallel and serial (compiled, or loaded from numba's cache, on
    first use)."""
    choose_threading_layer()
    from sah_core.attention import _cpu_top_k_numba

    return _cpu_top_k_numba.top_k_rows, _cpu_top_k_numba.top_k_rows_serial


def kernel_applies(scores: torch.Tensor, k: int) -> bool:
    """True when :func:`row_top_k` runs the kernel for these inputs (else ``torch.topk``).

    Every fp32 CPU selection of ``0 < k < L`` runs it, whatever the batch or row size: the
    choice between two tie-breaking rules must not depend on how rows are batched (a batch
    with padding and one row alone have to pick the same keys)."""
    return (
        scores.device.type == "cpu"
        and scores.dtype == torch.float32
        and not scores.requires_grad
        and scores.dim() >= 1
        and 0 < k < scores.shape[-1]
    )


def row_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` of the ``k`` largest entries of each row of ``scores [..., L]``,
    like ``scores.topk(k, dim=-1, sorted=False)`` (the same value set; ties go to the lower
    index; the order within a row is unspecified). ``scores`` is only read."""
    if not kernel_applies(scores, k):
        values, indices = scores.topk(k, dim=-1, sorted=False)
        return values, indices
    lead, length = scores.shape[:-1], scores.shape[-1]
    values = torch.empty((*lead, k), dtype=torch.float32)
    indices = torch.empty((*lead, k), dtype=torch.int64)
    _run(scores.reshape(1, -1, length), k, values.view(1, -1, k), indices.view(1, -1, k), 0, None)
    return values, indices


def row_top_k_into(
    scores: torch.Tensor,
    k: int,
    values: torch.Tensor,
    indices: torch.Tensor,
    offset: int,
    forbidden_below: float,
    lead: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> None:
    """:func:`row_top_k` of ``scores [G, R, L]`` written into the (strided) views
    ``values`` / ``indices`` ``[G, R, k]``, with ``offset`` added to the indices and a pick
    ``<= forbidden_below`` written as index -1, value -inf (the prefill's masked keys):
    the kernel writes its results in place, with no temporaries or copies.

    ``lead = (source [G, R, S], lead_values, lead_indices [G, R, P])``: also
    ``lead_indices[..., c] = c`` and ``lead_values[..., c] = source[..., c]`` (``-inf`` for
    ``c >= S``), the entries of a sink ``[0, P)`` laid out before the picks."""
    if kernel_applies(scores, k):
        _run(scores, k, values, indices, offset, forbidden_below, lead)
        return
    picked, idx = scores.topk(k, dim=-1, sorted=False)
    bad = picked <= forbidden_below
    values.copy_(picked.masked_fill_(bad, float("-inf")))
    if offset:
        idx.add_(offset)
    indices.copy_(idx.masked_fill_(bad, -1))
    if lead is not None:
        copy_lead(*lead)


def copy_lead(source: torch.Tensor, lead_values: torch.Tensor, lead_indices: torch.Tensor) -> None:
    """The ``lead`` part of :func:`row_top_k_into` with torch ops."""
    width, available = lead_values.shape[-1], min(lead_values.shape[-1], source.shape[-1])
    lead_indices.copy_(torch.arange(width, device=lead_indices.device))
    lead_values[..., :available] = source[..., :available]
    lead_values[..., available:] = float("-inf")


_NO_LEAD = np.zeros((1, 1, 1), np.float32), np.zeros((1, 1, 1), np.int64)


def _run(
    scores: torch.Tensor,
    k: int,
    values: torch.Tensor,
    indices: torch.Tensor,
    offset: int,
    forbidden_below: float | None,
    lead: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> None:
    """One kernel call on 3-D views (``forbidden_below`` None: no pick is marked)."""
    if scores.stride(-1) != 1:
        scores = scores.contiguous()
    forbidden = np.float32("nan" if forbidden_below is None else forbidden_below)
    if lead is None:
        extra: tuple[Any, ...] = (0, _NO_LEAD[0], _NO_LEAD[0], _NO_LEAD[1])
    else:
        source, lead_values, lead_indices = lead
        extra = (
            lead_values.shape[-1],
            source.numpy(),
            lead_values.numpy(),
            lead_indices.numpy(),
        )
    arguments = (values.numpy(), indices.numpy(), offset, forbidden, *extra)
    rows = scores.shape[0] * scores.shape[1]
    parallel, serial = _kernels()
    if rows * scores.shape[2] < PARALLEL_MIN_ELEMENTS:
        serial(scores.numpy(), k, 1, *arguments)
        return
    with parallel_section() as threads:
        parallel(scores.numpy(), k, min(rows, 8 * threads), *arguments)

"""Where an additive attention mask bites, per query row, in one pass (prefill chunks).

A causal prefill cut into query chunks needs, per chunk, the last key column any row may
attend (keys beyond it are skipped: the future part) and the first column the mask touches at
all (the mask is added from there only: the diagonal block). Two torch reductions per chunk
read the chunk's whole mask twice and wait on the host each time; this numba kernel reads
the call's mask once and gives both for every row (fp32 CPU masks; others keep the torch
reductions).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch


@functools.lru_cache(maxsize=1)
def _kernel() -> Any:
    from sah_core.attention._mask_bounds_numba import mask_row_bounds

    return mask_row_bounds


def mask_row_bounds(mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """``(first, last)`` int64 ``[Q]`` of an additive mask ``[B, H, Q, K]``: per query row,
    the first column any (batch, head) row is nonzero (``K``: none) and the last column any
    may attend (above ``finfo.min / 2``; -1: none). None when the mask is not an fp32 CPU
    tensor (then the caller reduces per chunk)."""
    if mask.device.type != "cpu" or mask.dtype != torch.float32 or mask.dim() != 4:
        return None
    rows = mask.shape[2]
    first = np.empty(rows, np.int64)
    last = np.empty(rows, np.int64)
    forbidden_below = np.float32(torch.finfo(torch.float32).min / 2)
    _kernel()(mask.detach().numpy(), forbidden_below, first, last)
    return first, last

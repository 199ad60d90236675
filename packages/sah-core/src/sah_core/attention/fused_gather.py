"""The gather strategy of the torch reference as one CPU kernel call (decode-sized calls).

The torch formulation of index attention with few query rows is about a dozen ops (clamp
the indices, flat row numbers, two row gathers, two small matmuls, the importance bias,
the attention-mask gather, the softmax); on the CPU each costs a dispatch of several
microseconds, more than the arithmetic at decode. This kernel reads each selected key and
value row once, straight from the cache, and computes the same softmax: logit
``scaling * q . k_j - log(w_j) + attention_mask[j]``, fp32, an optional sink logit per head,
0 for a row that attends nothing, NaN kept.

It runs for fp32 CPU tensors without autograd or dropout, when one (batch row, head) has at
most :data:`FUSED_MAX_ROW_WORK` multiply-adds (decode and short question prefills), and for
any size when the logits of the entries are given (a prefill after an exact top-k: only the
value rows are read, ``FUSED_LOGITS_MAX_DENSITY`` decides against a dense ``p @ V``). The
conditions do not depend on the batch size, so a row alone and the same row in a batch take
the same code; large calls split their query rows over torch's threads, each row computed
as in the serial kernel. Everything else takes the torch ops (``index_form``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from sah_core.attention.numba_threads import choose_threading_layer, parallel_section

#: Largest ``query rows * index width * head dim`` per (batch row, head) the kernel takes.
FUSED_MAX_ROW_WORK = 1 << 20
#: With given logits, the largest ``index width / key length`` the kernel takes: above it a
#: dense ``p @ V`` over the scattered probabilities (one BLAS matmul) is cheaper than
#: gathering the value rows one by one.
FUSED_LOGITS_MAX_DENSITY = 1 / 8
#: Without the entries' logits or a masker's scores, the largest ``index width / key length``
#: at which ``index_form`` prefers the kernel to a dense chunk (``q . k`` and ``p @ V`` over
#: every key): 2x faster at 12 %, about even at 25 % (benchmarks/index_attention_paths.py).
FUSED_KEYS_MAX_DENSITY = 1 / 5
#: Below this ``query rows * index width * head dim`` the kernel runs on the calling thread.
#: A decode step's call sits between the model's matmuls, and waking numba's threads for it
#: cost more than they saved (the demo's decode, 54 rows x ~330 entries: 3.2 ms per layer
#: call with the parallel kernel, 2.9 ms without); question prefills are 10x larger.
FUSED_PARALLEL_MIN_WORK = 1 << 22

_PLACEHOLDER_F = np.zeros((1, 1, 1, 1), np.float32)
_PLACEHOLDER_SINK = np.zeros(1, np.float32)


@functools.lru_cache(maxsize=1)
def _kernels() -> tuple[Any, Any]:
    """The serial and the parallel kernel (compiled, or loaded from numba's cache)."""
    choose_threading_layer()
    from sah_core.attention import _fused_gather_numba

    return _fused_gather_numba.fused_gather_attention, (
        _fused_gather_numba.fused_gather_attention_parallel
    )


def fused_gather_applies(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    dropout: float,
    with_logits: bool = False,
) -> bool:
    """True when :func:`fused_gather_attention` runs this call (see module doc);
    ``with_logits``: the entries' logits are given (``slot_logits``)."""
    width = indices.shape[-1]
    small = queries.shape[2] * width * queries.shape[-1] <= FUSED_MAX_ROW_WORK
    sparse_enough = with_logits and width <= FUSED_LOGITS_MAX_DENSITY * keys.shape[2]
    return (
        (small or sparse_enough)
        and dropout <= 0.0
        and queries.device.type == "cpu"
        and queries.dtype == keys.dtype == values.dtype == torch.float32
        and indices.dtype == torch.int64
        and not (queries.requires_grad or keys.requires_grad or values.requires_grad)
    )


def _array(tensor: torch.Tensor | None, dtype: torch.dtype = torch.float32) -> Any:
    if tensor is None:
        return _PLACEHOLDER_F
    if tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return tensor.detach().numpy()


def fused_gather_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    scaling: float,
    attention_mask: torch.Tensor | None = None,
    s_aux: torch.Tensor | None = None,
    scores: torch.Tensor | None = None,
    slot_logits: torch.Tensor | None = None,
    dense_prefix: int = 0,
) -> torch.Tensor:
    """Index attention ``[B, Hq, Q, Dv]`` (inputs as in
    :func:`~sah_core.attention.index_form.index_attention`); ``scores`` (``[B, Hq, Q, K']``,
    every index below ``K'``) are the ``scaling * q . k`` a masker computed, read instead of
    the keys; ``slot_logits`` (``[B, Hq, Q, L]``) the logits of every index entry with the
    attention mask added, read instead of keys and mask. ``dense_prefix`` (with
    ``slot_logits``; finite values): the first ``dense_prefix`` entries of every row are the
    keys ``0, 1, ...`` (a sink), whose share of the output is one BLAS ``p @ V`` instead of
    gathered rows."""
    b, hq, q, _ = queries.shape
    out = torch.empty((b, hq, q, values.shape[-1]), dtype=torch.float32)
    if out.numel() == 0:
        return out
    bias = None
    if attention_mask is not None and slot_logits is None:
        bias = attention_mask.expand(b, hq, q, keys.shape[2])
    flags = np.array(
        [
            weights is not None,
            bias is not None,
            scores is not None,
            slot_logits is not None,
            s_aux is not None,
        ],
        np.bool_,
    )
    sink = _PLACEHOLDER_SINK if s_aux is None else _array(s_aux.reshape(-1))
    from sah_core.attention.index_form import kv_cache_rows  # (index_form imports this module)

    keys_rows, key_pitch = kv_cache_rows(keys)
    values_rows, value_pitch = kv_cache_rows(values)
    arguments: tuple[Any, ...] = (
        queries.contiguous().numpy(),
        keys_rows.numpy(),
        values_rows.numpy(),
        keys.shape[1],
        key_pitch,
        value_pitch,
        indices.contiguous().numpy(),
        _array(weights),
        _array(bias),
        _array(scores),
        _array(slot_logits),
        sink,
        np.float32(scaling),
        flags,
        out.numpy(),
    )
    prefix_probs = None
    if dense_prefix:
        prefix_probs = torch.empty((b, hq, q, dense_prefix), dtype=torch.float32)
    arguments += (dense_prefix, _array(prefix_probs))
    serial, parallel = _kernels()
    rows = b * hq * q
    if rows * indices.shape[-1] * values.shape[-1] < FUSED_PARALLEL_MIN_WORK or rows < 2:
        serial(*arguments)
    else:
        with parallel_section() as threads:
            parallel(*arguments, min(rows, 8 * threads))
    if prefix_probs is not None:
        hkv = values.shape[1]
        grouped = prefix_probs.view(b, hkv, (hq // hkv) * q, dense_prefix)
        shared = torch.matmul(grouped, values[:, :, :dense_prefix])
        out.add_(shared.view(b, hq, q, values.shape[-1]))
    return out

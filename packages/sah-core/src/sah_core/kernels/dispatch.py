"""Per-call choice between the Triton kernels and the torch references.

``backend="auto"`` (the default) runs Triton when the tensors are on CUDA and Triton is
importable, and the reference otherwise; ``SAH_FORCE_REFERENCE_KERNELS=1`` forces the reference
for "auto" calls (useful to rule a kernel out when debugging). ``backend="triton"`` insists on
the kernel (it also runs CPU tensors under ``TRITON_INTERPRET=1``, which is how the tests
exercise it); ``backend="reference"`` insists on the reference.

Integration contract for index-form masks (what ``ResearchAttention`` hands over): a ``Mask`` in
index form gives ``indices`` int64 ``[B, Hq, Q, L]`` (or ``[B, Hkv, Q, L]`` for a selection
shared by a KV head group), padded with -1, and ``weights`` ``[B, Hq, Q, L]`` holding the
keep-probability ``p`` of each entry (0 at padding). Call::

    out = sparse_decode_attention(queries, keys, values, indices, weights, scaling, sinks)

with ``queries [B, Hq, Q, D]``, ``keys``/``values`` ``[B, Hkv, K, D]`` (not repeated for GQA)
and optional ``sinks [Hq]``; ``out`` is ``[B, Hq, Q, D]`` in the query dtype.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch

from sah_core.kernels._triton_support import (
    FORCE_REFERENCE_ENV,
    INTERPRET_ENV,
    reference_forced,
    triton_can_run_on,
    triton_installed,
)
from sah_core.kernels._validation import (
    check_index_mask,
    check_indices_in_range,
    check_qkv,
    check_sinks,
)
from sah_core.kernels.block_layout import (
    causal_block_mask,
    check_block_columns,
    check_block_mask,
    check_block_size,
)
from sah_core.kernels.reference import (
    block_sparse_prefill_attention_reference,
    per_query_head_layout,
    sparse_decode_attention_reference,
)

logger = logging.getLogger(__name__)

KernelBackend = Literal["auto", "triton", "reference"]
_BACKENDS: tuple[str, ...] = ("auto", "triton", "reference")


def select_backend(
    device: torch.device, backend: KernelBackend = "auto"
) -> Literal["triton", "reference"]:
    """Resolve ``backend`` for tensors on ``device``; see the module docstring for the rules."""
    if backend not in _BACKENDS:
        raise ValueError(f"backend is {backend!r}; allowed: {', '.join(_BACKENDS)}")
    if backend == "reference":
        return "reference"
    if backend == "triton":
        if not triton_installed():
            raise ValueError("backend is 'triton' but the triton package is not importable")
        if not triton_can_run_on(device):
            raise ValueError(
                f"backend is 'triton' but the tensors are on {device}; Triton needs CUDA "
                f"tensors, or CPU tensors with {INTERPRET_ENV}=1"
            )
        return "triton"
    if reference_forced():
        logger.debug("%s=1: using the torch reference", FORCE_REFERENCE_ENV)
        return "reference"
    if device.type == "cuda" and triton_installed():
        return "triton"
    return "reference"


def sparse_decode_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    scaling: float,
    sinks: torch.Tensor | None = None,
    *,
    backend: KernelBackend = "auto",
    num_splits: int | None = None,
    check_indices: bool = False,
) -> torch.Tensor:
    """Attention of each query row over its selected keys only (an index-form mask).

    Args:
        queries: ``[B, Hq, Q, D]`` float16/bfloat16/float32.
        keys, values: ``[B, Hkv, K, D]`` in the query dtype; ``Hq % Hkv == 0`` and query head
            ``h`` reads KV head ``h // (Hq // Hkv)``.
        indices: int64/int32 ``[B, Hq or Hkv, Q, L]`` selected key indices, -1 = padding
            (anywhere in the row). With ``Hkv`` lists, a query-head group shares one selection
            and the kernel loads each selected KV row once for the whole group.
        weights: float ``[B, Hq or Hkv, Q, L]``: keep-probability ``p`` in (0, 1] of each
            entry, 0 at padding; the key's exp-score is multiplied by ``1 / p``.
        scaling: multiplier of ``q . k``.
        sinks: optional ``[Hq]`` attention-sink logits (denominator only).
        backend: "auto", "triton" or "reference" (see module docstring).
        num_splits: Triton only: split-K factor (``None``: enough to fill the GPU).
        check_indices: reject indices outside ``[-1, K)`` with a ValueError (a device sync);
            without it the kernel skips such entries and the reference raises.

    Returns:
        ``[B, Hq, Q, D]`` in the query dtype; a row with nothing selected gives zeros.
    """
    chosen = select_backend(queries.device, backend)
    if chosen == "reference":
        return sparse_decode_attention_reference(
            queries, keys, values, indices, weights, scaling, sinks
        )
    shapes = check_qkv(queries, keys, values, scaling)
    check_index_mask(indices, weights, shapes, queries.device)
    check_sinks(sinks, shapes)
    if check_indices:
        check_indices_in_range(indices, shapes.kv_len)
    from sah_core.kernels.triton_sparse_decode import sparse_decode_attention_triton

    return sparse_decode_attention_triton(
        queries, keys, values, indices, weights, scaling, sinks, num_splits=num_splits
    )


def block_sparse_prefill_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    block_mask: torch.Tensor,
    scaling: float,
    block_size: int = 64,
    causal: bool = True,
    sinks: torch.Tensor | None = None,
    *,
    backend: KernelBackend = "auto",
    columns: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention restricted to the active tiles of a block mask (block-sparse prefill).

    Args:
        queries: ``[B, Hq, Q, D]``; with ``causal`` they are the last ``Q`` of the ``K``
            positions.
        keys, values: ``[B, Hkv, K, D]``.
        block_mask: bool ``[1 or B, 1 or Hkv or Hq, ceil(Q/block_size), ceil(K/block_size)]``;
            build one with :mod:`sah_core.kernels.block_layout` (``causal_block_mask``,
            ``streaming_block_mask``, ``block_mask_from_active_blocks``).
        scaling: multiplier of ``q . k``.
        block_size: tile edge; the Triton kernel needs a power of two >= 16 (64 is typical).
        causal: mask keys after each query's position inside diagonal tiles.
        sinks: optional ``[Hq]`` attention-sink logits.
        backend: "auto", "triton" or "reference".
        columns: optional bool ``[1 or B, 1 or Hkv or Hq, ceil(Q/block_size), K]``: single key
            columns each query block attends besides its tiles (vertical lines).

    Returns:
        ``[B, Hq, Q, D]`` in the query dtype; a row with no visible key gives zeros.
    """
    chosen = select_backend(queries.device, backend)
    if chosen == "reference":
        return block_sparse_prefill_attention_reference(
            queries, keys, values, block_mask, scaling, block_size, causal, sinks, columns=columns
        )
    shapes = check_qkv(queries, keys, values, scaling)
    check_block_size(block_size)
    check_block_mask(block_mask, block_size, shapes)
    check_sinks(sinks, shapes)
    if columns is not None:
        check_block_columns(columns, block_size, shapes)
        # one layout per query head: tiles and columns share [B, Hq]; causally empty tiles and
        # columns inside active tiles are dropped
        block_mask, columns = per_query_head_layout(block_mask, columns, block_size, shapes, causal)
        block_mask, columns = (
            block_mask.contiguous(),
            columns.contiguous() if columns is not None else None,
        )
    elif causal:
        # Tiles entirely above the diagonal hold nothing visible: drop them before the launch.
        block_mask = block_mask & causal_block_mask(
            shapes.q_len, shapes.kv_len, block_size, block_mask.device
        )
    from sah_core.kernels.triton_block_sparse_prefill import block_sparse_prefill_attention_triton

    return block_sparse_prefill_attention_triton(
        queries, keys, values, block_mask, scaling, block_size, causal, sinks, columns
    )


__all__ = [
    "FORCE_REFERENCE_ENV",
    "KernelBackend",
    "block_sparse_prefill_attention",
    "select_backend",
    "sparse_decode_attention",
]

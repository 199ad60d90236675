"""The one attention backend layer: attention of a :class:`CallPlan` under a :class:`Mask`.

A backend is a callable ``backend(call, mask) -> Tensor | None`` returning ``[B, Hq, Q, Dv]``
in the query dtype, or None to decline (the next backend is tried). Order of ``"auto"``:

1. user-supplied backends, most recently registered first
   (:func:`register_attention_backend`);
2. ``"triton"`` -- the sparse-decode kernel of :mod:`sah_core.kernels`, for index-form masks
   on CUDA with few query rows, and the block-sparse prefill kernel for block-layout masks
   on CUDA (``SAH_FORCE_REFERENCE_KERNELS=1`` turns both off);
3. ``"reference"`` -- the torch path, which never declines: SDPA for a full mask, zeros for
   an empty one (nothing attended), the index-form gather / dense-chunk paths, the
   dense-weight path, or, for a block-layout mask (``"block"``, sparse prefill), the
   block-sparse prefill path (its Triton kernel on CUDA, the tiled torch reference else).

:func:`run_attention` returns the output and the name of the backend that produced it (the
micro metrics record it); ``backend="reference"`` (or any registered name) forces one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from sah_core.call_plan import CallPlan
from sah_core.mask import Mask

logger = logging.getLogger(__name__)

AttentionBackend = Callable[[CallPlan, Mask], torch.Tensor | None]

#: Calls with more query rows than this never go to the Triton *decode* kernel.
TRITON_DECODE_MAX_QUERIES = 64

_user: dict[str, AttentionBackend] = {}


def register_attention_backend(name: str, backend: AttentionBackend) -> AttentionBackend:
    """Install ``backend`` under ``name``, tried before the built-in ones (newest first)."""
    if not isinstance(name, str) or not name or name in ("auto", "triton", "reference"):
        raise ValueError(
            f"name={name!r} is not allowed: use a non-empty name other than 'auto', 'triton' "
            "and 'reference'"
        )
    if not callable(backend):
        raise ValueError(f"backend={backend!r} is not allowed: use a callable(call, mask)")
    _user.pop(name, None)
    _user[name] = backend
    return backend


def unregister_attention_backend(name: str) -> None:
    """Remove a backend installed with :func:`register_attention_backend` (no-op if absent)."""
    _user.pop(name, None)


def attention_backends() -> list[str]:
    """Names in the order ``"auto"`` tries them."""
    return [*reversed(_user), "triton", "reference"]


def run_attention(call: CallPlan, mask: Mask, backend: str = "auto") -> tuple[torch.Tensor, str]:
    """``(out [B, Hq, Q, Dv], backend name)`` for ``call`` under ``mask``."""
    if backend == "auto":
        for name in reversed(_user):
            out = _user[name](call, mask)
            if out is not None:
                return out, name
        out = triton_backend(call, mask)
        if out is not None:
            return out, "triton"
        return reference_backend(call, mask)
    if backend == "reference":
        return reference_backend(call, mask)
    if backend == "triton":
        out = triton_backend(call, mask)
        if out is None:
            raise ValueError(
                "backend='triton' declined this call (it needs an index-form mask on CUDA, "
                f"<= {TRITON_DECODE_MAX_QUERIES} query rows, no dropout, one dtype)"
            )
        return out, "triton"
    chosen = _user.get(backend)
    if chosen is None:
        raise ValueError(f"backend={backend!r} is not allowed: use one of {attention_backends()}")
    out = chosen(call, mask)
    if out is None:
        raise ValueError(f"backend={backend!r} declined this call")
    return out, backend


# --------------------------------------------------------------------------- built-ins


def reference_backend(call: CallPlan, mask: Mask) -> tuple[torch.Tensor, str]:
    """The torch path (exact); the name says which of its strategies ran."""
    from sah_core.attention.dense import dense_attention, dense_mask_attention
    from sah_core.attention.index_form import index_attention_reference_named

    kind = mask.representation
    if kind == "full":
        out = dense_attention(
            call.queries,
            call.keys,
            call.values,
            scaling=call.scaling,
            attention_mask=call.attention_mask,
            s_aux=call.s_aux,
            dropout=call.dropout,
            query_chunk_size=call.requested_chunk_rows,
        )
        return out, "reference/dense"
    if kind == "empty":
        # nothing attended: softmax over no key (plus, at most, the sink) gives 0
        b, hq, q, _ = call.shape
        shape = (b, hq, q, call.values.shape[-1])
        return call.queries.new_zeros(shape), "reference/empty"
    if kind == "block":
        from sah_core.block_mask import BlockSparseMask, block_mask_attention_reference

        assert isinstance(mask, BlockSparseMask)
        return block_mask_attention_reference(call, mask)  # tiled, no [B, Hq, Q, K] tensor
    if kind == "index":
        from sah_core.attention.common import index_logits, index_logits_prefix

        indices, weights = mask.index_view()
        return index_attention_reference_named(
            call.queries,
            call.keys,
            call.values,
            indices,
            weights,
            scaling=call.scaling,
            attention_mask=call.attention_mask,
            s_aux=call.s_aux,
            dropout=call.dropout,
            query_chunk_size=call.requested_chunk_rows,
            shared_scores=call.cached_scores,
            logits=index_logits(call, mask),
            logits_prefix=index_logits_prefix(call, mask),
        )
    out = dense_mask_attention(
        call.queries,
        call.keys,
        call.values,
        mask._dense_view(),
        scaling=call.scaling,
        attention_mask=call.attention_mask,
        s_aux=call.s_aux,
        dropout=call.dropout,
        query_chunk_size=call.requested_chunk_rows,
    )
    return out, "reference/dense-mask"


def triton_backend(call: CallPlan, mask: Mask) -> torch.Tensor | None:
    """The Triton sparse-decode kernel (index form) or block-sparse prefill kernel (block
    layout) when it applies; None to fall back to torch."""
    if mask.representation == "block":
        from sah_core.block_mask import BlockSparseMask, block_mask_attention_triton

        assert isinstance(mask, BlockSparseMask)
        return block_mask_attention_triton(call, mask)
    if mask.representation != "index" or not call.queries.is_cuda:
        return None
    if call.dropout > 0.0 or call.q_len > TRITON_DECODE_MAX_QUERIES:
        return None  # prefill-sized calls stay on the chunked torch path
    try:
        from sah_core.kernels.dispatch import select_backend, sparse_decode_attention
    except ImportError:
        return None
    if select_backend(call.device, "auto") != "triton":
        return None
    indices, weights = mask.index_view()
    if weights is None:
        weights = (indices >= 0).to(call.queries.dtype)
    attention_mask = call.attention_mask
    if attention_mask is not None:
        full_shape = (*indices.shape[:3], attention_mask.shape[-1])
        bias = attention_mask.expand(full_shape).gather(-1, indices.clamp(min=0)).float()
        forbidden = torch.isneginf(bias) | (bias <= torch.finfo(bias.dtype).min / 2)
        if not bool(((bias == 0) | forbidden).all()):
            return None  # a finite non-zero bias cannot be folded into the kernel's inputs
        indices = indices.masked_fill(forbidden, -1)
        weights = weights.masked_fill(forbidden, 0.0)
    try:
        return sparse_decode_attention(
            call.queries,
            call.keys,
            call.values,
            indices,
            weights,
            call.scaling,
            call.s_aux,
            backend="triton",
        )
    except (ValueError, RuntimeError) as error:
        logger.debug("Triton sparse decode declined (%s); using the torch reference", error)
        return None

"""Torch reference implementations: the semantics every attention kernel here must match.

``sparse_decode_attention_reference`` maps the kernel's conventions onto the research path's
torch index-form attention (one torch reference per operation); the block-sparse reference
works per group of query blocks over the gathered active keys. Conventions shared with the
Triton kernels:

* importance weighting: a selected key with keep-probability ``p`` has its exp-score
  multiplied by ``1 / p``, i.e. ``-log p`` is added to its logit; an entry is selected when its
  index is ``>= 0`` and its weight is ``> 0`` (padding is ``-1`` with weight 0, anywhere in the
  row);
* GQA: query head ``h`` reads KV head ``h // (Hq // Hkv)``;
* attention sinks (gpt-oss style): one extra logit per query head joins the softmax
  denominator and contributes nothing to the output;
* a row that attends to no key outputs zeros (instead of the NaN of an all ``-inf`` softmax);
* softmax and accumulation in fp32, output in the query dtype.
"""

from __future__ import annotations

import torch

from sah_core.kernels._validation import (
    AttentionShapes,
    check_index_mask,
    check_indices_in_range,
    check_qkv,
    check_sinks,
)
from sah_core.kernels.block_layout import (
    active_block_lists,
    causal_block_mask,
    check_block_columns,
    check_block_mask,
    check_block_size,
)


def sparse_decode_attention_reference(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    indices: torch.Tensor,
    weights: torch.Tensor,
    scaling: float,
    sinks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of each query row over its own list of selected keys (index-form mask).

    Args:
        queries: ``[B, Hq, Q, D]``.
        keys, values: ``[B, Hkv, K, D]``, ``Hq % Hkv == 0``.
        indices: int64/int32 ``[B, Hi, Q, L]`` selected key indices, ``-1`` = padding;
            ``Hi == Hq`` (a list per query head) or ``Hi == Hkv`` (a list per KV head, shared by
            its query-head group).
        weights: float ``[B, Hi, Q, L]`` keep-probability ``p`` in (0, 1] per entry (0 at
            padding); the key's exp-score is multiplied by ``1 / p``.
        scaling: multiplier of ``q . k`` (usually ``D ** -0.5``).
        sinks: optional ``[Hq]`` attention-sink logits.

    Returns:
        ``[B, Hq, Q, D]`` in the query dtype.
    """
    shapes = check_qkv(queries, keys, values, scaling)
    check_index_mask(indices, weights, shapes, queries.device)
    check_sinks(sinks, shapes)
    check_indices_in_range(indices, shapes.kv_len)
    # One torch reference per operation: this is the research path's index-form attention
    # (sah_core.attention.index_form), after the kernel's input conventions are mapped.
    from sah_core.attention.index_form import index_attention_reference

    if indices.shape[1] == shapes.num_kv_heads and shapes.group_size > 1:
        indices = indices.repeat_interleave(shapes.group_size, dim=1)
        weights = weights.repeat_interleave(shapes.group_size, dim=1)
    indices = indices.to(torch.int64)
    # an entry is attended when its index is >= 0 and its weight > 0 (weight 0 = padding)
    weights = torch.where(indices >= 0, weights.float(), 0.0)
    return index_attention_reference(
        queries, keys, values, indices, weights, scaling=float(scaling), s_aux=sinks
    )


def block_sparse_prefill_attention_reference(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    block_mask: torch.Tensor,
    scaling: float,
    block_size: int = 64,
    causal: bool = True,
    sinks: torch.Tensor | None = None,
    *,
    columns: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention restricted to the active ``block_size`` x ``block_size`` tiles of a block mask,
    plus optional per-query-block key columns.

    Args:
        queries: ``[B, Hq, Q, D]``; with ``causal`` they are the last ``Q`` of the ``K``
            positions (query row ``r`` sees keys ``0 .. K - Q + r``).
        keys, values: ``[B, Hkv, K, D]``.
        block_mask: bool ``[1 or B, 1 or Hkv or Hq, ceil(Q / block_size), ceil(K / block_size)]``
            (see :mod:`sah_core.kernels.block_layout`).
        scaling: multiplier of ``q . k``.
        block_size: tile edge in tokens.
        causal: also mask keys after each query's position (inside diagonal tiles).
        sinks: optional ``[Hq]`` attention-sink logits.
        columns: optional bool ``[1 or B, 1 or Hkv or Hq, ceil(Q / block_size), K]``: single
            key columns every row of a query block attends besides its tiles (the vertical
            lines of MInference's vertical-slash layout); the union with the tiles counts once.
        attention_mask: optional additive ``[1 or B, 1 or Hq, Q, K]`` bias (``-inf`` or the
            dtype minimum = forbidden), added to the attended logits.

    Returns:
        ``[B, Hq, Q, D]`` in the query dtype. Works one group of query blocks at a time: a
        sparse group over its gathered active keys only, a dense group (active keys >= half its
        visible keys, no sinks) by fused SDPA over its visible keys under a per-group mask. No
        ``[B, Hq, Q, K]`` tensor is built.
    """
    shapes = check_qkv(queries, keys, values, scaling)
    check_block_size(block_size)
    check_block_mask(block_mask, block_size, shapes)
    check_sinks(sinks, shapes)
    if columns is not None:
        check_block_columns(columns, block_size, shapes)
    tiles, cols = per_query_head_layout(block_mask, columns, block_size, shapes, causal)
    tile_lists, tile_counts = active_block_lists(tiles)
    if cols is not None:
        col_lists, col_counts = active_block_lists(cols)
    b, hq, q_len, d = (int(x) for x in queries.shape)
    kv_len, dv = shapes.kv_len, int(values.shape[-1])
    num_q_blocks = tiles.shape[2]
    out = queries.new_zeros((b, hq, q_len, dv))
    if out.numel() == 0:
        return out
    head_map = torch.arange(hq, device=queries.device) // shapes.group_size
    num_k_blocks = tiles.shape[3]
    pad_keys = num_k_blocks * block_size - kv_len
    # per query head views (no copy for MHA), keys also as [.., nKb, bs, D] tiles
    keys_q = keys.float()[:, head_map]
    values_q = values.float()[:, head_map]
    key_tiles = torch.nn.functional.pad(keys_q, (0, 0, 0, pad_keys))
    value_tiles = torch.nn.functional.pad(values_q, (0, 0, 0, pad_keys))
    key_tiles = key_tiles.view(b, hq, num_k_blocks, block_size, d)
    value_tiles = value_tiles.view(b, hq, num_k_blocks, block_size, dv)
    batch_index = torch.arange(b, device=queries.device).view(b, 1, 1, 1)
    head_index = torch.arange(hq, device=queries.device).view(1, hq, 1, 1)
    pad_rows = num_q_blocks * block_size - q_len
    padded = torch.nn.functional.pad(queries.float() * scaling, (0, 0, 0, pad_rows))
    padded = padded.view(b, hq, num_q_blocks, block_size, d)
    bias = None
    if attention_mask is not None:
        bias = torch.nn.functional.pad(attention_mask.float(), (0, 0, 0, pad_rows))
        bias = bias.view(bias.shape[0], bias.shape[1], num_q_blocks, block_size, kv_len)
    in_block = torch.arange(block_size, device=queries.device)
    sink_logits = None if sinks is None else sinks.float().view(1, hq, 1, 1, 1)
    # Query blocks per step: keep one [B, Hq, n, bs, L] fp32 working tensor near 4M entries.
    widest = int(tile_counts.max()) * block_size + (
        int(col_counts.max()) if cols is not None else 0
    )
    step = max(1, (1 << 22) // max(1, b * hq * block_size * max(widest, 1)))
    for first in range(0, num_q_blocks, step):
        last = min(num_q_blocks, first + step)
        n = last - first
        n_active = int(tile_counts[..., first:last].max())
        n_cols = int(col_counts[..., first:last].max()) if cols is not None else 0
        row_end = min(q_len, last * block_size)
        key_end = min(kv_len, kv_len - q_len + row_end) if causal else kv_len
        if sink_logits is None and (n_active * block_size + n_cols) * 2 >= key_end:
            # a dense group: fused SDPA over its contiguous visible keys under a per-group
            # mask (rows x key_end, never the whole [B, Hq, Q, K])
            key_block = torch.arange(key_end, device=queries.device) // block_size
            allowed = tiles[:, :, first:last][..., key_block]
            if cols is not None:
                allowed = allowed | cols[:, :, first:last, :key_end]
            rows_here = row_end - first * block_size
            allowed = allowed.repeat_interleave(block_size, dim=2)[:, :, :rows_here]
            if causal:
                position = torch.arange(first * block_size, row_end, device=queries.device)
                position = (position + (kv_len - q_len)).unsqueeze(-1)
                allowed = allowed & (torch.arange(key_end, device=queries.device) <= position)
            attn_mask: torch.Tensor = allowed
            if attention_mask is not None:
                rows_bias = attention_mask[:, :, first * block_size : row_end, :key_end].float()
                attn_mask = rows_bias.masked_fill(~allowed, float("-inf"))
            dense_out = torch.nn.functional.scaled_dot_product_attention(
                queries[:, :, first * block_size : row_end].float(),
                keys[:, :, :key_end].float(),
                values[:, :, :key_end].float(),
                attn_mask=attn_mask,
                scale=scaling,
                enable_gqa=shapes.group_size > 1,
            )
            out[:, :, first * block_size : row_end] = dense_out.nan_to_num_(0.0).to(out.dtype)
            continue
        tile_idx = tile_lists[..., first:last, :n_active].long()  # [B, Hq, n, A]
        safe_tiles = tile_idx.clamp(min=0)
        # whole tiles are copied by advanced indexing (contiguous bs x D rows each)
        k_sel = key_tiles[batch_index, head_index, safe_tiles].flatten(3, 4)
        v_sel = value_tiles[batch_index, head_index, safe_tiles].flatten(3, 4)
        key_idx = safe_tiles.unsqueeze(-1) * block_size + in_block
        key_idx = key_idx.masked_fill((tile_idx < 0).unsqueeze(-1), -1).flatten(-2)
        if cols is not None:
            col_idx = col_lists[..., first:last, :n_cols].long()
            safe_cols = col_idx.clamp(min=0)
            k_sel = torch.cat([k_sel, keys_q[batch_index, head_index, safe_cols]], dim=-2)
            v_sel = torch.cat([v_sel, values_q[batch_index, head_index, safe_cols]], dim=-2)
            key_idx = torch.cat([key_idx, col_idx], dim=-1)
        valid = (key_idx >= 0) & (key_idx < kv_len)
        if key_idx.shape[-1] == 0 or not bool(valid.any()):
            continue
        safe = torch.where(valid, key_idx, 0)
        width = key_idx.shape[-1]
        forbidden = ~valid.unsqueeze(-2)  # [B, Hq, n, 1, L]
        if causal:
            rows = torch.arange(first * block_size, last * block_size, device=queries.device)
            position = (rows + (kv_len - q_len)).view(1, 1, n, block_size, 1)
            forbidden = forbidden | (key_idx.unsqueeze(-2) > position)
        picked = None
        if bias is not None:
            part = bias[:, :, first:last].expand(b, hq, n, block_size, kv_len)
            picked = part.gather(-1, safe.unsqueeze(-2).expand(b, hq, n, block_size, width))
            forbidden = forbidden | (picked <= torch.finfo(torch.float32).min / 2)
        q_blocks = padded[:, :, first:last]
        if sink_logits is None:
            # exact attention over the gathered keys by the fused SDPA kernel; a row with
            # nothing visible comes back NaN there and is set to 0 (the convention here)
            if picked is None:
                attn_mask = ~forbidden.expand(b, hq, n, block_size, width)
            else:
                attn_mask = picked.masked_fill(forbidden, float("-inf"))
            block_out = torch.nn.functional.scaled_dot_product_attention(
                q_blocks.reshape(b * hq, n, block_size, d),
                k_sel.reshape(b * hq, n, width, d),
                v_sel.reshape(b * hq, n, width, dv),
                attn_mask=attn_mask.reshape(b * hq, n, block_size, width),
                scale=1.0,  # the queries are pre-scaled
            )
            block_out = block_out.view(b, hq, n * block_size, dv).nan_to_num_(0.0)
        else:
            logits = torch.matmul(q_blocks, k_sel.transpose(-1, -2))
            if picked is not None:
                logits.add_(picked)
            logits.masked_fill_(forbidden, float("-inf"))
            row_max = torch.maximum(logits.amax(-1, keepdim=True), sink_logits)
            row_max = torch.where(torch.isinf(row_max), 0.0, row_max)
            weights = logits.sub_(row_max).exp_()
            denominator = weights.sum(-1, keepdim=True) + torch.exp(sink_logits - row_max)
            weights.div_(torch.where(denominator > 0, denominator, 1.0))
            block_out = torch.matmul(weights, v_sel).flatten(2, 3)  # [B, Hq, n * bs, Dv]
        rows_here = min(q_len, last * block_size) - first * block_size
        out[:, :, first * block_size : first * block_size + rows_here] = block_out[
            :, :, :rows_here
        ].to(out.dtype)
    return out


def per_query_head_layout(
    block_mask: torch.Tensor,
    columns: torch.Tensor | None,
    block_size: int,
    shapes: AttentionShapes,
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Tiles ``[B, Hq, nQb, nKb]`` and columns ``[B, Hq, nQb, K]`` (or None) per query head:
    broadcast over batch and heads, causally empty tiles dropped, columns that lie in an
    active tile or after the block's last query position removed (so each key counts once)."""
    head = torch.arange(shapes.num_q_heads, device=block_mask.device)
    tiles = block_mask[:, head * block_mask.shape[1] // shapes.num_q_heads]
    tiles = tiles.expand(shapes.batch, -1, -1, -1)
    if causal:
        tiles = tiles & causal_block_mask(shapes.q_len, shapes.kv_len, block_size, tiles.device)
    if columns is None:
        return tiles, None
    cols = columns[:, head * columns.shape[1] // shapes.num_q_heads]
    cols = cols.expand(shapes.batch, -1, -1, -1)
    covered = tiles.repeat_interleave(block_size, dim=-1)[..., : shapes.kv_len]
    cols = cols & ~covered
    if causal:
        num_q_blocks = tiles.shape[2]
        last_row = torch.clamp(
            (torch.arange(num_q_blocks, device=cols.device) + 1) * block_size - 1,
            max=shapes.q_len - 1,
        )
        last_position = (shapes.kv_len - shapes.q_len + last_row).view(1, 1, -1, 1)
        cols = cols & (torch.arange(shapes.kv_len, device=cols.device) <= last_position)
    return tiles, cols

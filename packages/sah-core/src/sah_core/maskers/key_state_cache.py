"""Incremental per-key (or per-page) features kept in a masker's layer state.

Top-k maskers summarise the keys once (hash codes, label caches, page summaries, PQ codes)
and reuse the summaries on the next call of the same request: in decode the KV cache only
grows, so only the new keys (or the last, partial page) need work. The cache checks that it
still describes the keys it is given (same batch/head layout, no shorter key tensor, and the
last key it summarised is unchanged); otherwise it rebuilds from scratch, so a masker never
scores keys with stale summaries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def prefix_unchanged(keys: torch.Tensor, length: int, probe: torch.Tensor) -> bool:
    """True when ``keys`` extend a key tensor of ``length`` keys whose last key was ``probe``
    (a cheap check of an append-only cache)."""
    if length > keys.shape[2] or length == 0:
        return False
    if probe.shape != (keys.shape[0], keys.shape[1], keys.shape[3]):
        return False
    if probe.device != keys.device or probe.dtype != keys.dtype:
        return False
    return bool(torch.equal(probe, keys[:, :, length - 1]))


def incremental_key_features(
    state: dict[str, Any],
    name: str,
    keys: torch.Tensor,
    compute: Callable[[torch.Tensor], torch.Tensor],
    *,
    unit: int = 1,
) -> torch.Tensor:
    """Features of all keys, ``[B, X, ceil(K / unit), ...]``, computing only what is new.

    ``compute(segment)`` maps a key segment ``[B, Hkv, n, D]`` that starts at a multiple of
    ``unit`` to its features ``[B, X, ceil(n / unit), ...]`` (``unit`` = keys per item: 1 for
    per-key features, ``page_size`` for page summaries). The result is stored under
    ``state[name]`` and returned as a read-only view (callers must not modify it).

    Reuse: from the keys of the previous call when they are a prefix of ``keys`` (decode);
    otherwise from the keys of the call that built the cache (the *anchor*, normally the
    context) when those are a prefix (a second question over the same context); otherwise
    everything is recomputed.
    """
    key_len = keys.shape[2]
    items = -(-key_len // unit)
    entry = state.get(name)
    resume = 0
    if isinstance(entry, dict) and prefix_unchanged(keys, entry["key_len"], entry["probe"]):
        resume = entry["key_len"]
    elif isinstance(entry, dict) and prefix_unchanged(
        keys, entry["anchor_len"], entry["anchor_probe"]
    ):
        resume = entry["anchor_len"]
    else:
        entry = None
    if entry is not None and resume == key_len:
        buffer: torch.Tensor = entry["buffer"]
        entry["key_len"], entry["probe"] = key_len, keys[:, :, key_len - 1].clone()
        return buffer[:, :, :items]
    start = (resume // unit) * unit
    fresh = compute(keys[:, :, start:])
    first_item = start // unit
    needed = first_item + fresh.shape[2]
    if (
        entry is None
        or entry["buffer"].shape[2] < needed
        or (
            entry["buffer"].shape[:2] != fresh.shape[:2]
            or entry["buffer"].shape[3:] != fresh.shape[3:]
            or entry["buffer"].dtype != fresh.dtype
        )
    ):
        # grow geometrically so a decode step rarely reallocates
        capacity = max(needed, 2 * first_item, 1)
        shape = (*fresh.shape[:2], capacity, *fresh.shape[3:])
        grown = fresh.new_empty(shape)
        if entry is not None and first_item > 0:
            grown[:, :, :first_item] = entry["buffer"][:, :, :first_item]
        buffer = grown
    else:
        buffer = entry["buffer"]
    buffer[:, :, first_item:needed] = fresh
    probe = keys[:, :, key_len - 1].clone()
    state[name] = {
        "buffer": buffer,
        "key_len": key_len,
        "probe": probe,
        "anchor_len": key_len if entry is None else entry["anchor_len"],
        "anchor_probe": probe if entry is None else entry["anchor_probe"],
    }
    return buffer[:, :, :items]


def valid_mean(
    x: torch.Tensor, valid: torch.Tensor | None, dim: int, keepdim: bool = False
) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` counting only entries where ``valid`` (broadcastable to
    ``x`` along that axis) is True; the plain mean when ``valid`` is None."""
    if valid is None:
        return x.mean(dim=dim, keepdim=keepdim)
    weights = valid.to(x.dtype)
    total = (x * weights).sum(dim=dim, keepdim=keepdim)
    count = weights.expand_as(x).sum(dim=dim, keepdim=keepdim).clamp_min(1.0)
    return total / count


def quantize_symmetric(
    values: torch.Tensor, bits: int, dim: int = -1, rounding: str = "nearest"
) -> torch.Tensor:
    """Simulated symmetric ``bits``-bit quantisation (scale = max |value| along ``dim``).

    ``rounding``: ``"nearest"``, ``"floor"`` or ``"ceil"`` (the last two round toward -inf /
    +inf, which keeps lower / upper bounds valid). ``bits >= 32`` returns ``values``.
    """
    if bits >= 32:
        return values
    levels = float(2 ** (bits - 1) - 1)
    scale = values.abs().amax(dim=dim, keepdim=True).clamp_min(torch.finfo(values.dtype).tiny)
    step = scale / levels
    scaled = values / step
    if rounding == "floor":
        scaled = scaled.floor()
    elif rounding == "ceil":
        scaled = scaled.ceil()
    else:
        scaled = scaled.round()
    return scaled.clamp(-levels, levels) * step

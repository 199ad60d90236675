"""Uniform draws without replacement, one fixed-size sample per row (vAttention's samples).

On the CPU a numba kernel draws each row's sample directly: SplitMix64 streams seeded from
one ``torch.randint`` of the global generator (so ``torch.manual_seed`` fixes the keys) and
Floyd's algorithm, ``count`` random integers per row. The torch formulation it replaces
(a uniform key per population entry, the ``count`` smallest win) costs a ``torch.rand`` and a
``topk`` over every entry: ~0.75 ms per decode call at SmolLM2's 3.5K keys against a few
microseconds. On other devices that torch formulation runs (same distribution, other keys).

Both functions return int64 ``[..., W]`` (``W`` = the largest count): each row's keys
(ascending on the CPU), then -1.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch


@functools.lru_cache(maxsize=1)
def _kernels() -> Any:
    from sah_core.maskers import _uniform_draws_numba

    return _uniform_draws_numba


def _seed() -> np.uint64:
    """One draw of the global torch generator: the seed of a call's row streams."""
    return np.uint64(int(torch.randint(0, 2**63 - 1, (1,))) & 0xFFFFFFFFFFFFFFFF)


def _counts(counts: torch.Tensor | int, lead: tuple[int, ...], size_cap: int) -> torch.Tensor:
    """Per-row counts as int64 ``[R]``, clamped to ``[0, size_cap]``."""
    rows = int(np.prod(lead)) if lead else 1
    if isinstance(counts, int):
        return torch.full((rows,), min(max(counts, 0), size_cap), dtype=torch.int64)
    c = counts.round() if counts.is_floating_point() else counts
    c = c.to(torch.int64).expand(*lead, 1).reshape(rows)
    return c.clamp(0, size_cap)


def population_size(population: torch.Tensor) -> torch.Tensor:
    """The True entries of each row of bool ``population [..., K]``, float32 ``[..., 1]``
    (on the CPU one pass of a kernel: torch's bool ``sum`` over a question prefill's
    ``[B, H, Q, K]`` population costs several milliseconds)."""
    if population.device.type != "cpu" or population.dtype != torch.bool or population.dim() == 0:
        return population.sum(-1, keepdim=True).float()
    lead, key_len = tuple(population.shape[:-1]), population.shape[-1]
    sizes = torch.empty(int(np.prod(lead)) if lead else 1, dtype=torch.int64)
    _kernels().population_sizes(population.reshape(-1, key_len).numpy(), sizes.numpy())
    return sizes.view(*lead, 1).float()


def draw_without_replacement(population: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per row of bool ``population [..., K]``, ``counts [..., 1]`` of its True keys drawn
    uniformly without replacement (a count above the row's population is cut to it)."""
    lead, key_len = tuple(population.shape[:-1]), population.shape[-1]
    if population.device.type != "cpu":
        return _torch_draw(population, counts)
    per_row = _counts(counts, lead, key_len)
    width = int(per_row.max()) if per_row.numel() else 0
    out = torch.empty((per_row.shape[0], width), dtype=torch.int64)
    if width:
        rows = population.reshape(-1, key_len)  # (a view of a strided population reads it)
        # the kernel cuts each count to its row's population and returns the widest row
        width = _kernels().draw_population_rows(_seed(), rows.numpy(), per_row.numpy(), out.numpy())
    return out[:, :width].view(*lead, width)


def draw_from_range(
    lead: tuple[int, ...],
    lo: int,
    hi: int,
    counts: torch.Tensor | int,
    device: torch.device,
) -> torch.Tensor:
    """``counts`` (``[*lead, 1]`` or one int) keys of ``lo .. hi - 1`` per row of ``lead``,
    drawn uniformly without replacement: on the CPU the same keys as
    :func:`draw_without_replacement` of a population that is exactly that range."""
    size = max(hi - lo, 0)
    if device.type != "cpu":
        population = torch.zeros((*lead, hi), dtype=torch.bool, device=device)
        population[..., lo:hi] = True
        if isinstance(counts, int):
            counts = torch.full((*lead, 1), counts, device=device)
        return _torch_draw(population, counts)
    per_row = _counts(counts, lead, size)
    width = int(per_row.max()) if per_row.numel() else 0
    out = torch.empty((per_row.shape[0], width), dtype=torch.int64)
    if width:
        _kernels().draw_range_rows(_seed(), lo, size, per_row.numpy(), out.numpy())
    return out.view(*lead, width)


def _torch_draw(population: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The torch formulation (any device): uniform keys, the smallest ``count`` win."""
    keys = torch.rand(population.shape, device=population.device)
    keys.masked_fill_(~population, 2.0)  # never drawn before a population key
    allowed = torch.minimum(counts.round().to(torch.int64), population.sum(-1, keepdim=True))
    width = int(allowed.max()) if allowed.numel() else 0
    if width == 0:
        return torch.empty((*population.shape[:-1], 0), dtype=torch.int64, device=keys.device)
    # the keys are >= 0, so their int32 bit patterns sort like the floats (a faster top-k)
    order = keys.view(torch.int32).topk(width, dim=-1, largest=False, sorted=True).indices
    ranks = torch.arange(width, device=keys.device)
    return order.masked_fill_(ranks >= allowed, -1)

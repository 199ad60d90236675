"""Adaptive sampling masker (vAttention): a uniform base sample estimates the spread of the
exp-scores, and a CLT concentration bound turns ``(epsilon, delta)`` into the per-row sample
size that keeps the softmax-denominator estimate within relative error ``epsilon`` with
probability ``1 - delta``.

Desai, Agrawal, Yang, Cuadron, Schroeder, Zaharia, Gonzalez and Stoica, "vAttention: Verified
Sparse Attention", 2025, arXiv:2510.05688. The estimator is Horvitz-Thompson (each sampled
key weighted by ``1/p``).

Per row, with population ``N`` = keys in ``[init_offset, K - local_offset)`` not already
selected and not masked, and ``x_i = exp(s_i - m)``:

1. **estimate**: a uniform sample of ``n0`` keys without replacement (``base_rate_sampling``:
   int count or float fraction of ``N``; at least 2 so a spread exists) gives the mean
   ``mu`` and standard deviation ``sigma`` of ``x``; the estimated denominator is
   ``D = static + N * mu``, ``static`` the exact weighted sum over the keys the previous mask
   already holds;
2. **budget**: ``n = clamp(ceil((z * N * sigma / (epsilon * D))^2), n0, N)`` with
   ``z = Phi^-1(1 - delta / 2)``: the event ``|N * mean_n - sum x| > epsilon * D`` is
   two-sided, so under the normal approximation of the sample mean it has probability
   ``delta``;
3. **draw**: a *fresh* uniform sample of ``n`` keys without replacement, independent of the
   estimation sample, each kept key weighted ``p = n / N``. Because the kept keys do not
   depend on the sample that set ``n``, every key is kept with probability exactly ``p``
   given ``n`` and ``E[1{kept} / p] = 1`` (reusing the estimation sample would bias it: a
   heavy key in that sample raises ``sigma`` and ``n`` and is then down-weighted).

The estimation sample only sets the budget; it is not attended (unless the fresh draw picks
the same keys).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import struct
from typing import ClassVar

import torch

from sah_core import search_space as sp
from sah_core.attention.common import grouped_scores, masked_keys
from sah_core.attention.index_form import gather_kv_rows, kv_flat_rows, kv_row_pitch
from sah_core.call_plan import CallPlan, QueryChunk
from sah_core.mask import Mask
from sah_core.maskers.base import check_float, check_size, resolve_size
from sah_core.maskers.sampling_base import SamplingMasker, SamplingMaskerConfig
from sah_core.maskers.uniform_draws import (
    draw_from_range,
    draw_without_replacement,
    population_size,
)

#: Fewest keys of the estimation sample (a standard deviation needs two).
MIN_BASE_SAMPLES = 2


@dataclasses.dataclass
class AdaptiveSamplingMaskerConfig(SamplingMaskerConfig):
    """vAttention: ``base_rate_sampling`` (int count or float fraction of the population),
    ``epsilon`` in (0, 1) relative error, ``delta`` in (0, 1) failure probability,
    ``init_offset`` / ``local_offset`` (int or float fraction of K) keys excluded from the
    sampling range at the start / end (usually covered by sink / local maskers)."""

    type_tag = "adaptive_sampling"

    base_rate_sampling: int | float = 0.05
    epsilon: float = 0.1
    delta: float = 0.1
    init_offset: int | float = 0
    local_offset: int | float = 0
    search_space: ClassVar[sp.SearchSpace] = sp.SearchSpace(
        {
            "base_rate_sampling": sp.Budget(sp.FloatRange(0.05, 0.5)),
            "epsilon": sp.FloatRange(0.05, 0.5, log=True),
            "delta": sp.FloatRange(0.05, 0.5, log=True),
        },
        (sp.budget_left,),
    )

    def validate(self) -> None:
        super().validate()
        check_size(self, "base_rate_sampling", self.base_rate_sampling, allow_zero=False)
        check_float(
            self, "epsilon", self.epsilon, 0.0, 1.0, low_inclusive=False, high_inclusive=False
        )
        check_float(self, "delta", self.delta, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        check_size(self, "init_offset", self.init_offset)
        check_size(self, "local_offset", self.local_offset)


def uniform_without_replacement(population: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Bool ``[..., K]``: per row, ``counts[...]`` keys drawn uniformly without replacement
    from ``population`` (:func:`~sah_core.maskers.uniform_draws.draw_without_replacement`,
    the same keys as the index-form paths under a seed)."""
    drawn = draw_without_replacement(population, counts)
    key_len = population.shape[-1]
    # padding (-1) lands in a spare last column, so it never clears a drawn key
    chosen = population.new_zeros((*population.shape[:-1], key_len + 1))
    chosen.scatter_(-1, torch.where(drawn >= 0, drawn, key_len), True)
    return chosen[..., :key_len] & population


class AdaptiveSamplingMasker(SamplingMasker):
    """vAttention's adaptive sampling (see module doc for the exact procedure)."""

    config_type = AdaptiveSamplingMaskerConfig
    config: AdaptiveSamplingMaskerConfig
    _padded: bool = False

    def sampling_range(self, key_len: int) -> tuple[int, int]:
        start = resolve_size(self.config.init_offset, key_len) if self.config.init_offset else 0
        tail = resolve_size(self.config.local_offset, key_len) if self.config.local_offset else 0
        if self._padded:
            return 0, key_len  # per-row range, applied in sample_chunk
        return start, key_len - tail

    def add_mask(self, call: CallPlan, previous: Mask) -> Mask:
        # with left padding the offsets are measured in each row's own keys (a float offset
        # is a fraction of the row's count), so the base range is opened and narrowed per row
        self._padded = call.key_positions is not None
        try:
            return super().add_mask(call, previous)
        finally:
            self._padded = False

    def row_range(self, call: CallPlan) -> torch.Tensor | None:
        """Bool ``[B, 1, 1, K]``: keys inside each row's own ``[init_offset, n - local_offset)``
        (None without padding: the base range already is that)."""
        positions, counts = call.key_positions, call.key_counts
        if positions is None or counts is None:
            return None
        starts, ends = [], []
        for n in counts.tolist():
            start = resolve_size(self.config.init_offset, n) if self.config.init_offset else 0
            tail = resolve_size(self.config.local_offset, n) if self.config.local_offset else 0
            starts.append(start)
            ends.append(n - tail)
        start_t = torch.tensor(starts, device=positions.device).view(-1, 1)
        end_t = torch.tensor(ends, device=positions.device).view(-1, 1)
        inside = (positions >= start_t) & (positions < end_t)
        return inside[:, None, None, :]

    def base_counts(self, size: torch.Tensor) -> torch.Tensor:
        """Keys of the estimation sample per row (float ``[..., 1]``), from the population
        size: the configured count or fraction, at least 2, at most the population."""
        rate = self.config.base_rate_sampling
        wanted = size * rate if isinstance(rate, float) else torch.full_like(size, float(rate))
        return torch.minimum(wanted.floor().clamp_min(float(MIN_BASE_SAMPLES)), size)

    def keep_probabilities(
        self, call: CallPlan, chunk: QueryChunk, population: torch.Tensor, previous: Mask
    ) -> torch.Tensor:
        """Final keep-probability ``p = n / N`` per row. Random: it draws the estimation
        sample (``sample_chunk`` calls it and then draws the kept keys afresh)."""
        size = population_size(population)
        base = uniform_without_replacement(population, self.base_counts(size))

        logits = grouped_scores(chunk.queries, call.keys, call.scaling).float()
        if chunk.attention_mask is not None:
            logits.masked_fill_(masked_keys(chunk.attention_mask), float("-inf"))
        row_max = logits.amax(-1, keepdim=True)
        row_max = torch.where(torch.isfinite(row_max), row_max, 0.0)
        exp = torch.exp(logits - row_max)

        if previous.representation == "empty":
            static = torch.zeros_like(size)
        else:
            prev_w = previous.get_dense_mask().float()
            static = torch.where(prev_w > 0, exp / prev_w.clamp_min(1e-30), 0.0).sum(-1, True)

        count = base.sum(-1, keepdim=True).float()
        mean = torch.where(base, exp, 0.0).sum(-1, keepdim=True) / count.clamp_min(1.0)
        sq_dev = torch.where(base, (exp - mean) ** 2, 0.0).sum(-1, keepdim=True)
        std = torch.sqrt(sq_dev / (count - 1.0).clamp_min(1.0))
        denominator = static + size * mean

        z = normal_quantile_two_sided(self.config.delta)
        allowed_error = self.config.epsilon * denominator
        needed = (z * size * std / allowed_error.clamp_min(1e-30)) ** 2
        needed = torch.where(allowed_error > 0, needed, size)
        budget = torch.minimum(torch.maximum(torch.ceil(needed), count), size)
        return torch.where(size > 0, budget / size.clamp_min(1.0), 0.0).clamp(0.0, 1.0)

    def sample_indices(
        self, call: CallPlan, chunk: QueryChunk, population: torch.Tensor, previous: Mask
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The procedure of :meth:`sample_chunk` (same draws from the global RNG, same
        ``n``) in index form: the estimate reads the logits of the estimation sample and of
        the previous mask's keys only (no ``[B, Hq, Qc, K]`` exp-scores, no dense previous
        mask); the shift of the exp-scores is the largest of those logits, which cancels in
        ``n``. A dense previous mask takes :meth:`sample_chunk`."""
        if previous.representation not in ("empty", "index"):
            return None
        inside = self.row_range(call)
        if inside is not None:
            population = population & inside
        size = population_size(population)
        base = draw_without_replacement(population, self.base_counts(size))
        if previous.representation == "index":
            prev_idx, prev_w = previous.index_view()
        else:
            prev_idx = base[..., :0]
            prev_w = None
        picked = torch.cat([prev_idx, base], dim=-1)
        logits = self._logits_at(call, chunk, picked)
        usable = picked >= 0
        if chunk.attention_mask is not None and prev_idx.shape[-1] > 0:
            full = (*prev_idx.shape[:3], chunk.attention_mask.shape[-1])
            bias = chunk.attention_mask.expand(full).gather(-1, prev_idx.clamp(min=0))
            usable[..., : prev_idx.shape[-1]] &= ~masked_keys(bias)
        logits.masked_fill_(~usable, float("-inf"))
        if logits.shape[-1]:
            shift = logits.amax(-1, keepdim=True)
        else:  # nothing selected before and an empty base sample: no logits to shift by
            shift = logits.new_zeros((*logits.shape[:-1], 1))
        exp = torch.exp(logits - torch.where(torch.isfinite(shift), shift, 0.0))
        split = prev_idx.shape[-1]
        exp_prev, exp_base = exp[..., :split], exp[..., split:]
        if prev_w is None:
            static = exp_prev.sum(-1, keepdim=True)
        else:
            w = prev_w.float()
            static = torch.where(w > 0, exp_prev / w.clamp_min(1e-30), 0.0).sum(-1, True)
        in_base = usable[..., split:]
        count = in_base.sum(-1, keepdim=True).float()
        mean = exp_base.sum(-1, keepdim=True) / count.clamp_min(1.0)
        sq_dev = torch.where(in_base, (exp_base - mean) ** 2, 0.0).sum(-1, keepdim=True)
        std = torch.sqrt(sq_dev / (count - 1.0).clamp_min(1.0))
        p = self._keep_probability(size, count, mean, std, static)
        kept = draw_without_replacement(population, torch.round(p * size))
        weights = torch.where(kept >= 0, p, 0.0)
        return kept, weights

    def _keep_probability(
        self,
        size: torch.Tensor,
        count: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        static: torch.Tensor,
    ) -> torch.Tensor:
        """``p = n / N`` from the estimate (step 2 of the module doc)."""
        denominator = static + size * mean
        z = normal_quantile_two_sided(self.config.delta)
        allowed_error = self.config.epsilon * denominator
        needed = (z * size * std / allowed_error.clamp_min(1e-30)) ** 2
        needed = torch.where(allowed_error > 0, needed, size)
        budget = torch.minimum(torch.maximum(torch.ceil(needed), count), size)
        return torch.where(size > 0, budget / size.clamp_min(1.0), 0.0).clamp(0.0, 1.0)

    def sample_range(
        self, call: CallPlan, chunk: QueryChunk, free: tuple[int, int], previous: Mask
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """:meth:`sample_indices` when the population of every row is the key range
        ``free = (lo, hi)``: ``N``, ``n0`` and the estimation-sample count are Python numbers
        (no population tensor, no per-row counts), each draw is
        :func:`~sah_core.maskers.uniform_draws.draw_from_range` (the general path's keys
        under a seed), and the float32 arithmetic of the estimate is the same."""
        if (
            previous.representation not in ("empty", "index")
            or not previous.is_binary()
            or type(self).sample_indices is not AdaptiveSamplingMasker.sample_indices
            or type(self).base_counts is not AdaptiveSamplingMasker.base_counts
            or type(self)._keep_probability is not AdaptiveSamplingMasker._keep_probability
        ):
            return None
        lo, hi = free
        b, h, rows = (int(x) for x in chunk.queries.shape[:3])
        size = hi - lo
        if size <= 0:
            empty = torch.empty((b, h, rows, 0), dtype=torch.int64, device=call.device)
            return empty, empty.to(torch.float32)
        rate = self.config.base_rate_sampling
        # base_counts in float32, as the general path computes it on a float32 tensor
        wanted = math.floor(_f32(_f32(rate) * size)) if isinstance(rate, float) else rate
        count = min(max(wanted, MIN_BASE_SAMPLES), size)
        base = draw_from_range((b, h, rows), lo, hi, count, call.device)
        if previous.representation == "index":
            # whole ranges built by the fixed maskers: weight 1, no padding entries
            prev_idx = previous.index_view()[0]
            picked = torch.cat([prev_idx, base], dim=-1)
        else:
            prev_idx, picked = base[..., :0], base
        logits = self._logits_at(call, chunk, picked, nonnegative=True)
        # shift = the largest logit, 0 when it is not finite (cancels in n)
        shift = logits.amax(-1, keepdim=True).nan_to_num_(0.0, 0.0, 0.0)
        exp = logits.sub_(shift).exp_()
        split = prev_idx.shape[-1]
        static = exp[..., :split].sum(-1, keepdim=True)
        exp_base = exp[..., split:]
        mean = exp_base.sum(-1, keepdim=True) / float(count)
        sq_dev = ((exp_base - mean) ** 2).sum(-1, keepdim=True)
        std = torch.sqrt(sq_dev / float(max(count - 1, 1)))
        # step 2 with N and n0 as numbers (_keep_probability's float32 operations)
        denominator = static + mean * float(size)
        allowed_error = self.config.epsilon * denominator
        z_size = _f32(_f32(normal_quantile_two_sided(self.config.delta)) * size)
        needed = (std * z_size / allowed_error.clamp_min(1e-30)) ** 2
        needed = torch.where(allowed_error > 0, needed, float(size))
        p = torch.ceil(needed).clamp_(float(count), float(size)).div_(float(size))
        kept = draw_from_range((b, h, rows), lo, hi, torch.round(p * float(size)), call.device)
        return kept, torch.where(kept >= 0, p, 0.0)

    @staticmethod
    def _logits_at(
        call: CallPlan, chunk: QueryChunk, picked: torch.Tensor, nonnegative: bool = False
    ) -> torch.Tensor:
        """fp32 ``scaling * q . k`` at ``picked [B, Hq, Qc, L]`` (-1 reads key 0; a fresh
        tensor): gathered key rows when that reads fewer bytes than scoring every key, else
        from the call's shared scores. ``nonnegative``: ``picked`` holds no -1. Scores an
        earlier masker of the stack already computed for these rows (an oracle top-k's
        ``call.chunk_scores``) are read, never recomputed or re-gathered."""
        cached = call.cached_scores(chunk.start, chunk.end)
        if cached is not None and cached.shape[-1] >= chunk.key_limit and chunk.key_limit > 0:
            logits = cached.gather(-1, picked if nonnegative else picked.clamp(min=0))
            return logits if logits.dtype == torch.float32 else logits.float()
        if picked.shape[-1] * call.group_size < chunk.key_limit or chunk.key_limit == 0:
            pitch = kv_row_pitch(call.keys) or call.k_len
            flat = kv_flat_rows(picked, call.num_kv_heads, pitch, nonnegative=nonnegative)
            rows = gather_kv_rows(call.keys, picked, flat, pitch)  # [B, Hq, Qc, L, D]
            logits = torch.matmul(chunk.queries.unsqueeze(-2), rows.transpose(-1, -2))
            logits = logits.squeeze(-2)
            return (logits if logits.dtype == torch.float32 else logits.float()).mul_(call.scaling)
        scores = call.chunk_scores(chunk)
        safe = picked.clamp(min=0, max=scores.shape[-1] - 1)
        logits = scores.gather(-1, safe)
        return logits if logits.dtype == torch.float32 else logits.float()

    def sample_chunk(
        self, call: CallPlan, chunk: QueryChunk, population: torch.Tensor, previous: Mask
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inside = self.row_range(call)
        if inside is not None:
            population = population & inside
        p = self.keep_probabilities(call, chunk, population, previous)
        size = population_size(population)
        # n = p * N is an integer up to float rounding; the fresh draw is independent of the
        # estimation sample, so each key is kept with probability exactly p = n / N
        counts = torch.round(p * size)
        keep = uniform_without_replacement(population, counts)
        return keep, p.expand(population.shape)


def _f32(value: float) -> float:
    """``value`` rounded to float32 (as a float32 tensor would hold it)."""
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


@functools.lru_cache(maxsize=64)
def normal_quantile_two_sided(delta: float) -> float:
    """``z = Phi^-1(1 - delta/2)``: ``P(|N(0,1)| > z) = delta``."""
    return math.sqrt(2.0) * float(torch.special.erfinv(torch.tensor(1.0 - delta)))

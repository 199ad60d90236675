"""Adaptive sampling masker (vAttention): a uniform base sample estimates the spread of the
exp-scores, and a CLT concentration bound turns ``(epsilon, delta)`` into the per-row sample
budget that keeps the softmax-denominator estimate within relative error ``epsilon`` with
probability ``1 - delta``.

Desai et al., "vAttention: Verified Sparse Attention" (2025). The estimator is
Horvitz-Thompson (each sampled key weighted by ``1/p``).

Per row, with population ``N`` = keys in ``[init_offset, K - local_offset)`` not already
selected and not masked:

1. base draw: every population key kept with ``p0 = min(1, n0 / N)``, ``n0`` from
   ``base_rate_sampling`` (int count, or float fraction of ``N``);
2. from the base sample ``x_i = exp(s_i - m)``: mean ``mu``, standard deviation ``sigma``;
   estimated denominator ``D = static + N * mu`` where ``static`` is the exact weighted sum
   over keys the previous mask already holds;
3. budget ``n = clamp(ceil((z * N * sigma / (epsilon * D))^2), n0, N)`` with
   ``z = Phi^-1(1 - delta / 2)``, i.e. ``P(|N*mu_n - sum x| > epsilon*D) <= delta`` under
   the normal approximation of the sample mean;
4. final inclusion probability ``p = n / N``: the base sample is **kept** and every other
   population key is added with ``(p - p0) / (1 - p0)``, so each key is included with
   probability exactly ``p`` and the estimate includes the base sample.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from sah_core.attention.common import grouped_scores, masked_keys
from sah_core.mask import Mask
from sah_core.maskers.base import check_float, check_size, resolve_size
from sah_core.maskers.sampling_base import SamplingMasker, SamplingMaskerConfig


@dataclasses.dataclass
class AdaptiveSamplingMaskerConfig(SamplingMaskerConfig):
    """vAttention: ``base_rate_sampling`` (int count or float fraction of the population),
    ``epsilon`` in (0, 1) relative error, ``delta`` in (0, 1) failure probability,
    ``init_offset`` / ``local_offset`` (int or float fraction of K) keys excluded from the
    sampling range at the start / end (usually covered by sink / local maskers)."""

    base_rate_sampling: int | float = 0.05
    epsilon: float = 0.1
    delta: float = 0.1
    init_offset: int | float = 0
    local_offset: int | float = 0

    def validate(self) -> None:
        super().validate()
        check_size(self, "base_rate_sampling", self.base_rate_sampling, allow_zero=False)
        check_float(
            self, "epsilon", self.epsilon, 0.0, 1.0, low_inclusive=False, high_inclusive=False
        )
        check_float(self, "delta", self.delta, 0.0, 1.0, low_inclusive=False, high_inclusive=False)
        check_size(self, "init_offset", self.init_offset)
        check_size(self, "local_offset", self.local_offset)


class AdaptiveSamplingMasker(SamplingMasker):
    """vAttention's adaptive sampling (see module doc for the exact procedure)."""

    config_type = AdaptiveSamplingMaskerConfig
    config: AdaptiveSamplingMaskerConfig

    def sampling_range(self, key_len: int) -> tuple[int, int]:
        start = resolve_size(self.config.init_offset, key_len) if self.config.init_offset else 0
        tail = resolve_size(self.config.local_offset, key_len) if self.config.local_offset else 0
        return start, key_len - tail

    def keep_probabilities(
        self,
        keys: torch.Tensor,
        queries: torch.Tensor,
        values: torch.Tensor,
        scaling: float,
        population: torch.Tensor,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Base-sample probability ``p0`` per row (the first stage of ``sample_chunk``)."""
        size = population.sum(-1, keepdim=True).float()
        rate = self.config.base_rate_sampling
        wanted = size * rate if isinstance(rate, float) else torch.full_like(size, float(rate))
        wanted = wanted.floor().clamp_min(1.0)
        return torch.where(size > 0, (wanted / size.clamp_min(1.0)).clamp(max=1.0), 0.0)

    def sample_chunk(
        self,
        keys: torch.Tensor,
        queries: torch.Tensor,
        values: torch.Tensor,
        scaling: float,
        population: torch.Tensor,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        size = population.sum(-1, keepdim=True).float()
        p0 = self.keep_probabilities(keys, queries, values, scaling, population, **kwargs)
        base = population & (torch.rand(population.shape, device=population.device) < p0)

        logits = grouped_scores(queries, keys, scaling).float()
        attention_mask = kwargs.get("attention_mask")
        if attention_mask is not None:
            logits.masked_fill_(masked_keys(attention_mask), float("-inf"))
        row_max = logits.amax(-1, keepdim=True)
        row_max = torch.where(torch.isfinite(row_max), row_max, 0.0)
        exp = torch.exp(logits - row_max)

        previous: Mask = kwargs["previous_mask"]
        if previous.representation == "empty":
            static = torch.zeros_like(size)
        else:
            prev_w = previous.get_dense_mask().float()
            static = torch.where(prev_w > 0, exp / prev_w.clamp_min(1e-30), 0.0).sum(-1, True)

        count = base.sum(-1, keepdim=True).float()
        sampled = torch.where(base, exp, 0.0)
        mean = sampled.sum(-1, keepdim=True) / count.clamp_min(1.0)
        sq_dev = torch.where(base, (exp - mean) ** 2, 0.0).sum(-1, keepdim=True)
        std = torch.sqrt(sq_dev / (count - 1.0).clamp_min(1.0))
        denominator = static + size * mean

        z = normal_quantile_two_sided(self.config.delta)
        allowed_error = self.config.epsilon * denominator
        needed = (z * size * std / allowed_error.clamp_min(1e-30)) ** 2
        needed = torch.where(allowed_error > 0, needed, size)
        budget = torch.minimum(torch.maximum(torch.ceil(needed), p0 * size), size)
        p = torch.where(size > 0, budget / size.clamp_min(1.0), 0.0).clamp(0.0, 1.0)
        p = torch.maximum(p, p0)  # never below the base rate (rounding)

        extra_rate = torch.where(p0 < 1.0, (p - p0) / (1.0 - p0).clamp_min(1e-12), 0.0)
        extra = population & ~base
        extra &= torch.rand(population.shape, device=population.device) < extra_rate
        keep = base | extra
        return keep, p.expand(population.shape)


def normal_quantile_two_sided(delta: float) -> float:
    """``z = Phi^-1(1 - delta/2)``: ``P(|N(0,1)| > z) = delta``."""
    return math.sqrt(2.0) * float(torch.special.erfinv(torch.tensor(1.0 - delta)))

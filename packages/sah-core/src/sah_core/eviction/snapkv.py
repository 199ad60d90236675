"""SnapKV: keep the keys the observation window votes for.

Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", NeurIPS 2024,
arXiv:2404.14469. The last ``window_size`` queries of the context (the observation window)
attend causally to the keys before them; each key's score is its attention summed over the
window (we average: same ranking), pooled along the key axis (``kernel_size``, average or max
pooling) so neighbours of a hit survive with it, then averaged over the query heads of each
KV head (GQA, as kvpress). The window itself is always kept; each KV head keeps its
``budget`` best keys (window included).
"""

from __future__ import annotations

import dataclasses

import torch

from sah_core.eviction.base import (
    EvictionConfig,
    EvictionInputs,
    KeepPlan,
    ScorerEviction,
    check_window,
    pool_keys,
    window_attention,
)
from sah_core.maskers.base import check_choice

POOLINGS = ("avg", "max")


@dataclasses.dataclass
class SnapKVConfig(EvictionConfig):
    """``budget`` keys per KV head (window included); ``window_size`` observation queries;
    ``kernel_size`` pooling width; ``pooling`` ``"avg"`` or ``"max"``."""

    type_tag = "snapkv"

    window_size: int = 64
    kernel_size: int = 5
    pooling: str = "avg"

    def validate(self) -> None:
        super().validate()
        check_window(self, "window_size", self.window_size)
        check_window(self, "kernel_size", self.kernel_size)
        check_choice(self, "pooling", self.pooling, POOLINGS)


def snapkv_scores(inputs: EvictionInputs, window: int, kernel: int, pooling: str) -> torch.Tensor:
    """SnapKV's per-key votes ``[B, Hkv, K]``, the window's own keys at +inf."""
    k = inputs.key_len
    w = min(window, k)
    probs = window_attention(inputs.queries, inputs.keys, inputs.scaling, w)  # [B,Hq,w,K]
    votes = probs[..., : k - w].mean(dim=-2)  # [B, Hq, K - w]
    votes = pool_keys(votes, kernel, pooling)
    b, hq = votes.shape[:2]
    hkv = int(inputs.keys.shape[1])
    votes = votes.view(b, hkv, hq // hkv, k - w).mean(dim=2)
    window_scores = torch.full((b, hkv, w), float("inf"), device=votes.device)
    return torch.cat([votes, window_scores], dim=-1)


class SnapKV(ScorerEviction):
    """Observation-window votes, pooled; the window survives (the most recent part of it
    when the budget is smaller than the window)."""

    config_type = SnapKVConfig
    config: SnapKVConfig

    def score(self, inputs: EvictionInputs) -> torch.Tensor:
        c = self.config
        return snapkv_scores(inputs, c.window_size, c.kernel_size, c.pooling)

    def keep(self, inputs: EvictionInputs, budget: int) -> KeepPlan:
        k = inputs.key_len
        if budget < min(self.config.window_size, k) and budget < k:
            # smaller than the window: its most recent keys (no vote can rank them)
            b, hkv = (int(x) for x in inputs.keys.shape[:2])
            idx = torch.arange(k - budget, k, device=inputs.keys.device).expand(b, hkv, budget)
            return KeepPlan(idx)
        return super().keep(inputs, budget)

"""AdaKV: head-wise budgets inside a layer's total, over SnapKV scores.

Feng et al., "Ada-KV: Optimizing KV Cache Eviction by Adaptive Budget Allocation for Efficient
LLM Inference", arXiv:2407.11550. A layer keeps ``Hkv * budget`` keys in total, but heads
compete for them: the layer's SnapKV scores of all KV heads are ranked together and the top
``Hkv * budget`` (head, key) pairs survive, so concentrated heads give slots to dispersed
ones. A safeguard first gives every head its own top ``alpha_safeguard * budget`` keys
(kvpress's default 0.2). Heads then keep different numbers of keys: the adapter stores them in
a padded per-head layout (``sah_adapters.evicted_cache``), never by masking a full cache.
"""

from __future__ import annotations

import dataclasses

import torch

from sah_core.eviction.base import EvictionInputs, KeepPlan
from sah_core.eviction.snapkv import SnapKV, SnapKVConfig, snapkv_scores
from sah_core.maskers.base import check_float


@dataclasses.dataclass
class AdaKVConfig(SnapKVConfig):
    """SnapKV's fields; ``budget`` is the mean per KV head; ``alpha_safeguard`` in [0, 1]
    the fraction of it every head keeps for itself."""

    type_tag = "adakv"

    alpha_safeguard: float = 0.2

    def validate(self) -> None:
        super().validate()
        check_float(self, "alpha_safeguard", self.alpha_safeguard, 0.0, 1.0)


class AdaKV(SnapKV):
    """Top ``Hkv * budget`` over the flattened (head, key) scores of a layer."""

    config_type = AdaKVConfig
    config: AdaKVConfig

    def keep(self, inputs: EvictionInputs, budget: int) -> KeepPlan:
        c = self.config
        b, hkv, k = (int(x) for x in inputs.keys.shape[:3])
        if budget >= k:
            return super().keep(inputs, budget)
        scores = snapkv_scores(inputs, c.window_size, c.kernel_size, c.pooling)
        finite_top = torch.finfo(torch.float32).max
        scores = scores.clamp(max=finite_top)  # the window: +inf -> max (still on top)
        safe = int(budget * c.alpha_safeguard)
        if safe > 0:
            own = torch.topk(scores, safe, dim=-1, sorted=False).indices
            scores = scores.scatter(-1, own, finite_top)
        flat = torch.topk(scores.reshape(b, hkv * k), hkv * budget, dim=-1, sorted=False).indices
        chosen = torch.zeros(b, hkv * k, dtype=torch.bool, device=scores.device)
        chosen.scatter_(-1, flat, True)
        chosen = chosen.view(b, hkv, k)
        counts = chosen.sum(-1)  # [B, Hkv]
        width = int(counts.max())
        # kept keys first, in ascending order; -1 beyond each head's count
        positions = torch.arange(k, device=scores.device).expand(b, hkv, k)
        order = torch.where(chosen, positions, k + positions).sort(dim=-1).values[..., :width]
        indices = torch.where(order < k, order, -1)
        return KeepPlan(indices, counts.to(torch.int64))

"""H2O: keep the heavy hitters (largest cumulative attention) and the recent keys.

Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language
Models", NeurIPS 2023, arXiv:2306.14048. Each key's score is the attention it received,
summed over every query so far (the context's queries at prefill, then each question and
generated token); each KV head keeps the ``recent_ratio * budget`` most recent keys and fills
the rest of its ``budget`` with the highest scores. Eviction runs after the context prefill
and every ``decode_every`` decode steps once a layer holds more than ``budget`` keys. For GQA
the scores of a KV head's query heads are summed.
"""

from __future__ import annotations

import dataclasses

import torch

from sah_core.eviction.base import (
    EvictionConfig,
    EvictionInputs,
    KeepPlan,
    ScorerEviction,
    protect_recent,
    topk_sorted,
)
from sah_core.maskers.base import check_float, check_int

#: Query rows per chunk when summing the context's attention (bounds the working tensor).
_ROWS = 256


@dataclasses.dataclass
class H2OConfig(EvictionConfig):
    """``budget`` keys per KV head; ``recent_ratio`` of it for the most recent keys (the
    paper's even split by default); ``decode_every``: evict every N decode steps (0 = only
    after the context prefill)."""

    type_tag = "h2o"

    recent_ratio: float = 0.5
    decode_every: int = 1

    def validate(self) -> None:
        super().validate()
        check_float(self, "recent_ratio", self.recent_ratio, 0.0, 1.0)
        check_int(self, "decode_every", self.decode_every, low=0, high=2**31 - 1)


def cumulative_attention(inputs: EvictionInputs) -> torch.Tensor:
    """Causal attention of ``inputs.queries`` summed over queries and each KV head's query
    heads: ``[B, Hkv, K]`` float32 (the queries sit at the last Q key positions)."""
    q, k = int(inputs.queries.shape[2]), inputs.key_len
    b, hkv = (int(x) for x in inputs.keys.shape[:2])
    group = inputs.group_size
    keys = inputs.keys.float().transpose(-1, -2)
    total = torch.zeros(b, hkv, k, device=inputs.keys.device)
    columns = torch.arange(k, device=inputs.keys.device)
    for start in range(0, q, _ROWS):
        end = min(q, start + _ROWS)
        rows = end - start
        chunk = inputs.queries[:, :, start:end].float() * inputs.scaling
        scores = torch.matmul(chunk.reshape(b, hkv, group * rows, -1), keys)
        scores = scores.view(b, hkv, group, rows, k)
        position = k - q + torch.arange(start, end, device=keys.device)
        scores = scores.masked_fill(columns[None, :] > position[:, None], float("-inf"))
        total += torch.softmax(scores, dim=-1).sum(dim=(2, 3))
    return total


class H2O(ScorerEviction):
    """Cumulative attention (kept in the layer's eviction state) + a recent window."""

    config_type = H2OConfig
    config: H2OConfig

    def observe_decode(self, inputs: EvictionInputs) -> None:
        acc = inputs.state.get("acc")
        step = cumulative_attention(inputs)
        if acc is not None:
            step[..., : acc.shape[-1]] += acc  # older keys carry their sums; new ones start
        inputs.state["acc"] = step

    def score(self, inputs: EvictionInputs) -> torch.Tensor:
        acc = inputs.state.get("acc")
        if acc is None or acc.shape[-1] != inputs.key_len:
            acc = cumulative_attention(inputs)  # the context prefill: all its queries
            inputs.state["acc"] = acc
        return acc

    def keep(self, inputs: EvictionInputs, budget: int) -> KeepPlan:
        scores = self.score(inputs)
        if budget >= inputs.key_len:
            return super().keep(inputs, budget)
        recent = min(budget, round(budget * self.config.recent_ratio))
        indices = topk_sorted(protect_recent(scores, recent), budget)
        inputs.state["acc"] = scores.gather(-1, indices)  # follows the cache
        return KeepPlan(indices)

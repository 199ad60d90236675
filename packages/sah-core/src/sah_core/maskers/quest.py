"""Quest top-k masker: query-aware page selection from per-page key bounds.

Tang, Zhao, Zhu, Xiao, Kasikci and Han, "Quest: Query-Aware Sparsity for Efficient
Long-Context LLM Inference", ICML 2024, arXiv:2406.10774.

The keys are cut into pages of ``page_size`` consecutive keys. Per KV head and page, Quest
keeps the element-wise minimum ``m`` and maximum ``M`` of the page's keys. For a query ``q``
the page score ``sum_d max(q_d * m_d, q_d * M_d)`` is an upper bound of ``q . k`` for every key
``k`` of the page. Every key gets its page's score (:func:`expand_page_scores`), so the
top-k base takes the best pages whole until ``heavy_size`` keys are covered (the last page
taken may be cut to fit the budget).

``label_bits`` < 32 stores the summaries quantised (symmetric, one scale per page and head,
minimum rounded down and maximum rounded up, so the score stays an upper bound); 32 keeps
them exact. Page summaries are kept per layer in ``sparse_meta_data``; a decode step only
recomputes the last, partial page.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from sah_core.maskers.base import check_int
from sah_core.maskers.key_state_cache import config_state, incremental_key_features
from sah_core.maskers.topk_base import TopKMasker, TopKMaskerConfig, expand_page_scores

#: Slack (in quantisation steps) of the outward rounding of quantised page bounds.
_SLACK = 1e-3


@dataclasses.dataclass
class QuestTopKMaskerConfig(TopKMaskerConfig):
    """``heavy_size`` keys per row; ``page_size`` keys per page (>= 1); ``label_bits`` in
    [2, 32] bits per stored page bound (32 = exact fp32)."""

    page_size: int = 16
    label_bits: int = 32

    def validate(self) -> None:
        super().validate()
        check_int(self, "page_size", self.page_size, 1)
        check_int(self, "label_bits", self.label_bits, 2, 32)


def page_bounds(keys: torch.Tensor, page_size: int, label_bits: int) -> torch.Tensor:
    """Per-page ``[B, Hkv, P, 2, D]`` (index 0 = element-wise min, 1 = max) of ``keys``."""
    b, h, n, d = keys.shape
    pad = (-n) % page_size
    pages = (n + pad) // page_size
    keys = keys.float()
    # padding never wins a min (+inf) or a max (-inf)
    low = torch.nn.functional.pad(keys, (0, 0, 0, pad), value=float("inf"))
    high = torch.nn.functional.pad(keys, (0, 0, 0, pad), value=float("-inf"))
    low = low.view(b, h, pages, page_size, d).amin(dim=3)
    high = high.view(b, h, pages, page_size, d).amax(dim=3)
    if label_bits < 32:
        scale_src = torch.stack([low, high], dim=3)  # [B, H, P, 2, D]
        scale = scale_src.abs().flatten(-2).amax(-1, keepdim=True)  # one scale per page
        step = scale.clamp_min(torch.finfo(torch.float32).tiny) / float(2 ** (label_bits - 1) - 1)
        # outward rounding keeps the bound; the 1e-3 slack stops float noise from moving a
        # value that sits exactly on a level (the page's largest |value| always does)
        low = (low / step + _SLACK).floor() * step
        high = (high / step - _SLACK).ceil() * step
    return torch.stack([low, high], dim=3)


class QuestTopKMasker(TopKMasker):
    """Scores each page by Quest's upper bound and keeps the best pages' keys."""

    config_type = QuestTopKMaskerConfig
    config: QuestTopKMaskerConfig

    def prepare(
        self,
        keys: torch.Tensor,
        queries: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float,
        sparse_meta_data: dict[Any, Any],
        **kwargs: Any,
    ) -> Any:
        state = config_state(
            self.layer_state(sparse_meta_data, kwargs.get("layer_idx")),
            self.config,
            ("page_size", "label_bits"),
        )
        size, bits = self.config.page_size, self.config.label_bits
        return incremental_key_features(
            state, "page_bounds", keys, lambda seg: page_bounds(seg, size, bits), unit=size
        )

    def key_scores(
        self,
        keys: torch.Tensor,
        queries: torch.Tensor,
        values: torch.Tensor,
        scaling: float,
        state: Any,
        *,
        key_limit: int,
        **kwargs: Any,
    ) -> torch.Tensor:
        bounds: torch.Tensor = state  # [B, Hkv, P, 2, D]
        size = self.config.page_size
        pages = -(-key_limit // size)
        low, high = bounds[:, :, :pages, 0], bounds[:, :, :pages, 1]
        b, hq, qc, d = queries.shape
        hkv = keys.shape[1]
        grouped = queries.float().reshape(b, hkv, (hq // hkv) * qc, d)
        # max(q m, q M) summed over d = relu(q) . M + min(q, 0) . m
        page_scores = grouped.clamp_min(0.0) @ high.transpose(-1, -2)
        page_scores += grouped.clamp_max(0.0) @ low.transpose(-1, -2)
        page_scores = page_scores.view(b, hq, qc, pages)
        return expand_page_scores(page_scores, size, key_limit)

"""PQCache top-k masker: keys ranked by product-quantised inner products.

Zhang, Yang, Wang, Zhou, Guan, Ma, Jiang, Guo, Bao, Cui, "PQCache: Product Quantization-based
KVCache for Long Context LLM Inference", 2024, arXiv:2407.12820 (SIGMOD 2025).

Per KV head the key dimension ``D`` is split into ``m = pq_group_factor`` sub-vectors of
``D / m`` channels (the product-quantisation sub-spaces). In each sub-space ``2^pq_bits``
centroids are learned with ``kmeans_iter`` Lloyd iterations (initialised deterministically
with evenly spaced keys; fewer centroids when there are fewer keys; an empty cluster keeps its
centroid), every key is coded by its nearest centroid per sub-space, and ``q . k`` is
approximated by ``sum_s q_s . c_s[code_s(k)]`` (a lookup per sub-space; here computed as
``q . k_hat`` with the reconstructed key). The top ``heavy_size`` keys are kept.

``metric`` is the similarity k-means clusters with: ``"euclidean"`` (nearest centroid in L2)
or ``"ip"`` (largest inner product); centroids are cluster means in both cases. Keys before
``init_offset`` (the sink region, attended by a sink masker) are neither used to fit the
centroids nor selected by this masker.

State per layer (``sparse_meta_data``): the centroids are fitted once, on the keys of the
first call that has keys past ``init_offset`` (the context prefill, as in PQCache), and new
decode keys are coded with those centroids; codes (and the keys rebuilt from them) are cached
and extended incrementally. If the keys no longer extend the fitted ones (a new request), the
centroids are refitted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from sah_core.attention.common import grouped_scores
from sah_core.maskers.base import check_choice, check_int
from sah_core.maskers.key_state_cache import config_state, incremental_key_features
from sah_core.maskers.topk_base import TopKMasker, TopKMaskerConfig

_METRICS = ("euclidean", "ip")


@dataclasses.dataclass
class PQCacheConfig(TopKMaskerConfig):
    """``heavy_size`` keys per row; ``pq_group_factor`` sub-spaces (>= 1, must divide D);
    ``pq_bits`` in [1, 16] (2^bits centroids per sub-space); ``kmeans_iter`` >= 0 Lloyd
    iterations; ``init_offset`` >= 0 leading (sink) keys left out; ``metric`` euclidean/ip."""

    pq_group_factor: int = 2
    pq_bits: int = 6
    kmeans_iter: int = 10
    init_offset: int = 0
    metric: str = "euclidean"

    def validate(self) -> None:
        super().validate()
        check_int(self, "pq_group_factor", self.pq_group_factor, 1)
        check_int(self, "pq_bits", self.pq_bits, 1, 16)
        check_int(self, "kmeans_iter", self.kmeans_iter, 0)
        check_int(self, "init_offset", self.init_offset, 0)
        check_choice(self, "metric", self.metric, _METRICS)


def split_subspaces(keys: torch.Tensor, parts: int) -> torch.Tensor:
    """``[B, H, N, D]`` -> ``[B, H, m, N, D/m]`` (float32)."""
    b, h, n, d = keys.shape
    return keys.float().reshape(b, h, n, parts, d // parts).permute(0, 1, 3, 2, 4)


def assign(points: torch.Tensor, centroids: torch.Tensor, metric: str) -> torch.Tensor:
    """Nearest centroid ``[B, H, m, N]`` of ``points [B, H, m, N, d]`` among
    ``centroids [B, H, m, C, d]`` (first one on ties)."""
    similarity = points @ centroids.transpose(-1, -2)
    if metric == "euclidean":
        # argmin |x - c|^2 = argmax (x.c - |c|^2 / 2)
        similarity -= 0.5 * centroids.square().sum(-1).unsqueeze(-2)
    return similarity.argmax(dim=-1)


def fit_centroids(
    points: torch.Tensor, clusters: int, iterations: int, metric: str
) -> torch.Tensor:
    """Lloyd's k-means per ``[B, H, m]`` on ``points [B, H, m, N, d]`` -> ``[B, H, m, C, d]``."""
    n = points.shape[3]
    count = min(clusters, n)
    start = torch.linspace(0, n - 1, count).round().long().to(points.device)
    centroids = points[:, :, :, start].clone()
    for _ in range(iterations):
        codes = assign(points, centroids, metric)  # [B, H, m, N]
        # cluster sums and sizes by scatter-add (no [N, C] one-hot)
        sums = torch.zeros_like(centroids).scatter_add_(
            3, codes.unsqueeze(-1).expand_as(points), points
        )
        sizes = torch.zeros(centroids.shape[:4], dtype=points.dtype, device=points.device)
        sizes.scatter_add_(3, codes, torch.ones_like(codes, dtype=points.dtype))
        sizes = sizes.unsqueeze(-1)
        centroids = torch.where(sizes > 0, sums / sizes.clamp_min(1.0), centroids)
    return centroids


def reconstruct(codes: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Keys rebuilt from their codes: ``codes [B, H, N, m]`` -> ``[B, H, N, D]``."""
    b, h, m, c, sub = centroids.shape
    n = codes.shape[2]
    base = torch.arange(b * h * m, device=codes.device).view(b, h, 1, m) * c
    flat = centroids.reshape(b * h * m * c, sub)[(base + codes).reshape(-1)]
    return flat.view(b, h, n, m * sub)


class PQCache(TopKMasker):
    """Ranks keys by product-quantised inner products with the query."""

    config_type = PQCacheConfig
    config: PQCacheConfig

    def _centroids(self, keys: torch.Tensor, state: dict[str, Any]) -> torch.Tensor | None:
        """The layer's centroids, fitted now when missing or stale; None before any key past
        ``init_offset`` exists."""
        offset = self.config.init_offset
        key_len = keys.shape[2]
        fit = state.get("fit")
        if isinstance(fit, dict):
            fit_len: int = fit["key_len"]
            probe: torch.Tensor = fit["probe"]
            if (
                fit_len <= key_len
                and probe.shape == keys[:, :, 0].shape
                and probe.dtype == keys.dtype
                and probe.device == keys.device
                and torch.equal(probe, keys[:, :, fit_len - 1])
            ):
                centroids: torch.Tensor = fit["centroids"]
                return centroids
        if key_len <= offset:
            return None
        points = split_subspaces(keys[:, :, offset:], self.config.pq_group_factor)
        centroids = fit_centroids(
            points, 2**self.config.pq_bits, self.config.kmeans_iter, self.config.metric
        )
        state["fit"] = {
            "centroids": centroids,
            "key_len": key_len,
            "probe": keys[:, :, key_len - 1].clone(),
        }
        # codes of other centroids are meaningless now
        state.pop("codes", None)
        state.pop("approx_keys", None)
        return centroids

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
        d = keys.shape[-1]
        parts = self.config.pq_group_factor
        if d % parts != 0:
            raise ValueError(
                f"PQCacheConfig.pq_group_factor={parts} is not allowed for head dim {d}: it must "
                "divide the head dim"
            )
        state = config_state(
            self.layer_state(sparse_meta_data, kwargs.get("layer_idx")),
            self.config,
            ("pq_group_factor", "pq_bits", "kmeans_iter", "init_offset", "metric"),
        )
        centroids = self._centroids(keys, state)
        if centroids is None:
            return None
        metric = self.config.metric

        def key_codes(segment: torch.Tensor) -> torch.Tensor:
            # [B, H, m, n] -> [B, H, n, m]
            return assign(split_subspaces(segment, parts), centroids, metric).transpose(-1, -2)

        incremental_key_features(state, "codes", keys, key_codes)
        # the reconstructed keys are cached too, so decode never rebuilds all of them
        return incremental_key_features(
            state, "approx_keys", keys, lambda seg: reconstruct(key_codes(seg), centroids)
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
        b, hq, qc, _ = queries.shape
        if state is None:  # only sink-region keys so far
            return torch.full((b, hq, qc, key_limit), float("-inf"), device=queries.device)
        approx_keys: torch.Tensor = state
        scores = grouped_scores(queries.float(), approx_keys[:, :, :key_limit], 1.0)
        scores[..., : self.config.init_offset] = float("-inf")
        return scores

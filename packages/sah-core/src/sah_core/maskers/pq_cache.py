"""PQCache top-k masker: keys ranked by product-quantised inner products.

Zhang, Yang, Wang, Zhou, Guan, Ma, Jiang, Guo, Bao, Cui, "PQCache: Product Quantization-based
KVCache for Long Context LLM Inference", 2024, arXiv:2407.12820 (SIGMOD 2025).

Per KV head the key dimension ``D`` is split into ``m = pq_group_factor`` sub-vectors of
``D / m`` channels (the product-quantisation sub-spaces). In each sub-space ``2^pq_bits``
centroids are learned with ``kmeans_iter`` Lloyd iterations (initialised deterministically
with evenly spaced keys; fewer centroids when there are fewer keys; an empty cluster keeps its
centroid), every key is coded by its nearest centroid per sub-space, and ``q . k`` is
approximated by ``sum_s q_s . c_s[code_s(k)]`` (a lookup per sub-space, as in the paper:
each query's ``m x 2^pq_bits`` table of ``q_s . c`` is read at the keys' codes). The top
``heavy_size`` keys are kept.

``metric`` is the similarity k-means clusters with: ``"euclidean"`` (nearest centroid in L2)
or ``"ip"`` (largest inner product); centroids are cluster means in both cases. Keys before
``init_offset`` (the sink region, attended by a sink masker) are neither used to fit the
centroids nor selected by this masker.

Padded keys of a batch (``CallPlan.key_valid``) are left out of the fit, and each batch row
starts from its own evenly spaced keys, so a batched row gets the centroids it gets alone.

State (the masker's slot): the centroids are fitted once, on the keys of the
first call that has keys past ``init_offset`` (the context prefill, as in PQCache), and new
decode keys are coded with those centroids; codes (and the keys rebuilt from them) are cached
and extended incrementally. If the keys no longer extend the fitted ones (a new request), the
centroids are refitted. (Earlier versions also cached the rebuilt keys ``k_hat`` and scored
``q . k_hat``: the same scores up to float rounding, at the cost of a dense ``[N, D]`` read.)
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from sah_core import search_space as sp
from sah_core.call_plan import CallPlan, QueryChunk
from sah_core.maskers.base import check_choice, check_int
from sah_core.maskers.key_state_cache import incremental_key_features, prefix_unchanged
from sah_core.maskers.topk_base import TopKMasker, TopKMaskerConfig

_METRICS = ("euclidean", "ip")


@dataclasses.dataclass
class PQCacheConfig(TopKMaskerConfig):
    """``heavy_size`` keys per row; ``pq_group_factor`` sub-spaces (>= 1, must divide D);
    ``pq_bits`` in [1, 16] (2^bits centroids per sub-space); ``kmeans_iter`` >= 0 Lloyd
    iterations; ``init_offset`` >= 0 leading (sink) keys left out; ``metric`` euclidean/ip."""

    type_tag = "pq_cache"

    pq_group_factor: int = 2
    pq_bits: int = 6
    kmeans_iter: int = 10
    init_offset: int = 0
    metric: str = "euclidean"
    search_space: ClassVar[sp.SearchSpace] = TopKMaskerConfig.search_space.extend(
        (sp.divides_head_dim("pq_group_factor"), sp.centroids_fit_keys),
        pq_group_factor=sp.Choice((1, 2, 4, 8)),
        pq_bits=sp.IntRange(2, 8),
    )

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


def assign(
    points: torch.Tensor,
    centroids: torch.Tensor,
    metric: str,
    centroid_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Nearest centroid ``[B, H, m, N]`` of ``points [B, H, m, N, d]`` among
    ``centroids [B, H, m, C, d]`` (first one on ties); ``centroid_valid [B, C]`` (None: all)
    marks the slots a batch row really has (a row with fewer keys has fewer centroids)."""
    similarity = points @ centroids.transpose(-1, -2)
    if metric == "euclidean":
        # argmin |x - c|^2 = argmax (x.c - |c|^2 / 2)
        similarity -= 0.5 * centroids.square().sum(-1).unsqueeze(-2)
    if centroid_valid is not None:
        similarity.masked_fill_(~centroid_valid[:, None, None, None, :], float("-inf"))
    return similarity.argmax(dim=-1)


def fit_centroids(
    points: torch.Tensor,
    clusters: int,
    iterations: int,
    metric: str,
    point_valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Lloyd's k-means per ``[B, H, m]`` on ``points [B, H, m, N, d]`` -> centroids
    ``[B, H, m, C, d]`` and their validity ``[B, C]`` (None: all valid).

    ``point_valid [B, N]`` (None: all) keeps padded keys out of the fit. Each row starts
    from ``min(clusters, n)`` of its own ``n`` points, evenly spaced in its own order, so a
    padded batch row fits what the row alone fits."""
    b, n = points.shape[0], points.shape[3]
    if point_valid is None:
        count = min(clusters, n)
        start = torch.linspace(0, n - 1, count).round().long().to(points.device)
        centroids = points[:, :, :, start].clone()
        slot_valid = None
    else:
        counts = point_valid.sum(-1).tolist()
        width = max(1, min(clusters, max(counts)))
        order = torch.sort(
            torch.where(point_valid, torch.arange(n, device=points.device), n), dim=-1
        ).indices  # each row's own points first, in order
        starts = torch.zeros(b, width, dtype=torch.int64, device=points.device)
        slot_valid = torch.zeros(b, width, dtype=torch.bool, device=points.device)
        for row, own in enumerate(counts):
            count = min(clusters, own)
            if count == 0:
                continue
            picks = torch.linspace(0, own - 1, count).round().long().to(points.device)
            starts[row, :count] = order[row, picks]
            slot_valid[row, :count] = True
        index = starts.view(b, 1, 1, width, 1).expand(*points.shape[:3], width, points.shape[-1])
        centroids = points.gather(3, index).clone()
    weight = None if point_valid is None else point_valid.to(points.dtype)[:, None, None, :]
    for _ in range(iterations):
        codes = assign(points, centroids, metric, slot_valid)  # [B, H, m, N]
        # cluster sums and sizes by scatter-add (no [N, C] one-hot); pads weigh nothing
        members = points if weight is None else points * weight.unsqueeze(-1)
        sums = torch.zeros_like(centroids).scatter_add_(
            3, codes.unsqueeze(-1).expand_as(points), members
        )
        ones = torch.ones_like(codes, dtype=points.dtype)
        if weight is not None:
            ones = ones * weight
        sizes = torch.zeros(centroids.shape[:4], dtype=points.dtype, device=points.device)
        sizes.scatter_add_(3, codes, ones)
        sizes = sizes.unsqueeze(-1)
        centroids = torch.where(sizes > 0, sums / sizes.clamp_min(1.0), centroids)
    return centroids, slot_valid


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
    #: keys sharing their codes score exactly alike: ties go to the earlier key (stable
    #: sort), the same batched as one by one
    tied_scores = True

    def _centroids(
        self, call: CallPlan, state: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """The layer's centroids (and slot validity), fitted now when missing or stale; None
        before any (valid) key past ``init_offset`` exists."""
        keys = call.keys
        offset = self.config.init_offset
        key_len = keys.shape[2]
        fit = state.get("fit")
        if isinstance(fit, dict) and prefix_unchanged(keys, fit["key_len"], fit["probe"]):
            fitted: tuple[torch.Tensor, torch.Tensor | None] = fit["centroids"]
            return fitted
        if key_len <= offset:
            return None
        valid = call.key_valid
        point_valid = None if valid is None else valid[:, offset:]
        if point_valid is not None and not bool(point_valid.any()):
            return None
        points = split_subspaces(keys[:, :, offset:], self.config.pq_group_factor)
        fitted = fit_centroids(
            points,
            2**self.config.pq_bits,
            self.config.kmeans_iter,
            self.config.metric,
            point_valid,
        )
        state["fit"] = {
            "centroids": fitted,
            "key_len": key_len,
            "probe": keys[:, :, key_len - 1].clone(),
        }
        # codes of other centroids are meaningless now
        state.pop("codes", None)
        state.pop("approx_keys", None)
        return fitted

    def prepare(self, call: CallPlan) -> Any:
        d = call.head_dim
        parts = self.config.pq_group_factor
        if d % parts != 0:
            raise ValueError(
                f"PQCacheConfig.pq_group_factor={parts} is not allowed for head dim {d}: it must "
                "divide the head dim"
            )
        state = call.state
        fitted = self._centroids(call, state)
        if fitted is None:
            return None
        centroids, slot_valid = fitted
        metric = self.config.metric

        def key_codes(segment: torch.Tensor) -> torch.Tensor:
            # [B, H, m, n] -> [B, H, n, m]
            codes = assign(split_subspaces(segment, parts), centroids, metric, slot_valid)
            return codes.transpose(-1, -2)

        codes = incremental_key_features(state, "codes", call.keys, key_codes)
        state.pop("approx_keys", None)  # older states cached the rebuilt keys
        return codes, centroids

    def key_scores(self, call: CallPlan, chunk: QueryChunk, state: Any) -> torch.Tensor:
        b, hq, qc, _ = chunk.queries.shape
        key_limit = chunk.key_limit
        if state is None:  # only sink-region keys so far
            return torch.full((b, hq, qc, key_limit), float("-inf"), device=call.device)
        codes, centroids = state
        scores = lookup_scores(chunk.queries, codes[:, :, :key_limit], centroids)
        scores[..., : self.config.init_offset] = float("-inf")
        return scores


def lookup_scores(
    queries: torch.Tensor, codes: torch.Tensor, centroids: torch.Tensor
) -> torch.Tensor:
    """PQ inner products by table lookup, as in the paper: ``sum_s q_s . c_s[code_s(k)]``.

    ``queries [B, Hq, Q, D]``, ``codes [B, Hkv, N, m]`` (int64), ``centroids [B, Hkv, m, C,
    D/m]`` -> fp32 ``[B, Hq, Q, N]``. One small matmul gives each query's ``m x C`` table of
    ``q_s . c`` and one gather reads it per key: no ``[N, D]`` reconstructed keys are read
    (at 32K keys those cost as much memory traffic as the dense ``q . K``). Keys sharing
    their codes get bit-identical scores.
    """
    b, hq, q, _ = queries.shape
    hkv, m, clusters, sub = centroids.shape[1:]
    n = codes.shape[2]
    group = hq // hkv
    # [B, Hkv, m, G*Q, sub] @ [B, Hkv, m, sub, C] -> tables [B, Hkv, G*Q, m*C]
    grouped = queries.float().reshape(b, hkv, group * q, m, sub).transpose(2, 3)
    tables = torch.matmul(grouped, centroids.transpose(-1, -2)).transpose(2, 3)
    tables = tables.reshape(b, hkv, group * q, m * clusters)
    if m == 1:
        index = codes.reshape(b, hkv, 1, n)
    else:
        offsets = torch.arange(0, m * clusters, clusters, device=codes.device)
        index = (codes + offsets).reshape(b, hkv, 1, n * m)
    picked = tables.gather(-1, index.expand(b, hkv, group * q, index.shape[-1]))
    if m > 1:
        picked = picked.view(b, hkv, group * q, n, m).sum(-1)
    return picked.view(b, hq, q, n)

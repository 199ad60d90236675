"""SOCKET top-k masker: keys ranked by a soft LSH collision score with the query.

Joshi, Chowdhury, Bellinger, Kanakamedala, Singh, Le, Desai and Shrivastava, "SOCKET: SOft
Collision Kernel EsTimator for Sparse Attention", 2026, arXiv:2602.06283.

SOCKET replaces the hard "same bucket or not" signal of LSH with a graded, similarity-aware
collision probability aggregated over hash tables, which makes LSH usable as a ranker. Here:
``L`` tables of ``K`` random hyperplanes (signed random projections). A key is hashed hard:
its bucket in table ``l`` is the sign pattern ``s_l(k) in {-1, +1}^K`` of its projections. The
query is hashed softly: with projections ``u_l = W_l q``, its probability of landing in bucket
``s`` is a softmax over the ``2^K`` buckets of ``<u_l, s> / tau``, which factorises over the
hyperplanes as ``prod_j sigmoid(2 s_j u_lj / tau)``. A key's score is its soft collision
count ``sum_l P_l(s_l(k) | q)``; the top ``heavy_size`` keys are kept. ``tau`` -> 0 recovers
hard bucket matching, a large ``tau`` flattens the kernel. (The paper defines the soft
collision kernel; the softmax-over-bucket-corners form with temperature ``tau`` is this
implementation's reading of it.)

The score is returned as ``log sum_l P_l`` (same ranking, no underflow for small ``tau``).
Hyperplanes are drawn from a fixed seed and the layer index (deterministic, shared by the
heads of a layer) and kept with the key bucket codes per layer in ``sparse_meta_data``;
decode hashes only the new keys.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from sah_core.maskers.base import check_float, check_int
from sah_core.maskers.key_state_cache import config_state, incremental_key_features
from sah_core.maskers.topk_base import TopKMasker, TopKMaskerConfig

#: Base seed of the hyperplanes (the layer index is added).
PLANE_SEED = 0x50C4E7


@dataclasses.dataclass
class SocketMaskerConfig(TopKMaskerConfig):
    """``heavy_size`` keys per row; ``K`` hyperplanes per table (>= 1); ``L`` tables (>= 1);
    ``tau`` > 0 temperature of the soft collision."""

    K: int = 8
    L: int = 32
    tau: float = 1.0

    def validate(self) -> None:
        super().validate()
        check_int(self, "K", self.K, 1)
        check_int(self, "L", self.L, 1)
        check_float(self, "tau", self.tau, 0.0, float("inf"), low_inclusive=False)


def hyperplanes(layer_idx: int | None, tables: int, bits: int, dim: int) -> torch.Tensor:
    """Deterministic Gaussian hyperplanes ``[L, K, D]`` (float32, CPU) of one layer."""
    generator = torch.Generator().manual_seed(PLANE_SEED + (layer_idx or 0))
    return torch.randn(tables, bits, dim, generator=generator)


class SocketMasker(TopKMasker):
    """Scores keys by their soft collision probability with the query, summed over tables."""

    config_type = SocketMaskerConfig
    config: SocketMaskerConfig

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
        layer_idx = kwargs.get("layer_idx")
        state = config_state(self.layer_state(sparse_meta_data, layer_idx), self.config, ("K", "L"))
        tables, bits, dim = self.config.L, self.config.K, keys.shape[-1]
        planes = state.get("planes")
        if not isinstance(planes, torch.Tensor) or planes.shape != (tables, bits, dim):
            planes = hyperplanes(layer_idx, tables, bits, dim).to(keys.device)
            state["planes"] = planes
            state.pop("key_buckets", None)
        flat = planes.reshape(tables * bits, dim)

        def key_buckets(segment: torch.Tensor) -> torch.Tensor:
            # 1.0 where the key lies on the positive side of the hyperplane: [B, Hkv, n, L*K]
            return (segment.float() @ flat.T >= 0).float()

        buckets = incremental_key_features(state, "key_buckets", keys, key_buckets)
        return planes, buckets

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
        planes, buckets = state
        tables, bits = self.config.L, self.config.K
        b, hq, qc, d = queries.shape
        hkv = keys.shape[1]
        grouped = queries.float().reshape(b, hkv, (hq // hkv) * qc, d)
        # a_lj = 2 u_lj / tau; log P_l(s) = sum_j logsigmoid(-a_lj) + sum_j [s_j = +1] a_lj
        scaled = (grouped @ planes.reshape(tables * bits, d).T) * (2.0 / self.config.tau)
        scaled = scaled.view(b, hkv, -1, tables, bits)
        base = torch.nn.functional.logsigmoid(-scaled).sum(-1)  # [B, Hkv, G*Qc, L]
        key_bits = buckets[:, :, :key_limit].view(b, hkv, key_limit, tables, bits)
        total: torch.Tensor | None = None
        for table in range(tables):
            log_p = scaled[..., table, :] @ key_bits[..., table, :].transpose(-1, -2)
            log_p += base[..., table, None]
            total = log_p if total is None else torch.logaddexp(total, log_p)
        assert total is not None
        return total.view(b, hq, qc, key_limit)

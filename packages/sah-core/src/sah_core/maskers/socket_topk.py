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
count ``C(k) = sum_l P_l(s_l(k) | q)``, and SOCKET's score multiplies it by the key's value
norm, ``C(k) * ||v_k||`` (a key with a large value moves the output more); the top
``heavy_size`` keys are kept. ``tau`` -> 0 recovers
hard bucket matching, a large ``tau`` flattens the kernel. (The paper defines the soft
collision kernel; the softmax-over-bucket-corners form with temperature ``tau`` is this
implementation's reading of it.)

The score is returned as ``log sum_l P_l + log ||v||`` (same ranking, no underflow for small
``tau``). Hyperplanes are drawn from a fixed seed and the layer index (deterministic, shared
by the heads of a layer) and kept with the key bucket codes and value norms in the masker's
state slot; decode hashes only the new keys. Hashing is per key, so padded keys of a batch
never affect another key's score (and are never selected: the attention mask forbids them).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch

from sah_core import search_space as sp
from sah_core.call_plan import CallPlan, QueryChunk
from sah_core.maskers.base import check_float, check_int
from sah_core.maskers.key_state_cache import incremental_key_features
from sah_core.maskers.topk_base import TopKMasker, TopKMaskerConfig

#: Upper bounds of ``K`` and ``L``: hyperplanes and per-key codes grow as ``L * K``, so larger
#: values can only exhaust memory (the method uses a few bits and tens of tables).
MAX_BITS = 64
MAX_TABLES = 1024

#: Base seed of the hyperplanes (the layer index is added).
PLANE_SEED = 0x50C4E7


@dataclasses.dataclass
class SocketMaskerConfig(TopKMaskerConfig):
    """``heavy_size`` keys per row; ``K`` hyperplanes per table (1..MAX_BITS); ``L`` tables
    (1..MAX_TABLES); ``tau`` > 0 temperature of the soft collision."""

    type_tag = "socket"

    K: int = 8
    L: int = 32
    tau: float = 1.0
    search_space: ClassVar[sp.SearchSpace] = TopKMaskerConfig.search_space.extend(
        K=sp.IntRange(4, 16),
        L=sp.IntRange(8, 128, log=True),
        tau=sp.FloatRange(0.1, 10.0, log=True),
    )

    def validate(self) -> None:
        super().validate()
        check_int(self, "K", self.K, 1, MAX_BITS)
        check_int(self, "L", self.L, 1, MAX_TABLES)
        check_float(self, "tau", self.tau, 0.0, float("inf"), low_inclusive=False)


def hyperplanes(layer_idx: int | None, tables: int, bits: int, dim: int) -> torch.Tensor:
    """Deterministic Gaussian hyperplanes ``[L, K, D]`` (float32, CPU) of one layer."""
    generator = torch.Generator().manual_seed(PLANE_SEED + (layer_idx or 0))
    return torch.randn(tables, bits, dim, generator=generator)


#: Bits per lookup chunk: a table's K bits are scored 8 at a time through a 256-entry table.
CHUNK_BITS = 8
#: Elements of one gathered ``[B, Hkv, G*Qc, K', tables*chunks]`` block (caps memory).
BLOCK_ELEMENTS = 1 << 22


def chunk_widths(bits: int) -> list[int]:
    """Widths of the <= ``CHUNK_BITS``-bit chunks a ``bits``-bit code is split into."""
    full, rest = divmod(bits, CHUNK_BITS)
    return [CHUNK_BITS] * full + ([rest] if rest else [])


class SocketMasker(TopKMasker):
    """Scores keys by their soft collision probability with the query, summed over tables.

    A key's bucket code per table is stored as chunk ids (8 bits each, already offset into a
    flat per-query lookup table), so scoring is one gather of precomputed per-bucket
    log-probabilities per chunk instead of a product over the hyperplanes.
    """

    config_type = SocketMaskerConfig
    config: SocketMaskerConfig

    def prepare(self, call: CallPlan) -> Any:
        layer_idx = call.layer_idx
        state = call.state
        keys = call.keys
        tables, bits, dim = self.config.L, self.config.K, keys.shape[-1]
        planes = state.get("planes")
        if not isinstance(planes, torch.Tensor) or planes.shape != (tables, bits, dim):
            planes = hyperplanes(layer_idx, tables, bits, dim).to(keys.device)
            state["planes"] = planes
            state.pop("key_buckets", None)
        flat = planes.reshape(tables * bits, dim)
        widths = chunk_widths(bits)
        chunks = len(widths)
        # bit j of a chunk weighs 2^j; chunk c of table l starts at (l * chunks + c) * 256
        powers = torch.cat([2 ** torch.arange(w, device=keys.device) for w in widths])
        owner = torch.cat([torch.full((w,), c, device=keys.device) for c, w in enumerate(widths)])
        offsets = torch.arange(tables * chunks, device=keys.device).view(tables, chunks)
        offsets = offsets * (1 << CHUNK_BITS)

        def key_buckets(segment: torch.Tensor) -> torch.Tensor:
            # sign pattern -> per (table, chunk) flat lookup index: [B, Hkv, n, L*C] int64
            positive = (segment.float() @ flat.T >= 0).long()
            weighted = positive.view(*segment.shape[:3], tables, bits) * powers
            ids = torch.zeros(
                (*segment.shape[:3], tables, chunks), dtype=torch.int64, device=segment.device
            )
            ids.index_add_(-1, owner, weighted)
            return (ids + offsets).flatten(-2)

        buckets = incremental_key_features(state, "key_buckets", keys, key_buckets)
        # log ||v||: the value-norm factor of SOCKET's score (values grow like the keys)
        log_norms = incremental_key_features(
            state,
            "value_log_norms",
            call.values,
            lambda seg: seg.float().norm(dim=-1).clamp_min(1e-30).log(),
        )
        return planes, buckets, log_norms

    def key_scores(self, call: CallPlan, chunk: QueryChunk, state: Any) -> torch.Tensor:
        planes, buckets, log_norms = state
        queries, keys, key_limit = chunk.queries, call.keys, chunk.key_limit
        tables, bits = self.config.L, self.config.K
        b, hq, qc, d = queries.shape
        hkv = keys.shape[1]
        rows = (hq // hkv) * qc
        grouped = queries.float().reshape(b, hkv, rows, d)
        # a_lj = 2 u_lj / tau; log P_l(s) = sum_j logsigmoid(-a_lj) + sum_j [s_j = +1] a_lj
        scaled = (grouped @ planes.reshape(tables * bits, d).T) * (2.0 / self.config.tau)
        scaled = scaled.view(b, hkv, rows, tables, bits)
        ids = buckets[:, :, :key_limit].unsqueeze(2)  # [B, Hkv, 1, K', L*C]
        # query rows in blocks, so the per-row lookup tables stay small in prefill
        width = max(tables * len(chunk_widths(bits)) << CHUNK_BITS, key_limit)
        step = max(1, BLOCK_ELEMENTS // max(1, b * hkv * width))
        parts = [
            self._score_rows(scaled[:, :, first : first + step], ids)
            for first in range(0, rows, step)
        ]
        total = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        norms: torch.Tensor = log_norms[:, :, None, :key_limit]
        return (total + norms).view(b, hq, qc, key_limit)

    def _score_rows(self, scaled: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """log sum_l P_l(bucket_l(k) | q) ``[B, Hkv, R, K']`` for query rows ``scaled``
        ``[B, Hkv, R, L, K]`` (``a = 2 u / tau``) and key chunk ids ``[B, Hkv, 1, K', L*C]``."""
        tables, bits = self.config.L, self.config.K
        widths = chunk_widths(bits)
        chunks = len(widths)
        b, hkv, rows = scaled.shape[:3]
        key_limit = ids.shape[3]
        base = torch.nn.functional.logsigmoid(-scaled).sum(-1)  # [B, Hkv, R, L]
        # per (table, chunk): the sum of a_lj over the set bits of every possible chunk value
        lookup = scaled.new_zeros(b, hkv, rows, tables, chunks, 1 << CHUNK_BITS)
        start = 0
        for c, width in enumerate(widths):
            value = torch.arange(1 << width, device=scaled.device)
            corner = ((value[:, None] >> torch.arange(width, device=scaled.device)) & 1).float()
            lookup[..., c, : 1 << width] = scaled[..., start : start + width] @ corner.T
            start += width
        entries = tables * chunks << CHUNK_BITS
        table = lookup.view(b, hkv, rows, 1, entries).expand(b, hkv, rows, key_limit, entries)
        per_block = max(1, BLOCK_ELEMENTS // max(1, b * hkv * rows * key_limit * chunks))
        total: torch.Tensor | None = None
        for first in range(0, tables, per_block):
            last = min(tables, first + per_block)
            index = ids[..., first * chunks : last * chunks].expand(
                b, hkv, rows, key_limit, (last - first) * chunks
            )
            log_p = table.gather(-1, index).view(b, hkv, rows, key_limit, last - first, chunks)
            log_p = log_p.sum(-1) + base[:, :, :, None, first:last]
            block = torch.logsumexp(log_p, dim=-1)
            total = block if total is None else torch.logaddexp(total, block)
        assert total is not None
        return total

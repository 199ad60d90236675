"""MagicPIG sampling masker: keys sampled by SimHash collisions, weighted by their exact
collision probability.

Chen, Sadhukhan, Ye, Zhou, Zhang, Nolte, Tian, Douze, Bottou, Jia and Chen, "MagicPIG: LSH
Sampling for Efficient LLM Generation", ICLR 2025, arXiv:2410.16179.

SimHash with ``L = lsh_l`` tables of ``K = lsh_k`` random hyperplanes each: a vector's code
in a table is the sign pattern of its ``K`` projections. A key collides with the query in a
table when the two codes are equal; for an angle ``theta`` between them one hyperplane agrees
with probability ``p = 1 - theta / pi``, so a table collides with probability ``p^K``.
MagicPIG samples a key when it collides with the query in **at least two** tables
(``MIN_COLLISIONS``), which happens with probability

    ``u = 1 - (1 - p^K)^L - L p^K (1 - p^K)^(L - 1)``

and the sampled key's exp-score is weighted by ``1/u`` (importance sampling; here the kept
key's mask weight is ``u``, floored at ``MIN_PROBABILITY`` so that a lucky collision of an
almost orthogonal key cannot blow up the estimate). The draw itself is the hash collision (the
randomness is the hyperplanes), not a Bernoulli draw.

``center``: subtract the mean key before hashing (keys of an LLM head share a large common
component, which would make every angle small); the softmax is unchanged because
``q . (k - c)`` differs from ``q . k`` by a per-query constant. Queries are not centred. The
mean is taken over all keys of the first call of the request (the context prefill) and kept
for the decode keys (the authors average the prefill keys outside their sink/local windows;
here the masker does not know the other maskers' windows, so it averages them all).
``packing``: ``"int64"`` stores one packed integer code per key and table, ``"float"`` stores
the +-1 bits as floats; both give identical samples. ``seed`` fixes the hyperplanes (with the
layer index). Codes, key norms and the centre are kept in the masker's state slot. The
centre averages only a batch row's real keys (``CallPlan.key_valid``), so left padding in a
batch changes no row's codes; hashing is per key.

Collision rule and estimator follow the MagicPIG paper and its authors' code (sample on at
least two collisions, weight by the exact probability of that event); the original
sparse-attention-hub samples on one collision with ``u = 1 - (1 - p^K)^L``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch

from sah_core import search_space as sp
from sah_core.attention.common import grouped_scores
from sah_core.call_plan import CallPlan, QueryChunk
from sah_core.mask import Mask
from sah_core.maskers.base import check_choice, check_int
from sah_core.maskers.key_state_cache import incremental_key_features, valid_mean
from sah_core.maskers.sampling_base import SamplingMasker, SamplingMaskerConfig

#: A key is sampled when it collides with the query in at least this many tables.
MIN_COLLISIONS = 2
#: Floor of the importance weight (keep probability) of a sampled key.
MIN_PROBABILITY = 1e-6
#: Elements of one ``[B, Hkv, G*Qc, K, tables]`` code comparison block (caps memory).
BLOCK_ELEMENTS = 1 << 24
_PACKINGS = ("int64", "float")


#: Upper bound on ``lsh_l``: the paper's settings use at most a few hundred tables, and every
#: table costs one int64 code per key and head (10**5 tables would need gigabytes per layer).
MAX_TABLES = 1024


@dataclasses.dataclass
class MagicPigConfig(SamplingMaskerConfig):
    """``lsh_l`` tables (2..MAX_TABLES); ``lsh_k`` bits per table (1..62); ``center`` subtract
    the mean key; ``packing`` int64/float code storage; ``seed`` >= 0 of the hyperplanes."""

    type_tag = "magic_pig"

    lsh_l: int = 32
    lsh_k: int = 8
    center: bool = True
    packing: str = "int64"
    seed: int = 42
    search_space: ClassVar[sp.SearchSpace] = sp.SearchSpace(
        {"lsh_l": sp.IntRange(8, 256, log=True), "lsh_k": sp.IntRange(4, 12)}, (sp.budget_left,)
    )

    def validate(self) -> None:
        super().validate()
        check_int(self, "lsh_l", self.lsh_l, MIN_COLLISIONS, MAX_TABLES)
        check_int(self, "lsh_k", self.lsh_k, 1, 62)
        if not isinstance(self.center, bool):
            raise ValueError(
                f"MagicPigConfig.center={self.center!r} is not allowed: use True or False"
            )
        check_choice(self, "packing", self.packing, _PACKINGS)
        check_int(self, "seed", self.seed, 0, 2**40)


def simhash_planes(
    seed: int, layer_idx: int | None, tables: int, bits: int, dim: int
) -> torch.Tensor:
    """Deterministic Gaussian hyperplanes ``[L, K, D]`` (float32, CPU) of one layer."""
    generator = torch.Generator().manual_seed(seed * 100_003 + (layer_idx or 0))
    return torch.randn(tables, bits, dim, generator=generator)


def collision_probability(cosine: torch.Tensor, bits: int, tables: int) -> torch.Tensor:
    """MagicPIG's probability of colliding in >= 2 of ``tables`` tables of ``bits`` SimHash
    bits, from the cosine of the query-key angle (computed in float64)."""
    theta = torch.arccos(cosine.double().clamp(-1.0, 1.0))
    table = (1.0 - theta / math.pi) ** bits  # p^K
    miss = 1.0 - table
    return 1.0 - miss**tables - tables * table * miss ** (tables - 1)


class MagicPig(SamplingMasker):
    """Samples the keys that collide with the query in at least two SimHash tables."""

    config_type = MagicPigConfig
    config: MagicPigConfig

    # ------------------------------------------------------------------ per-layer tables
    def _center(
        self, keys: torch.Tensor, state: dict[str, Any], valid: torch.Tensor | None
    ) -> torch.Tensor:
        """Mean key ``[B, Hkv, 1, D]`` of the request's first call (zeros without centring),
        over the row's real keys only (``valid [B, K]``, None: all)."""
        if not self.config.center:
            return torch.zeros_like(keys[:, :, :1], dtype=torch.float32)
        fit = state.get("center")
        if isinstance(fit, dict):
            fit_len: int = fit["key_len"]
            probe: torch.Tensor = fit["probe"]
            if (
                fit_len <= keys.shape[2]
                and probe.shape == keys[:, :, 0].shape
                and probe.dtype == keys.dtype
                and probe.device == keys.device
                and torch.equal(probe, keys[:, :, fit_len - 1])
            ):
                mean: torch.Tensor = fit["mean"]
                return mean
        row_valid = None if valid is None else valid[:, None, :, None]
        mean = valid_mean(keys.float(), row_valid, dim=2, keepdim=True)
        key_len = keys.shape[2]
        state["center"] = {"mean": mean, "key_len": key_len, "probe": keys[:, :, -1].clone()}
        state.pop("codes", None)  # codes of another centre are meaningless now
        state.pop("norms", None)
        return mean

    def _codes(self, x: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
        """SimHash codes of ``x [B, H, N, D]``: int64 ``[B, H, N, L]`` or float +-1
        ``[B, H, N, L*K]`` (``packing``)."""
        tables, bits = self.config.lsh_l, self.config.lsh_k
        projections = x @ planes.reshape(tables * bits, -1).T
        positive = projections >= 0
        if self.config.packing == "int64":
            weights = 2 ** torch.arange(bits, device=x.device, dtype=torch.int64)
            return (positive.view(*x.shape[:3], tables, bits).long() * weights).sum(-1)
        return torch.where(positive, 1.0, -1.0)

    def _collisions(self, query_codes: torch.Tensor, key_codes: torch.Tensor) -> torch.Tensor:
        """Number of tables where query and key codes agree ``[B, Hkv, G*Qc, K]``."""
        tables, bits = self.config.lsh_l, self.config.lsh_k
        b, h, gq, _ = query_codes.shape
        k = key_codes.shape[2]
        count = torch.zeros(b, h, gq, k, dtype=torch.int64, device=query_codes.device)
        if self.config.packing == "int64":
            # tables in blocks: one contiguous [.., GQ, K, block] comparison per block, capped
            # in size so a long prefill chunk never holds all tables at once
            block = max(1, BLOCK_ELEMENTS // max(1, b * h * gq * k))
            for first in range(0, tables, block):
                last = min(tables, first + block)
                equal = (
                    query_codes[:, :, :, None, first:last] == key_codes[:, :, None, :, first:last]
                )
                count += equal.sum(-1)
            return count
        q_bits = query_codes.view(b, h, gq, tables, bits)
        k_bits = key_codes.view(b, h, k, tables, bits)
        for table in range(tables):
            agree = q_bits[..., table, :] @ k_bits[..., table, :].transpose(-1, -2)
            count += (agree == bits).long()  # +-1 codes agree on all K bits
        return count

    def _tables(
        self, call: CallPlan
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(planes, center, key codes, centred key norms)`` of this layer, kept in state."""
        state, keys, layer_idx = call.state, call.keys, call.layer_idx
        tables, bits, dim = self.config.lsh_l, self.config.lsh_k, keys.shape[-1]
        planes = state.get("planes")
        if not isinstance(planes, torch.Tensor) or planes.shape != (tables, bits, dim):
            planes = simhash_planes(self.config.seed, layer_idx, tables, bits, dim)
            planes = planes.to(keys.device)
            state["planes"] = planes
            state.pop("codes", None)
        center = self._center(keys, state, call.key_valid)
        codes = incremental_key_features(
            state, "codes", keys, lambda seg: self._codes(seg.float() - center, planes)
        )
        norms = incremental_key_features(
            state, "norms", keys, lambda seg: (seg.float() - center).norm(dim=-1, keepdim=True)
        )
        return planes, center, codes, norms

    # ------------------------------------------------------------------ sampling
    def _chunk(self, call: CallPlan, chunk: QueryChunk) -> tuple[torch.Tensor, torch.Tensor]:
        """``(collision counts, keep probabilities)``, each ``[B, Hq, Qc, K]``."""
        planes, center, key_codes, key_norms = self._tables(call)
        queries, keys = chunk.queries, call.keys
        b, hq, qc, d = queries.shape
        hkv, k = keys.shape[1], keys.shape[2]
        grouped = queries.float().reshape(b, hkv, (hq // hkv) * qc, d)
        collisions = self._collisions(self._codes(grouped, planes), key_codes)
        # cos(q, k - c) = (q.k - q.c) / (|q| |k - c|)
        dots = grouped_scores(queries.float(), keys.float(), 1.0).view(b, hkv, -1, k)
        dots = dots - grouped @ center.transpose(-1, -2)
        norms = grouped.norm(dim=-1, keepdim=True) * key_norms.transpose(-1, -2)
        cosine = dots / norms.clamp_min(torch.finfo(torch.float32).tiny)
        probs = collision_probability(cosine, self.config.lsh_k, self.config.lsh_l)
        probs = probs.clamp(MIN_PROBABILITY, 1.0).float()
        return collisions.view(b, hq, qc, k), probs.view(b, hq, qc, k)

    def keep_probabilities(
        self, call: CallPlan, chunk: QueryChunk, population: torch.Tensor, previous: Mask
    ) -> torch.Tensor:
        return self._chunk(call, chunk)[1]

    def sample_chunk(
        self, call: CallPlan, chunk: QueryChunk, population: torch.Tensor, previous: Mask
    ) -> tuple[torch.Tensor, torch.Tensor]:
        collisions, probs = self._chunk(call, chunk)
        return population & (collisions >= MIN_COLLISIONS), probs

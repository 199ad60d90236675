"""Sampling base: a subclass supplies keep-probabilities, the base draws and packs.

For each query chunk the base builds the *population* (keys in the masker's range, not in
the previous mask, allowed by the attention mask), asks ``keep_probabilities`` for the
probability ``p`` that each key is kept, draws independent Bernoulli(``p``) decisions with
the global torch RNG (deterministic under ``torch.manual_seed``), and returns the kept keys
in index form with weight ``p`` -- attention multiplies their exp-score by ``1/p``, which
makes the softmax numerator and denominator unbiased (Horvitz-Thompson) estimates.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import Any

import torch

from sah_core.attention.common import masked_keys, normalize_attention_mask, query_chunk_size
from sah_core.mask import Mask
from sah_core.maskers.base import MaskerConfig, ResearchMasker
from sah_core.maskers.topk_base import exclude_previous


@dataclasses.dataclass
class SamplingMaskerConfig(MaskerConfig):
    """Marker base of sampling-masker configs (at most one per ``ResearchAttentionConfig``)."""


def pack_kept(keep: torch.Tensor, probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bool ``[..., K]`` kept-keys + probabilities -> index form ``(indices, weights)``."""
    key_len = keep.shape[-1]
    width = int(keep.sum(-1).max()) if keep.numel() > 0 else 0
    positions = torch.arange(key_len, device=keep.device)
    keyed = torch.where(keep, positions, key_len)
    if width < key_len:
        packed = keyed.topk(width, dim=-1, largest=False, sorted=False).values
    else:
        packed = keyed
    valid = packed < key_len
    safe = packed.clamp(max=max(key_len - 1, 0))
    probs = probabilities.expand(keep.shape).gather(-1, safe)
    indices = torch.where(valid, packed, -1)
    weights = torch.where(valid, probs, torch.zeros((), dtype=probs.dtype, device=probs.device))
    return indices, weights


class SamplingMasker(ResearchMasker):
    """Base of the sampling maskers (see module doc). Override ``keep_probabilities``."""

    is_sampling = True

    def sampling_range(self, key_len: int) -> tuple[int, int]:
        """Half-open key range ``[start, end)`` the masker samples from (default: all)."""
        return 0, key_len

    @abstractmethod
    def keep_probabilities(
        self,
        keys: torch.Tensor,
        queries: torch.Tensor,
        values: torch.Tensor,
        scaling: float,
        population: torch.Tensor,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Probability in ``[0, 1]`` of keeping each key, broadcastable to ``[B, Hq, Qc, K]``.

        ``queries`` is the chunk, ``population`` the bool ``[B, Hq, Qc, K]`` of eligible keys
        (probabilities outside it are ignored). ``kwargs`` carries ``query_start``,
        ``attention_mask`` (chunk, additive or None), ``previous_mask`` (chunk) and
        ``sparse_meta_data``.
        """

    def sample_chunk(
        self,
        keys: torch.Tensor,
        queries: torch.Tensor,
        values: torch.Tensor,
        scaling: float,
        population: torch.Tensor,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw for one chunk -> ``(keep bool [B,Hq,Qc,K], probability [B,Hq,Qc,K])``.

        Default: independent Bernoulli(``keep_probabilities``) over the population.
        """
        probs = self.keep_probabilities(keys, queries, values, scaling, population, **kwargs)
        probs = torch.as_tensor(probs, dtype=torch.float32, device=population.device)
        probs = probs.clamp(0.0, 1.0).expand(population.shape)
        draws = torch.rand(population.shape, device=population.device)
        keep = population & (draws < probs)
        return keep, probs

    def add_mask(
        self,
        keys: torch.Tensor,
        queries: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float,
        dropout: float,
        sparse_meta_data: dict[Any, Any],
        previous_mask: Mask,
        **kwargs: Any,
    ) -> Mask:
        shape = self.mask_shape(queries, keys)
        b, h, q, k = shape
        if previous_mask.representation == "full" or q == 0 or k == 0:
            return previous_mask
        additive = normalize_attention_mask(attention_mask, k)
        start_key, end_key = self.sampling_range(k)
        in_range = torch.zeros(k, dtype=torch.bool, device=queries.device)
        in_range[max(0, start_key) : max(0, end_key)] = True
        chunk = query_chunk_size(kwargs, b * h * k)
        kw = {
            key: v
            for key, v in kwargs.items()
            if key not in ("attention_mask", "query_start", "previous_mask")
        }
        idx_parts: list[torch.Tensor] = []
        w_parts: list[torch.Tensor] = []
        for start in range(0, q, chunk):
            end = min(q, start + chunk)
            prev_chunk = previous_mask.query_slice(start, end)
            mask_chunk = None if additive is None else additive[:, :, start:end]
            # population = in range, not already selected, not forbidden
            blocked = torch.zeros((b, h, end - start, k), device=queries.device)
            exclude_previous(blocked, prev_chunk)
            population = torch.isfinite(blocked) & in_range
            if mask_chunk is not None:
                population &= ~masked_keys(mask_chunk)
            keep, probs = self.sample_chunk(
                keys,
                queries[:, :, start:end],
                values,
                scaling,
                population,
                query_start=start,
                attention_mask=mask_chunk,
                previous_mask=prev_chunk,
                sparse_meta_data=sparse_meta_data,
                **kw,
            )
            idx, w = pack_kept(keep & population, probs)
            idx_parts.append(idx)
            w_parts.append(w.to(previous_mask.dtype))
        width = max(p.shape[-1] for p in idx_parts)
        pad = torch.nn.functional.pad
        indices = torch.cat([pad(p, (0, width - p.shape[-1]), value=-1) for p in idx_parts], 2)
        weights = torch.cat([pad(p, (0, width - p.shape[-1]), value=0.0) for p in w_parts], 2)
        mine = Mask.from_index(indices, weights, shape, assume_unique=True, validate=False)
        return previous_mask.merge_disjoint(mine)

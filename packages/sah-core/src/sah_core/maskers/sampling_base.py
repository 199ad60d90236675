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
from collections.abc import Callable
from typing import Any

import torch

from sah_core.attention.common import masked_keys
from sah_core.call_plan import CallPlan, QueryChunk
from sah_core.mask import Mask
from sah_core.maskers.base import (
    MaskerConfig,
    ResearchMasker,
    known_spans,
    uses_old_signature,
    warn_old_hook,
)
from sah_core.maskers.topk_base import free_range, outside_previous


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
    """Base of the sampling maskers (see module doc). Override ``keep_probabilities``.

    Hooks: ``keep_probabilities(call, chunk, population, previous)`` and, when the draw
    itself is special, ``sample_chunk(call, chunk, population, previous)``; ``previous`` is
    the chunk's rows of the previous mask. The old hook signatures (``keys, queries, values,
    scaling, population, **kwargs``) still work until 0.3, with a warning.
    """

    is_sampling = True
    _old_probabilities: bool = False
    _old_sample: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._old_probabilities = uses_old_signature(cls.keep_probabilities)
        cls._old_sample = uses_old_signature(cls.sample_chunk)

    def sampling_range(self, key_len: int) -> tuple[int, int]:
        """Half-open key range ``[start, end)`` the masker samples from (default: all)."""
        return 0, key_len

    @abstractmethod
    def keep_probabilities(
        self, call: CallPlan, chunk: QueryChunk, population: torch.Tensor, previous: Mask
    ) -> torch.Tensor:
        """Probability in ``[0, 1]`` of keeping each key, broadcastable to ``[B, Hq, Qc, K]``.

        ``population`` is the bool ``[B, Hq, Qc, K]`` of eligible keys (in range, not in
        ``previous``, allowed by the attention mask); probabilities outside it are ignored.
        """

    def sample_chunk(
        self, call: CallPlan, chunk: QueryChunk, population: torch.Tensor, previous: Mask
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw for one chunk -> ``(keep bool [B,Hq,Qc,K], probability [B,Hq,Qc,K])``.

        Default: independent Bernoulli(``keep_probabilities``) over the population.
        """
        probs = self._run_probabilities(call, chunk, population, previous)
        probs = torch.as_tensor(probs, dtype=torch.float32, device=population.device)
        probs = probs.clamp(0.0, 1.0).expand(population.shape)
        draws = torch.rand(population.shape, device=population.device)
        keep = population & (draws < probs)
        return keep, probs

    def sample_indices(
        self, call: CallPlan, chunk: QueryChunk, population: torch.Tensor, previous: Mask
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Optional fast path: the draw of one chunk directly in index form ``(indices,
        weights)`` ``[B, Hq, Qc, L]`` (-1 / 0 padded, kept keys inside ``population`` only),
        or None (default) to use :meth:`sample_chunk` and pack its bool result."""
        return None

    def sample_range(
        self, call: CallPlan, chunk: QueryChunk, free: tuple[int, int], previous: Mask
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Optional decode fast path: the draw ``(indices, weights)`` of ``chunk`` (the whole
        call) when its population is the one key range ``free = (lo, hi)`` for every row (the
        previous mask is whole ranges, no attention mask, no padding), with the same draws
        from the global RNG as :meth:`sample_indices`; None (default) to take the general path."""
        return None

    def add_mask(self, call: CallPlan, previous: Mask) -> Mask:
        shape = call.shape
        b, h, q, k = shape
        if previous.representation == "full" or q == 0 or k == 0:
            return previous
        start_key, end_key = self.sampling_range(k)
        spans = known_spans(call, previous)
        if spans is not None and call.key_valid is None:
            chunks = call.query_chunks()
            free = free_range([*spans, (0, start_key), (end_key, k)], k)
            if free is not None and len(chunks) == 1 and chunks[0].attention_mask is None:
                drawn = self.sample_range(call, chunks[0], free, previous)
                if drawn is not None:
                    mine = Mask.from_index(
                        drawn[0], drawn[1], shape, assume_unique=True, validate=False
                    )
                    return previous.merge_disjoint(mine)
        in_range = torch.zeros(k, dtype=torch.bool, device=call.device)
        in_range[max(0, start_key) : max(0, end_key)] = True
        if spans is not None:  # the previous keys are whole ranges: leave them out by slicing
            for lo, hi in spans:
                in_range[lo:hi] = False
        idx_parts: list[torch.Tensor] = []
        w_parts: list[torch.Tensor] = []
        for chunk in call.query_chunks():
            prev_chunk = previous.query_slice(chunk.start, chunk.end)
            # population = in range, not already selected, not forbidden
            if spans is not None:
                population = in_range.expand(b, h, chunk.rows, k).contiguous()
            else:
                population = outside_previous((b, h, chunk.rows, k), prev_chunk) & in_range
            if chunk.attention_mask is not None:
                population &= ~masked_keys(chunk.attention_mask)
            drawn = self.sample_indices(call, chunk, population, prev_chunk)
            if drawn is None:
                keep, probs = self._run_sample(call, chunk, population, prev_chunk)
                idx, w = pack_kept(keep & population, probs)
            else:
                idx, w = drawn
            idx_parts.append(idx)
            w_parts.append(w.to(previous.dtype))
        if len(idx_parts) == 1:
            indices, weights = idx_parts[0], w_parts[0]
        else:
            width = max(p.shape[-1] for p in idx_parts)
            pad = torch.nn.functional.pad
            indices = torch.cat([pad(p, (0, width - p.shape[-1]), value=-1) for p in idx_parts], 2)
            weights = torch.cat([pad(p, (0, width - p.shape[-1]), value=0.0) for p in w_parts], 2)
        mine = Mask.from_index(indices, weights, shape, assume_unique=True, validate=False)
        return previous.merge_disjoint(mine)

    # ------------------------------------------------------------------ hook adapters
    def _old_kwargs(self, call: CallPlan, chunk: QueryChunk, previous: Mask) -> dict[str, Any]:
        kwargs = call.legacy_kwargs()
        kwargs.update(
            query_start=chunk.start,
            attention_mask=chunk.attention_mask,
            previous_mask=previous,
            sparse_meta_data=call.sparse_meta_data,
        )
        return kwargs

    def _run_probabilities(
        self, call: CallPlan, chunk: QueryChunk, population: torch.Tensor, previous: Mask
    ) -> torch.Tensor:
        if not self._old_probabilities:
            return self.keep_probabilities(call, chunk, population, previous)
        warn_old_hook(type(self), "keep_probabilities")
        old: Callable[..., Any] = self.keep_probabilities  # the old signature
        probs: torch.Tensor = old(
            call.keys,
            chunk.queries,
            call.values,
            call.scaling,
            population,
            **self._old_kwargs(call, chunk, previous),
        )
        return probs

    def _run_sample(
        self, call: CallPlan, chunk: QueryChunk, population: torch.Tensor, previous: Mask
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._old_sample:
            return self.sample_chunk(call, chunk, population, previous)
        warn_old_hook(type(self), "sample_chunk")
        old: Callable[..., Any] = self.sample_chunk  # the old signature
        drawn: tuple[torch.Tensor, torch.Tensor] = old(
            call.keys,
            chunk.queries,
            call.values,
            call.scaling,
            population,
            **self._old_kwargs(call, chunk, previous),
        )
        return drawn

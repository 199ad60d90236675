"""Base classes of the KV-eviction maskers (a masker kind of its own).

An eviction decides, at the end of the context prefill (and, for decode-time methods, every
``decode_every`` decode steps), which keys each layer keeps for all later queries; the adapter
(``sah_adapters.ModelAdapterHF``) then **removes the others from the KV cache**, so memory
really shrinks. Selection maskers in the same stack then pick, per query, among the survivors.

An eviction config goes into ``ResearchAttentionConfig.masker_configs`` like any masker (one
eviction per stack); its JSON tag is registered the same way. The adapter takes it out of the
selection stack: an eviction adds no key to any query's mask.

A new method subclasses :class:`ScorerEviction` (one score per key, the base keeps the best
``budget``, kvpress's ``ScorerPress`` idea) or :class:`EvictionMasker` (any keep rule,
returning a :class:`KeepPlan`).

Budgets: ``budget`` is the number of keys each KV head of a layer keeps, an ``int`` count or a
``float`` in (0, 1], the fraction of the context's keys. Kept indices are sorted ascending
(temporal order), so positional selection maskers (Sink, Local) work among the survivors.
Keys are cached after RoPE, so survivors keep their original positions.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import Any, ClassVar

import torch

from sah_core.call_plan import CallPlan
from sah_core.mask import Mask
from sah_core.maskers.base import MaskerConfig, ResearchMasker, check_int, check_size, resolve_size


@dataclasses.dataclass(frozen=True, eq=False)
class EvictionInputs:
    """One layer's tensors at an eviction point.

    ``queries [B, Hq, Q, D]`` are the last Q positions of ``keys [B, Hkv, K, D]`` (after
    RoPE, as cached); ``values [B, Hkv, K, D]``. ``layer_idx`` / ``num_layers`` locate the
    layer; ``state`` is the eviction's own dict for this layer (decode-time statistics).
    ``protected`` (decode-time only) is the number of most recent keys that must survive.
    """

    queries: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    scaling: float
    layer_idx: int
    num_layers: int
    state: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def key_len(self) -> int:
        return int(self.keys.shape[2])

    @property
    def group_size(self) -> int:
        return int(self.queries.shape[1]) // int(self.keys.shape[1])


@dataclasses.dataclass(frozen=True, eq=False)
class KeepPlan:
    """Which keys survive in one layer.

    ``indices`` int64 ``[B, Hkv, L]``: kept key indices per KV head, ascending; with
    ``counts`` (int64 ``[B, Hkv]``, per-head budgets) only the first ``counts[b, h]`` entries
    of a row are real and the rest are -1 padding. ``counts`` None = every head keeps ``L``.
    """

    indices: torch.Tensor
    counts: torch.Tensor | None = None

    @property
    def kept(self) -> int:
        """Slots per head (the padded width)."""
        return int(self.indices.shape[-1])

    def is_uniform(self) -> bool:
        return self.counts is None


def window_attention(
    queries: torch.Tensor, keys: torch.Tensor, scaling: float, window: int
) -> torch.Tensor:
    """Softmax attention of the last ``window`` queries over all keys, causal, float32.

    ``queries [B, Hq, Q, D]`` sit at the last Q key positions; returns ``[B, Hq, w, K]``.
    """
    b, hq, q, d = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    w = min(window, q)
    group = hq // hkv
    grouped = (queries[:, :, q - w :].float() * scaling).reshape(b, hkv, group * w, d)
    scores = torch.matmul(grouped, keys.float().transpose(-1, -2)).view(b, hq, w, k)
    query_pos = torch.arange(k - w, k, device=keys.device)
    future = torch.arange(k, device=keys.device)[None, :] > query_pos[:, None]  # [w, K]
    scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1)


def topk_sorted(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` largest entries of the last axis, ascending (int64)."""
    count = min(count, int(scores.shape[-1]))
    picked = torch.topk(scores, count, dim=-1, sorted=False).indices
    return picked.sort(dim=-1).values


@dataclasses.dataclass
class EvictionConfig(MaskerConfig):
    """Base of every eviction config: ``budget`` keys kept per KV head of a layer.

    ``budget``: int count, or float in (0, 1] = fraction of the context's keys.
    """

    budget: int | float = 0.25
    #: Marks the eviction kind (the adapter takes these out of the selection stack).
    kind: ClassVar[str] = "eviction"

    def validate(self) -> None:
        super().validate()
        check_size(self, "budget", self.budget, allow_zero=False)


class EvictionMasker(ResearchMasker):
    """Decides which keys a layer keeps; the adapter removes the rest from the cache."""

    config_type: ClassVar[type[MaskerConfig]] = EvictionConfig
    config: EvictionConfig
    #: True for the eviction kind (ResearchAttention never builds masks from these).
    is_eviction: ClassVar[bool] = True

    @property
    def decode_every(self) -> int:
        """Evict again every N decode steps (0 = only at the end of the context prefill)."""
        return int(getattr(self.config, "decode_every", 0))

    def budget(self, context_len: int) -> int:
        """Keys kept per KV head for a context of ``context_len`` keys (at most all)."""
        return min(context_len, resolve_size(self.config.budget, context_len))

    @abstractmethod
    def keep(self, inputs: EvictionInputs, budget: int) -> KeepPlan:
        """The keys layer ``inputs.layer_idx`` keeps (about ``budget`` per KV head)."""

    def observe_decode(self, inputs: EvictionInputs) -> None:
        """A decode-time method updates its statistics from one step (default: nothing)."""

    def add_mask(self, call: CallPlan, previous: Mask) -> Mask:
        raise ValueError(
            f"{type(self.config).__name__} is an eviction: it removes keys from the KV cache "
            "and adds nothing to a query's mask; run it through sah_adapters.ModelAdapterHF "
            "(the adapter takes it out of the selection stack), not ResearchAttention"
        )


class ScorerEviction(EvictionMasker):
    """Eviction by a score per key: each KV head keeps its ``budget`` best keys.

    Subclasses return ``score(inputs) -> [B, Hkv, K]`` (higher = keep); ``+inf`` marks keys
    that must survive (observation window, last token).
    """

    @abstractmethod
    def score(self, inputs: EvictionInputs) -> torch.Tensor:
        """Float ``[B, Hkv, K]``, higher = more worth keeping."""

    def keep(self, inputs: EvictionInputs, budget: int) -> KeepPlan:
        if budget >= inputs.key_len:
            return KeepPlan(_all_indices(inputs))
        return KeepPlan(topk_sorted(self.score(inputs), budget))


def _all_indices(inputs: EvictionInputs) -> torch.Tensor:
    b, hkv, k = (int(x) for x in inputs.keys.shape[:3])
    return torch.arange(k, device=inputs.keys.device).expand(b, hkv, k)


def check_window(owner: object, field: str, value: object) -> None:
    """A window / kernel size: an int >= 1."""
    check_int(owner, field, value, low=1, high=2**20)


def protect_recent(scores: torch.Tensor, recent: int) -> torch.Tensor:
    """``scores`` with the last ``recent`` keys set to +inf (a new tensor)."""
    if recent <= 0:
        return scores
    out = scores.clone()
    out[..., -recent:] = float("inf")
    return out


def pool_keys(scores: torch.Tensor, kernel: int, pooling: str) -> torch.Tensor:
    """1-D pooling over the key axis (stride 1, same length): SnapKV's clustering step."""
    if kernel <= 1:
        return scores
    shape = scores.shape
    flat = scores.reshape(-1, 1, shape[-1])
    pad = kernel // 2
    if pooling == "max":
        pooled = torch.nn.functional.max_pool1d(flat, kernel, stride=1, padding=pad)
    else:
        pooled = torch.nn.functional.avg_pool1d(flat, kernel, stride=1, padding=pad)
    return pooled[..., : shape[-1]].reshape(shape)

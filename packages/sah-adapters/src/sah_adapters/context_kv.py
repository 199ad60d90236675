"""Rolling a KV cache back to the end of the context, and sharing that context across adapters.

Every question batch extends the context's ``DynamicCache`` in place; afterwards
:class:`ContextCheckpoint` puts it back, so the next batch (or the next adapter over the same
model) starts from the exact context KV without a copy of it ever existing:

- full-attention layers only ever append (``torch.cat``), so their first ``context_length``
  tokens of batch row 0 *are* the context: a slice restores them;
- sliding-window layers drop old tokens as they go, so the context's last ``window - 1`` tokens
  would be lost; the checkpoint keeps those few (a window, not a context) and puts them back.

Marking also turns full-attention ``DynamicLayer``s into :class:`~sah_adapters.reserved_kv.
ReservedKVLayer`s (the same tensors, no copy): question and decode tokens are then written into
reserved room instead of ``torch.cat``-ing the whole layer every step, and the batch rows a
question batch repeated the context into stay in place, so the next batch (or the next config
over a shared context) repeats it for free.

transformers' own ``DynamicCache.crop`` cannot do this: in 4.57 and 5.x it refuses a sliding
layer that has passed its window (5.x only with ``activate_past_recording``, which keeps every
token), and the two series disagree on what a positive argument means.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch

logger = logging.getLogger(__name__)

# Attributes a sliding layer updates besides its tensors (both series).
_SLIDING_COUNTERS = ("cumulative_length",)


@dataclass
class _LayerMark:
    sliding: bool
    initialized: bool
    keys: torch.Tensor | None = None  # sliding layers only: their context window
    values: torch.Tensor | None = None
    counters: dict[str, Any] = field(default_factory=dict)
    length: int = 0  # tokens the layer holds after the context (fewer after an eviction)
    extras: dict[str, Any] = field(default_factory=dict)  # a per-head layout's bookkeeping


class ContextCheckpoint:
    """The state of a ``DynamicCache`` right after the context prefill (batch 1).

    Use :meth:`mark` once after the prefill and :meth:`restore` after every question batch.
    Only transformers' ``DynamicLayer`` / ``DynamicSlidingWindowLayer`` (and the adapter's
    per-head eviction layout) are supported; :meth:`supports` says whether a cache can be
    marked (others are deep-copied instead). After an eviction the layers hold fewer tokens
    than the context (``evicted=True``: each layer's own length is kept); ``hold=True`` keeps
    the layers' tensors themselves (for decode-time evictions, which rewrite the context part).
    """

    def __init__(self, context_length: int, marks: list[_LayerMark]) -> None:
        self.context_length = context_length
        self._marks = marks

    @staticmethod
    def supports(cache: Any) -> bool:
        from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

        from sah_adapters.evicted_cache import PerHeadKVLayer

        layers = getattr(cache, "layers", None)
        if not layers:
            return False
        from sah_adapters.reserved_kv import ReservedKVLayer

        known = (DynamicLayer, DynamicSlidingWindowLayer, PerHeadKVLayer, ReservedKVLayer)
        return all(type(layer) in known for layer in layers)

    @classmethod
    def mark(
        cls,
        cache: Any,
        context_length: int,
        *,
        evicted: bool = False,
        hold: bool = False,
        reserve: bool = True,
    ) -> ContextCheckpoint:
        """Remember ``cache`` as the context state; it must hold exactly the context (or,
        with ``evicted``, what an eviction left of it). With ``reserve`` (and neither
        ``evicted`` nor ``hold``) its full-attention layers become ``ReservedKVLayer``s."""
        from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

        from sah_adapters.evicted_cache import PerHeadKVLayer
        from sah_adapters.reserved_kv import ReservedKVLayer

        if not cls.supports(cache):
            raise ValueError(f"cannot checkpoint {type(cache).__name__} with these layer types")
        if reserve and not (evicted or hold):
            for index, layer in enumerate(cache.layers):
                if type(layer) is DynamicLayer:
                    cache.layers[index] = ReservedKVLayer.adopt(layer)
        marks = []
        for layer in cache.layers:
            initialized = bool(getattr(layer, "is_initialized", False))
            sliding = isinstance(layer, DynamicSlidingWindowLayer)
            mark = _LayerMark(sliding=sliding, initialized=initialized)
            if initialized:
                mark.length = int(layer.keys.shape[-2])
            if isinstance(layer, PerHeadKVLayer):
                mark.extras = {
                    "evicted_slots": layer.evicted_slots,
                    "slot_counts": layer.slot_counts,
                    "slot_positions": layer.slot_positions,
                }
            if initialized and hold and not sliding:
                mark.keys, mark.values = layer.keys, layer.values
            elif sliding and initialized:
                # The window is a view into the prefill's full tensor: a compact copy lets
                # that tensor go, and the layer and the mark then share the copy.
                layer.keys = layer.keys.clone()
                layer.values = layer.values.clone()
                mark.keys, mark.values = layer.keys, layer.values
                mark.counters = {name: getattr(layer, name) for name in _SLIDING_COUNTERS}
            elif initialized and not evicted and layer.keys.shape[-2] != context_length:
                raise ValueError(
                    f"a full-attention cache layer holds {layer.keys.shape[-2]} tokens, "
                    f"expected the context's {context_length}"
                )
            marks.append(mark)
        return cls(context_length, marks)

    def restore(self, cache: Any) -> None:
        """Put ``cache`` back to the marked context state (drops batch rows > 0 too)."""
        from sah_adapters.reserved_kv import ReservedKVLayer

        if len(cache.layers) != len(self._marks):
            raise ValueError("restore() got a cache with a different number of layers")
        for index, mark in enumerate(self._marks):
            layer = cache.layers[index]
            if mark.extras:
                for name, value in mark.extras.items():
                    setattr(layer, name, value)
            if not mark.initialized:
                if getattr(layer, "is_initialized", False):
                    layer.keys = layer.keys[:1, :, :0, :]
                    layer.values = layer.values[:1, :, :0, :]
                    for name in _SLIDING_COUNTERS:
                        if hasattr(layer, name):
                            setattr(layer, name, 0)
                continue
            if mark.sliding or mark.keys is not None:
                layer.keys, layer.values = mark.keys, mark.values
                for name, value in mark.counters.items():
                    setattr(layer, name, value)
            elif isinstance(layer, ReservedKVLayer):
                layer.rewind(mark.length)  # a view of row 0; the other rows stay for later
            else:
                # A view of the current tensor: no copy; the next append makes a new tensor.
                layer.keys = layer.keys[:1, :, : mark.length, :]
                layer.values = layer.values[:1, :, : mark.length, :]


@dataclass
class _Entry:
    model: weakref.ref[Any]
    token_ids: tuple[int, ...]
    cache: Any
    logits: torch.Tensor | None
    checkpoint: ContextCheckpoint


class ContextCacheStore:
    """The latest context's dense prefill (KV cache + last logits), shared by adapters.

    Give one store to every ``ModelAdapterHF`` built over the same loaded model (e.g. the
    sparse configs of a benchmark matrix); a request whose context token ids equal the stored
    ones then skips the context prefill. The prefill is dense and does not depend on the
    sparse config, so the reuse is exact. Only the latest context is kept; adapters put the
    cache back to the context after every question batch. Not thread-safe.
    """

    def __init__(self) -> None:
        self._entry: _Entry | None = None
        self.hits = 0
        self.misses = 0

    def lookup(self, model: Any, token_ids: tuple[int, ...]) -> _Entry | None:
        entry = self._entry
        if entry is not None and entry.model() is model and entry.token_ids == token_ids:
            self.hits += 1
            return entry
        self.misses += 1
        return None

    def put(
        self,
        model: Any,
        token_ids: tuple[int, ...],
        cache: Any,
        logits: torch.Tensor | None,
        checkpoint: ContextCheckpoint,
    ) -> None:
        self._entry = _Entry(weakref.ref(model), token_ids, cache, logits, checkpoint)

    def clear(self) -> None:
        """Drop the stored context (frees its KV cache)."""
        self._entry = None

    @property
    def context_length(self) -> int | None:
        """Tokens of the stored context, or None when empty."""
        return None if self._entry is None else len(self._entry.token_ids)

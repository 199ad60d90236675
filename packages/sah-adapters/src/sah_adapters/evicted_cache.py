"""KV caches that lost keys to an eviction masker (``sah_core.eviction``).

Uniform budgets (every KV head of a layer keeps the same number of keys) slice the layer's
tensors: a ``DynamicLayer`` that simply holds fewer tokens. Per-head budgets (AdaKV) use
:class:`PerHeadKVLayer`, a ``DynamicLayer`` whose first ``evicted_slots`` positions are a padded
per-head layout (padded with an index, not ragged: a layer holds ``Hkv * max_h(count)``
slots, so the head that keeps the most sets its size): head ``h`` of batch row ``b`` holds
``slot_counts[b, h]`` real keys, the remaining slots are padding (zeros) that the adapter
masks out, and ``slot_positions`` records each slot's original token position (-1 at
padding). New tokens append after the slots as in any ``DynamicLayer``. Keys are cached after
RoPE, so survivors keep their original positions; new tokens get position ids that continue
the original count.

:class:`EvictionRun` drives one request: it scores a layer when its attention runs (end of the
context prefill; every ``decode_every`` decode steps for TOVA / H2O), replaces the layer's
tensors by the survivors, and builds each layer's attention mask when the layers no longer
share one length.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer


class PerHeadKVLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """A ``DynamicLayer`` whose first ``evicted_slots`` positions hold per-head survivors."""

    evicted_slots: int
    slot_counts: torch.Tensor  # int32 [B, Hkv]
    slot_positions: torch.Tensor  # int32 [B, Hkv, evicted_slots], -1 = padding

    @classmethod
    def from_layer(
        cls, layer: Any, keys: torch.Tensor, values: torch.Tensor, plan: Any
    ) -> PerHeadKVLayer:
        new = cls.__new__(cls)
        new.__dict__.update(layer.__dict__)
        new.keys, new.values = keys, values
        new.evicted_slots = int(keys.shape[-2])
        new.slot_counts = plan.counts.to(torch.int32)
        new.slot_positions = plan.indices.to(torch.int32)
        return new

    def slot_valid(self) -> torch.Tensor:
        """bool ``[B, Hkv, evicted_slots]``: True at real (not padding) slots."""
        ranks = torch.arange(self.evicted_slots, device=self.slot_counts.device)
        valid: torch.Tensor = ranks < self.slot_counts.unsqueeze(-1)
        return valid

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self.slot_counts = self.slot_counts.repeat_interleave(repeats, dim=0)
        self.slot_positions = self.slot_positions.repeat_interleave(repeats, dim=0)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self.slot_counts = self.slot_counts[indices]
        self.slot_positions = self.slot_positions[indices]

    def index_bytes(self) -> int:
        """Bytes of the per-head layout's bookkeeping (counts + slot positions)."""
        return _nbytes(self.slot_counts) + _nbytes(self.slot_positions)


def _nbytes(tensor: torch.Tensor | None) -> int:
    if tensor is None:
        return 0
    return int(tensor.numel()) * int(tensor.element_size())


def kv_bytes(cache: Any) -> int:
    """Bytes held by a cache's key/value tensors plus any per-head index (batch row 0)."""
    total = 0
    for layer in getattr(cache, "layers", ()):
        if not getattr(layer, "is_initialized", False) or layer.keys is None:
            continue
        total += _nbytes(layer.keys) + _nbytes(layer.values)
        if isinstance(layer, PerHeadKVLayer):
            total += layer.index_bytes()
    return total


def apply_keep_plan(cache: Any, layer_idx: int, plan: Any) -> None:
    """Replace layer ``layer_idx``'s tensors by the survivors of ``plan`` (a ``KeepPlan``)."""
    layer = cache.layers[layer_idx]
    keys, values = layer.keys, layer.values
    if plan.counts is None and plan.kept == keys.shape[-2]:
        return  # nothing evicted: keep the tensors as they are
    index = plan.indices.clamp(min=0).to(keys.device)
    gather = index.unsqueeze(-1).expand(-1, -1, -1, keys.shape[-1])
    new_keys = keys.gather(2, gather)
    new_values = values.gather(2, gather)
    if plan.counts is None:
        layer.keys, layer.values = new_keys, new_values
        return
    pad = (plan.indices < 0).unsqueeze(-1)
    new_keys = new_keys.masked_fill(pad, 0)
    new_values = new_values.masked_fill(pad, 0)
    cache.layers[layer_idx] = PerHeadKVLayer.from_layer(layer, new_keys, new_values, plan)


class EvictionRun:
    """One request's eviction: the masker, its per-layer state, and what was removed.

    ``held[layer]`` is the number of leading cache slots the eviction manages (survivors);
    the attention mask the model builds (from layer 0's length) is re-based per layer on it.
    """

    def __init__(self, masker: Any, num_layers: int, context_length: int) -> None:
        self.masker = masker
        self.num_layers = num_layers
        self.context_length = context_length
        self.budget = int(masker.budget(context_length))
        self.decode_every = int(masker.decode_every)
        self.states: dict[int, dict[str, Any]] = {}
        self.held: dict[int, int] = {}
        self.bytes_before = 0
        self.cache: Any = None
        self.decode_step = 0
        self._prefill_states: dict[int, dict[str, Any]] = {}
        self._prefill_held: dict[int, int] = {}

    # ------------------------------------------------------------------ routing
    @property
    def needs_routing(self) -> bool:
        """Whether question / decode steps must go through the adapter's attention function
        (per-layer masks, per-head layout, or decode-time scoring)."""
        if self.decode_every > 0 or type(self.masker).observe_decode is not _base_observe():
            return True
        lengths = set(self.held.values())
        if len(lengths) > 1:
            return True
        return self.cache is not None and any(
            isinstance(layer, PerHeadKVLayer) for layer in self.cache.layers
        )

    # ------------------------------------------------------------------ prefill
    def after_prefill_attention(
        self,
        layer_idx: int,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        scaling: float,
    ) -> None:
        from sah_core.eviction.base import EvictionInputs

        self.bytes_before += _nbytes(key) + _nbytes(value)
        state = self.states.setdefault(layer_idx, {})
        inputs = EvictionInputs(query, key, value, scaling, layer_idx, self.num_layers, state)
        plan = self.masker.keep(inputs, self.budget)
        apply_keep_plan(self.cache, layer_idx, plan)
        self.held[layer_idx] = plan.kept

    def finish_prefill(self) -> None:
        """Remember the post-prefill state, so every question batch starts from it."""
        self._prefill_states = {layer: dict(s) for layer, s in self.states.items()}
        self._prefill_held = dict(self.held)

    def start_batch(self, cache: Any) -> None:
        self.cache = cache
        self.states = {layer: dict(s) for layer, s in self._prefill_states.items()}
        self.held = dict(self._prefill_held)
        self.decode_step = 0

    # ------------------------------------------------------------------ question / decode
    def layer_mask(
        self,
        layer_idx: int,
        query: torch.Tensor,
        key: torch.Tensor,
        attention_mask: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """The additive mask of layer ``layer_idx``: survivors (valid slots) visible to every
        query, the tail of the model's mask (new tokens) as given."""
        held = self.held.get(layer_idx)
        if held is None:
            return attention_mask
        layer = self.cache.layers[layer_idx] if self.cache is not None else None
        per_head = isinstance(layer, PerHeadKVLayer) and layer.evicted_slots == held
        key_len = int(key.shape[-2])
        if not per_head and (attention_mask is None or attention_mask.shape[-1] == key_len):
            return attention_mask
        new = key_len - held
        q = int(query.shape[2])
        dtype = attention_mask.dtype if attention_mask is not None else query.dtype
        if attention_mask is not None and attention_mask.dtype == torch.bool:
            attention_mask = torch.where(attention_mask, 0.0, torch.finfo(query.dtype).min)
            dtype = query.dtype
        if attention_mask is None:
            causal = torch.ones(q, new, dtype=torch.bool, device=key.device).tril(new - q)
            tail = torch.where(causal, 0.0, torch.finfo(dtype).min).to(dtype)[None, None]
        else:
            tail = attention_mask[..., attention_mask.shape[-1] - new :]
        rows = int(tail.shape[2])
        if per_head:
            assert isinstance(layer, PerHeadKVLayer)
            valid = layer.slot_valid().repeat_interleave(query.shape[1] // key.shape[1], dim=1)
            ctx = torch.where(valid, 0.0, torch.finfo(dtype).min).to(dtype)[:, :, None, :]
            ctx = ctx.expand(-1, -1, rows, -1)
            tail = tail.expand(ctx.shape[0], ctx.shape[1], rows, new)
        else:
            ctx = torch.zeros(
                tail.shape[0], tail.shape[1], rows, held, dtype=dtype, device=key.device
            )
        return torch.cat([ctx, tail], dim=-1)

    def after_step_attention(
        self,
        layer_idx: int,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        scaling: float,
        decoding: bool,
    ) -> None:
        """Decode-time statistics, and an eviction every ``decode_every`` decode steps."""
        from sah_core.eviction.base import EvictionInputs

        state = self.states.setdefault(layer_idx, {})
        inputs = EvictionInputs(query, key, value, scaling, layer_idx, self.num_layers, state)
        self.masker.observe_decode(inputs)
        if not decoding or self.decode_every <= 0 or self.decode_step % self.decode_every:
            return
        if int(key.shape[-2]) <= self.budget or int(key.shape[0]) != 1:
            return
        plan = self.masker.keep(inputs, self.budget)
        apply_keep_plan(self.cache, layer_idx, plan)
        self.held[layer_idx] = plan.kept


def _base_observe() -> Any:
    from sah_core.eviction.base import EvictionMasker

    return EvictionMasker.observe_decode

"""A full-attention KV cache layer that writes new tokens into reserved room, not ``torch.cat``.

transformers' ``DynamicLayer`` concatenates on every forward, so each decode step copies the
whole KV of the layer (for a 2K-token context batched over 6 questions on SmolLM2-135M, about
0.57 GB per step). :class:`ReservedKVLayer` keeps its keys and values in a buffer with room for
more tokens and exposes a view of the filled part; a step writes only its own tokens.

It also remembers that the leading rows of its buffer all start with the same tokens (the
context, repeated for a batch of questions by ``batch_repeat_interleave``): rolled back to the
context (:meth:`rewind`, used by ``ContextCheckpoint.restore``), the next batch's repeat costs
nothing, so the sparse configs sharing one context (``ContextCacheStore``) do not each copy it.

The values a forward sees are exactly those ``DynamicLayer`` would hold (same tensors, a view
of another layout). Anything that assigns ``keys`` / ``values`` itself (``crop``, an eviction,
``batch_select_indices``) is honoured: the layer then drops its buffer and continues from the
assigned tensors.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

from sah_adapters.transformers_compat import lazy_initialize

#: Tokens of room a layer reserves beyond what it needs when it (re)allocates its buffer.
RESERVE_TOKENS = 256


class ReservedKVLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """A ``DynamicLayer`` whose tensors are views of a buffer with spare room (see module)."""

    _kbuf: torch.Tensor | None
    _vbuf: torch.Tensor | None
    _view: tuple[torch.Tensor, torch.Tensor] | None
    _same_rows: int  # leading buffer rows whose first `_same_length` tokens equal row 0's
    _same_length: int
    reserve: int

    @classmethod
    def adopt(cls, layer: Any, reserve: int = RESERVE_TOKENS) -> ReservedKVLayer:
        """The same layer (its tensors, no copy) as a :class:`ReservedKVLayer`."""
        new = cls.__new__(cls)
        new.__dict__.update(layer.__dict__)
        new.reserve = int(reserve)
        new._drop_buffer()
        return new

    # ------------------------------------------------------------------ bookkeeping
    def _drop_buffer(self) -> None:
        self._kbuf = self._vbuf = None
        self._view = None
        self._same_rows = self._same_length = 0

    def _owned(self) -> bool:
        """Whether ``keys`` / ``values`` are still the views this layer set."""
        view = self._view
        return view is not None and self.keys is view[0] and self.values is view[1]

    def _set_view(self, rows: int, length: int) -> None:
        assert self._kbuf is not None and self._vbuf is not None
        self.keys = self._kbuf[:rows, :, :length]
        self.values = self._vbuf[:rows, :, :length]
        self._view = (self.keys, self.values)

    def _length(self) -> int:
        keys = self.keys
        return 0 if keys is None or keys.numel() == 0 else int(keys.shape[-2])

    def _allocate(self, like_k: torch.Tensor, like_v: torch.Tensor, rows: int, needed: int) -> None:
        """A new buffer of ``rows`` rows with room for ``needed`` tokens and the reserve; the
        current tokens (all rows, or row 0 repeated when the layer holds one row) go in."""
        old_cap = 0 if self._kbuf is None else int(self._kbuf.shape[-2])
        capacity = max(needed + self.reserve, old_cap + old_cap // 2)
        k_shape = (rows, like_k.shape[1], capacity, like_k.shape[-1])
        v_shape = (rows, like_v.shape[1], capacity, like_v.shape[-1])
        kbuf = torch.empty(k_shape, dtype=like_k.dtype, device=like_k.device)
        vbuf = torch.empty(v_shape, dtype=like_v.dtype, device=like_v.device)
        length = self._length()
        if length:
            keys, values = self.keys, self.values
            assert keys is not None and values is not None
            kbuf[:, :, :length].copy_(keys.expand(rows, -1, -1, -1))
            vbuf[:, :, :length].copy_(values.expand(rows, -1, -1, -1))
        self._kbuf, self._vbuf = kbuf, vbuf

    # ------------------------------------------------------------------ DynamicLayer API
    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            lazy_initialize(self, key_states, value_states)
        if not self._owned():
            self._drop_buffer()  # keys were assigned from outside: they are the truth
        start, new = self._length(), int(key_states.shape[-2])
        rows = int(key_states.shape[0])
        if start and self.keys is not None and int(self.keys.shape[0]) != rows:
            raise ValueError(
                f"cache layer holds {int(self.keys.shape[0])} batch rows, the update has {rows}"
            )
        kbuf = self._kbuf
        if (
            kbuf is None
            or int(kbuf.shape[0]) < rows
            or int(kbuf.shape[-2]) < start + new
            or kbuf.dtype != key_states.dtype
        ):
            # The copied rows stay alike as far as they were (one row is alike to itself;
            # rows assigned from outside may differ anywhere).
            same = (self._same_rows, self._same_length) if kbuf is not None else (0, 0)
            self._allocate(key_states, value_states, rows, start + new)
            self._same_rows, self._same_length = same if rows > 1 else (1, start)
        assert self._kbuf is not None and self._vbuf is not None
        self._kbuf[:rows, :, start : start + new].copy_(key_states)
        self._vbuf[:rows, :, start : start + new].copy_(value_states)
        self._same_length = min(self._same_length, start)
        self._set_view(rows, start + new)
        assert self.keys is not None and self.values is not None
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        length = self._length()
        if length == 0 or repeats == 1:
            return
        if not self._owned():
            self._drop_buffer()
        keys = self.keys
        assert keys is not None and self.values is not None
        if int(keys.shape[0]) != 1:  # several different rows: a plain repeat
            self.keys = keys.repeat_interleave(repeats, dim=0)
            self.values = self.values.repeat_interleave(repeats, dim=0)
            self._drop_buffer()
            return
        kbuf = self._kbuf
        if (
            kbuf is not None
            and int(kbuf.shape[0]) >= repeats
            and self._same_rows >= repeats
            and self._same_length >= length
        ):
            self._set_view(repeats, length)  # the rows already hold these tokens
            return
        if kbuf is not None and int(kbuf.shape[0]) >= repeats:
            assert self._vbuf is not None
            kbuf[1:repeats, :, :length].copy_(keys.expand(repeats - 1, -1, -1, -1))
            self._vbuf[1:repeats, :, :length].copy_(self.values.expand(repeats - 1, -1, -1, -1))
        else:
            self._allocate(keys, self.values, repeats, length)
        self._same_rows, self._same_length = repeats, length
        self._set_view(repeats, length)

    def rewind(self, length: int) -> None:
        """Back to batch row 0's first ``length`` tokens (the other rows stay in the buffer
        and still count as repeats of row 0 up to where they were written alike)."""
        if self._owned():
            self._set_view(1, length)
            return
        keys, values = self.keys, self.values
        assert keys is not None and values is not None
        self.keys = keys[:1, :, :length, :]
        self.values = values[:1, :, :length, :]

    def reset(self) -> None:
        self._drop_buffer()
        super().reset()

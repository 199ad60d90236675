"""`Mask`: the value type of the mask contract.

A mask has the logical shape ``[B, H, Q, K]`` (``H`` = number of *query* heads) and float
entries: ``0`` = key not attended; ``p`` in ``(0, 1]`` = key attended, kept with probability
``p``, so its exp-score is multiplied by ``1/p`` (importance weighting). Union of two masks
is ``clamp(a + b, 0, 1)``.

Four representations hold the same logical value:

* ``full``  -- every entry is 1 (nothing stored),
* ``empty`` -- every entry is 0 (nothing stored),
* ``dense`` -- a ``[B, H, Q, K]`` float tensor (may be a broadcast/expanded view),
* ``index`` -- ``indices`` int64 ``[B, H, Q, L]``: the selected key indices of each row,
  padded with ``-1`` (padding may sit anywhere in a row), and ``weights`` float
  ``[B, H, Q, L]``: ``p`` for each selected index, ``0`` at padding. An entry with a valid
  index and weight ``0`` is "not attended", exactly like padding.

Masks are values: no method mutates its operands or the tensors it was built from after
construction, and every method that returns a tensor meant for the caller returns a new one
(``get_index_form(copy=False)`` is the documented read-only exception for hot paths).
"""

from __future__ import annotations

from typing import Literal

import torch

#: ``"block"``: a :class:`~sah_core.block_mask.BlockSparseMask` (tiles + columns of a block
#: layout, run on the block-sparse prefill path).
Representation = Literal["full", "empty", "dense", "index", "block"]

_Shape = tuple[int, int, int, int]


def _check_shape(shape: tuple[int, ...] | torch.Size, field: str = "shape") -> _Shape:
    dims = tuple(int(d) for d in shape)
    if len(dims) != 4 or any(d < 0 for d in dims):
        raise ValueError(
            f"{field}={dims!r} is not allowed: a mask shape is [B, H, Q, K] with 4 "
            "non-negative sizes"
        )
    return (dims[0], dims[1], dims[2], dims[3])


class Mask:
    """Immutable ``[B, H, Q, K]`` attention mask with importance weights (see module doc)."""

    __slots__ = (
        "_binary",
        "_dense",
        "_device",
        "_dtype",
        "_indices",
        "_kind",
        "_shape",
        "_weights",
    )

    def __init__(
        self,
        kind: Representation,
        shape: _Shape,
        device: torch.device,
        dtype: torch.dtype,
        dense: torch.Tensor | None = None,
        indices: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        binary: bool = False,
    ) -> None:
        # Use the classmethod constructors; this one trusts its arguments. A binary mask has
        # only weights 0/1; a binary index mask may store weights=None (made on demand).
        self._kind: Representation = kind
        self._shape: _Shape = shape
        self._device = device
        self._dtype = dtype
        self._dense = dense
        self._indices = indices
        self._weights = weights
        self._binary = binary or kind in ("full", "empty")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def full(
        cls,
        shape: tuple[int, ...] | torch.Size,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Mask:
        """Every key attended with weight 1."""
        return cls("full", _check_shape(shape), torch.device(device or "cpu"), dtype)

    @classmethod
    def empty(
        cls,
        shape: tuple[int, ...] | torch.Size,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Mask:
        """No key attended."""
        return cls("empty", _check_shape(shape), torch.device(device or "cpu"), dtype)

    @classmethod
    def from_dense(cls, mask: torch.Tensor, *, validate: bool = True) -> Mask:
        """Wrap a ``[B, H, Q, K]`` float tensor of weights in ``[0, 1]``.

        The tensor is kept by reference (it may be an expanded view); the caller must not
        mutate it afterwards. ``validate=False`` skips the range check (trusted callers).
        """
        shape = _check_shape(mask.shape, "mask.shape")
        if not torch.is_floating_point(mask):
            raise ValueError(f"mask.dtype={mask.dtype} is not allowed: use a float dtype")
        if validate and mask.numel() > 0:
            lo, hi = float(mask.min()), float(mask.max())
            if lo < 0.0 or hi > 1.0 or lo != lo or hi != hi:
                raise ValueError(
                    f"mask values in [{lo}, {hi}] are not allowed: weights must lie in [0, 1]"
                )
        return cls("dense", shape, mask.device, mask.dtype, dense=mask)

    @classmethod
    def from_index(
        cls,
        indices: torch.Tensor,
        weights: torch.Tensor | None,
        shape: tuple[int, ...] | torch.Size,
        *,
        assume_unique: bool = False,
        validate: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> Mask:
        """Build an index-form mask.

        ``indices`` int64 ``[B, H, Q, L]`` (``-1`` = padding), ``weights`` float of the same
        shape, or ``None`` for weight 1 at every non-padding entry (a *binary* mask, stored
        without a weights tensor; ``dtype`` is then the weights' dtype). Repeated indices in a
        row mean the union of their weights (``clamp(sum)``); unless ``assume_unique`` they
        are folded into one entry here. ``validate=False`` skips range checks and the zeroing
        of padding weights (trusted internal callers that already put weight 0 at every -1).
        """
        logical = _check_shape(shape)
        if indices.dim() != 4 or tuple(indices.shape[:3]) != logical[:3]:
            raise ValueError(
                f"indices.shape={tuple(indices.shape)} is not allowed: expected "
                f"[{logical[0]}, {logical[1]}, {logical[2]}, L] for mask shape {logical}"
            )
        if weights is None:
            if validate and indices.numel() > 0:
                lo, hi = int(indices.min()), int(indices.max())
                if lo < -1 or hi >= logical[3]:
                    raise ValueError(
                        f"indices in [{lo}, {hi}] are not allowed: use -1 (padding) or "
                        f"0..{logical[3] - 1}"
                    )
            if indices.dtype != torch.int64:
                raise ValueError(f"indices.dtype={indices.dtype} is not allowed: use torch.int64")
            if not assume_unique:
                ones = (indices >= 0).to(dtype)
                indices, _ = _fold_duplicates(indices, ones, logical[3])
            return cls("index", logical, indices.device, dtype, indices=indices, binary=True)
        if weights.shape != indices.shape:
            raise ValueError(
                f"weights.shape={tuple(weights.shape)} is not allowed: it must equal "
                f"indices.shape={tuple(indices.shape)}"
            )
        if indices.dtype != torch.int64:
            raise ValueError(f"indices.dtype={indices.dtype} is not allowed: use torch.int64")
        if not torch.is_floating_point(weights):
            raise ValueError(f"weights.dtype={weights.dtype} is not allowed: use a float dtype")
        if validate and indices.numel() > 0:
            lo, hi = int(indices.min()), int(indices.max())
            if lo < -1 or hi >= logical[3]:
                raise ValueError(
                    f"indices in [{lo}, {hi}] are not allowed: use -1 (padding) or "
                    f"0..{logical[3] - 1}"
                )
            wlo, whi = float(weights.min()), float(weights.max())
            if wlo < 0.0 or whi > 1.0 or wlo != wlo or whi != whi:
                raise ValueError(
                    f"weights in [{wlo}, {whi}] are not allowed: weights must lie in [0, 1]"
                )
        if validate:
            # Padding always carries weight 0, whatever the caller put there.
            weights = torch.where(
                indices >= 0, weights, torch.zeros((), dtype=weights.dtype, device=weights.device)
            )
        if not assume_unique:
            indices, weights = _fold_duplicates(indices, weights, logical[3])
        return cls(
            "index", logical, indices.device, weights.dtype, indices=indices, weights=weights
        )

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> _Shape:
        """Logical shape ``(B, H, Q, K)``."""
        return self._shape

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the weights (and of ``get_dense_mask()``)."""
        return self._dtype

    @property
    def representation(self) -> Representation:
        """One of ``"full"``, ``"empty"``, ``"dense"``, ``"index"``."""
        return self._kind

    def is_full(self) -> bool:
        """True when every entry is 1 (checks dense/index contents too)."""
        if self._kind == "full":
            return True
        if self._kind == "empty":
            return self.numel() == 0
        if self._kind == "dense":
            assert self._dense is not None
            return bool((self._dense == 1).all())
        return self._index_nnz() == self.numel() and self._index_all_ones()

    def is_empty(self) -> bool:
        """True when no key is attended (checks dense/index contents too)."""
        if self._kind == "empty":
            return True
        if self._kind == "full":
            return self.numel() == 0
        if self._kind == "dense":
            assert self._dense is not None
            return not bool((self._dense != 0).any())
        return self._index_nnz() == 0

    def is_binary(self) -> bool:
        """True when every weight is known to be 0 or 1 (no importance weighting)."""
        return self._binary

    def is_index(self) -> bool:
        return self._kind == "index"

    def is_dense(self) -> bool:
        return self._kind == "dense"

    def numel(self) -> int:
        b, h, q, k = self._shape
        return b * h * q * k

    # ------------------------------------------------------------------ conversions
    def get_dense_mask(self) -> torch.Tensor:
        """A new ``[B, H, Q, K]`` float tensor of the weights."""
        if self._kind == "full":
            return torch.ones(self._shape, device=self._device, dtype=self._dtype)
        if self._kind == "empty":
            return torch.zeros(self._shape, device=self._device, dtype=self._dtype)
        if self._kind == "dense":
            assert self._dense is not None
            out = torch.empty(self._shape, device=self._device, dtype=self._dtype)
            out.copy_(self._dense)
            return out
        assert self._indices is not None
        return _index_to_dense(self._indices, self._index_weights(), self._shape)

    def get_index_form(self, copy: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``(indices, weights)``, each ``[B, H, Q, L]``; ``-1``/``0`` at padding.

        ``copy=False`` returns the stored tensors of an index-form mask without copying; the
        caller must then treat them as read-only.
        """
        b, h, q, k = self._shape
        if self._kind == "full":
            idx = torch.arange(k, device=self._device).expand(b, h, q, k).clone()
            return idx, torch.ones((b, h, q, k), device=self._device, dtype=self._dtype)
        if self._kind == "empty":
            return (
                torch.empty((b, h, q, 0), device=self._device, dtype=torch.int64),
                torch.empty((b, h, q, 0), device=self._device, dtype=self._dtype),
            )
        if self._kind == "dense":
            assert self._dense is not None
            return _dense_to_index(self._dense)
        assert self._indices is not None
        weights = self._index_weights()
        if copy:
            return self._indices.clone(), weights.clone()
        return self._indices, weights

    def index_view(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Stored ``(indices, weights)`` of an index-form mask without copying; ``weights`` is
        None for a binary mask (weight 1 at every non-padding entry). Read-only: for hot
        paths (attention, exclusion of selected keys)."""
        if self._kind != "index":
            raise ValueError(
                f"index_view() on a {self._kind!r} mask is not allowed: only index-form masks"
            )
        assert self._indices is not None
        return self._indices, (None if self._binary else self._index_weights())

    def get_density(self) -> float:
        """Share of the ``B*H*Q*K`` entries that are attended (weight > 0)."""
        total = self.numel()
        if total == 0:
            return 0.0
        if self._kind == "full":
            return 1.0
        if self._kind == "empty":
            return 0.0
        if self._kind == "dense":
            assert self._dense is not None
            return float((self._dense > 0).sum()) / total
        return self._index_nnz() / total

    def row_counts(self) -> torch.Tensor:
        """Number of attended keys per row, int64 ``[B, H, Q]``."""
        b, h, q, k = self._shape
        if self._kind == "full":
            return torch.full((b, h, q), k, device=self._device, dtype=torch.int64)
        if self._kind == "empty":
            return torch.zeros((b, h, q), device=self._device, dtype=torch.int64)
        if self._kind == "dense":
            assert self._dense is not None
            return (self._dense > 0).sum(-1)
        assert self._indices is not None
        if self._binary:
            return (self._indices >= 0).sum(-1)
        return ((self._indices >= 0) & (self._index_weights() > 0)).sum(-1)

    def query_slice(self, start: int, end: int) -> Mask:
        """The rows ``start:end`` along Q, as a mask of shape ``[B, H, end-start, K]``."""
        b, h, q, k = self._shape
        if not 0 <= start <= end <= q:
            raise ValueError(
                f"query slice [{start}, {end}) is not allowed: use 0 <= start <= end <= {q}"
            )
        shape = (b, h, end - start, k)
        if self._kind in ("full", "empty"):
            return Mask(self._kind, shape, self._device, self._dtype)
        if self._kind == "index" and self._binary:
            assert self._indices is not None
            return Mask(
                "index",
                shape,
                self._device,
                self._dtype,
                indices=self._indices[:, :, start:end],
                binary=True,
            )
        if self._kind == "dense":
            assert self._dense is not None
            return Mask(
                "dense", shape, self._device, self._dtype, dense=self._dense[:, :, start:end]
            )
        assert self._indices is not None
        return Mask(
            "index",
            shape,
            self._device,
            self._dtype,
            indices=self._indices[:, :, start:end],
            weights=self._index_weights()[:, :, start:end],
        )

    # ------------------------------------------------------------------ algebra
    def merge(self, other: Mask) -> Mask:
        """Union ``clamp(self + other, 0, 1)`` as a new mask.

        index ∪ index stays in index form (never densified); dense ∪ anything is dense.
        """
        if other.shape != self._shape:
            raise ValueError(
                f"other.shape={other.shape} is not allowed: merging needs equal shapes "
                f"(self.shape={self._shape})"
            )
        if self._kind == "full" or other._kind == "full":
            return Mask("full", self._shape, self._device, self._dtype)
        if self._kind == "empty":
            return other
        if other._kind == "empty":
            return self
        if self._kind == "index" and other._kind == "index":
            return self._merge_index(other, disjoint=False)
        a = self._dense_view()
        b = other._dense_view()
        return Mask("dense", self._shape, self._device, self._dtype, dense=(a + b).clamp_(0.0, 1.0))

    def merge_disjoint(self, other: Mask) -> Mask:
        """Union when the caller guarantees no key is selected by both (no duplicate check).

        Top-k maskers use it: they never select a key the previous mask holds. Falls back to
        :meth:`merge` unless both masks are in index form.
        """
        if self._kind == "index" and other._kind == "index" and other.shape == self._shape:
            return self._merge_index(other, disjoint=True)
        return self.merge(other)

    def _merge_index(self, other: Mask, disjoint: bool) -> Mask:
        assert self._indices is not None and other._indices is not None
        idx = torch.cat([self._indices, other._indices], dim=-1)
        needs_fold = not disjoint and not _rows_disjoint(self._indices, other._indices)
        if self._binary and other._binary:
            # clamp(1 + 1) = 1: the union of binary masks is binary, no weights needed
            if needs_fold:
                ones = (idx >= 0).to(self._dtype)
                idx, _ = _fold_duplicates(idx, ones, self._shape[3])
            return Mask("index", self._shape, self._device, self._dtype, indices=idx, binary=True)
        w = torch.cat([self._index_weights(), other._index_weights().to(self._dtype)], dim=-1)
        if needs_fold:
            idx, w = _fold_duplicates(idx, w, self._shape[3])
        return Mask("index", self._shape, self._device, self._dtype, indices=idx, weights=w)

    def _dense_view(self) -> torch.Tensor:
        """Dense weights, possibly shared (internal use only: never mutate the result)."""
        if self._kind == "dense":
            assert self._dense is not None
            return self._dense
        return self.get_dense_mask()

    # ------------------------------------------------------------------ internals
    def _index_weights(self) -> torch.Tensor:
        """The weights of an index-form mask (made from the indices for a binary mask)."""
        assert self._indices is not None
        if self._weights is None:
            # a logically immutable cache: the value is fully determined by the indices
            self._weights = (self._indices >= 0).to(self._dtype)
        return self._weights

    def _index_nnz(self) -> int:
        assert self._indices is not None
        if self._binary:
            return int((self._indices >= 0).sum())
        return int(((self._indices >= 0) & (self._index_weights() > 0)).sum())

    def _index_all_ones(self) -> bool:
        if self._binary:
            return True
        assert self._indices is not None
        weights = self._index_weights()
        valid = (self._indices >= 0) & (weights > 0)
        return bool((weights[valid] == 1).all())

    def __repr__(self) -> str:
        extra = ""
        if self._kind == "index":
            assert self._indices is not None
            extra = f", L={self._indices.shape[-1]}"
        return f"Mask({self._kind}, shape={self._shape}{extra}, dtype={self._dtype})"


def _rows_disjoint(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Cheap sufficient test that no row of ``a`` shares an index with the same row of ``b``.

    Compares per-row index ranges (padding ignored): sink ∪ local at long K passes it, so the
    common case skips the sort in :func:`_fold_duplicates`.
    """
    if a.shape[-1] == 0 or b.shape[-1] == 0:
        return True
    # a fixed pattern's indices are one row expanded over batch / heads: reduce one copy
    a, b = _one_copy(a), _one_copy(b)
    big = torch.iinfo(torch.int64).max
    a_min = torch.where(a >= 0, a, big).amin(-1)
    a_max = a.amax(-1)
    b_min = torch.where(b >= 0, b, big).amin(-1)
    b_max = b.amax(-1)
    return bool(((a_max < b_min) | (b_max < a_min)).all())


def _one_copy(indices: torch.Tensor) -> torch.Tensor:
    """``indices`` with every broadcast (stride-0) leading dim cut to size 1 (the same
    values, broadcastable back to the full shape)."""
    for dim in range(indices.dim() - 1):
        if indices.stride(dim) == 0 and indices.shape[dim] > 1:
            indices = indices.narrow(dim, 0, 1)
    return indices


def _fold_duplicates(
    indices: torch.Tensor, weights: torch.Tensor, key_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold repeated indices of each row into one entry with ``clamp(sum of weights, 0, 1)``.

    Sort-based, stays in index form; the result is trimmed to the longest row.
    """
    if indices.shape[-1] <= 1:
        return indices, weights
    sentinel = key_len  # padding sorts after every real key
    keyed = torch.where(indices >= 0, indices, sentinel)
    sorted_idx, order = keyed.sort(dim=-1)
    sorted_w = weights.gather(-1, order)
    starts = torch.ones_like(sorted_idx, dtype=torch.bool)
    starts[..., 1:] = sorted_idx[..., 1:] != sorted_idx[..., :-1]
    group = starts.to(torch.int64).cumsum(-1) - 1
    folded_w = torch.zeros_like(sorted_w).scatter_add_(-1, group, sorted_w).clamp_(0.0, 1.0)
    folded_idx = torch.full_like(sorted_idx, -1).scatter_(-1, group, sorted_idx)
    is_pad = (folded_idx < 0) | (folded_idx == sentinel)
    folded_idx = folded_idx.masked_fill(is_pad, -1)
    folded_w = folded_w.masked_fill(is_pad, 0.0)
    # Real groups come first in each row (sorted order); trim the common tail of padding.
    width = int((~is_pad).sum(-1).max()) if is_pad.numel() > 0 else 0
    return folded_idx[..., :width].contiguous(), folded_w[..., :width].contiguous()


def _index_to_dense(indices: torch.Tensor, weights: torch.Tensor, shape: _Shape) -> torch.Tensor:
    dense = torch.zeros(shape, device=weights.device, dtype=weights.dtype)
    if indices.shape[-1] == 0:
        return dense
    # Padding (-1) adds weight 0 to column 0, which changes nothing.
    safe = indices.clamp(min=0)
    dense.scatter_add_(-1, safe, torch.where(indices >= 0, weights, 0.0))
    return dense.clamp_(0.0, 1.0)


def _dense_to_index(dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack the non-zero entries of each row to the front; pad with -1 / 0."""
    nonzero = dense > 0
    width = int(nonzero.sum(-1).max()) if dense.numel() > 0 else 0
    key_len = dense.shape[-1]
    positions = torch.arange(key_len, device=dense.device).expand(dense.shape)
    keyed = torch.where(nonzero, positions, key_len)
    packed, _ = keyed.sort(dim=-1)
    packed = packed[..., :width]
    valid = packed < key_len
    indices = torch.where(valid, packed, -1)
    weights = torch.where(valid, dense.gather(-1, packed.clamp(max=max(key_len - 1, 0))), 0.0)
    return indices.contiguous(), weights.to(dense.dtype).contiguous()

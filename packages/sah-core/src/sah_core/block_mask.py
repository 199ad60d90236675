"""`BlockSparseMask`: a :class:`~sah_core.mask.Mask` held as a block layout.

The sparse-prefill maskers (vertical-slash, block top-k) select whole ``block_size`` x
``block_size`` tiles of the ``[Q, K]`` score matrix, plus, for vertical lines, single key
columns per query block. Storing that as a dense or index-form mask would cost ``Q x K`` (or
``Q x L``) entries per head; this representation stores

* ``tiles`` -- bool ``[B|1, Hq|1, nQb, nKb]``: query block ``i`` attends key block ``j``;
* ``columns`` -- bool ``[B|1, Hq|1, nQb, K]`` or None: single keys every row of query block
  ``i`` attends besides its tiles,

and the logical value (the mask contract's ``[B, Hq, Q, K]``, weights 0/1) is: row ``r`` (at key
position ``first + r``, in query block ``(r + shift) // block_size``) attends key ``j`` iff
``j <= first + r`` (causal) and the tile of ``j`` is active or ``j`` is one of the block's
columns. The attention backend layer runs such a mask on the block-sparse prefill path (the
tiled torch reference on CPU, the Triton kernel on CUDA) without building ``[B, Hq, Q, K]``;
every other consumer (union with an index mask, ``get_dense_mask``, metrics) sees an ordinary
mask through the :class:`Mask` methods (materialised on demand). Density and row counts are
computed from the layout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from sah_core.attention.common import masked_keys
from sah_core.call_plan import CallPlan
from sah_core.mask import Mask, _check_shape

logger = logging.getLogger(__name__)


def num_blocks(length: int, block_size: int) -> int:
    return -(-length // block_size)


class BlockSparseMask(Mask):
    """Immutable block-layout mask (see the module doc). Build with :meth:`from_layout`."""

    __slots__ = ("_block_size", "_columns", "_first", "_shift", "_tiles")

    _tiles: torch.Tensor
    _columns: torch.Tensor | None
    _block_size: int
    _first: int
    _shift: int

    @classmethod
    def from_layout(
        cls,
        shape: tuple[int, ...] | torch.Size,
        tiles: torch.Tensor,
        block_size: int,
        columns: torch.Tensor | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        first_position: int | None = None,
    ) -> BlockSparseMask:
        """A block mask of logical ``shape`` ``[B, Hq, Q, K]``; the queries sit at key positions
        ``first_position + r`` (default: the last ``Q`` keys), query block 0 starts at row 0."""
        logical = _check_shape(shape)
        b, h, q, k = logical
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size={block_size!r} is not allowed: use a positive int")
        expected = (num_blocks(q, block_size), num_blocks(k, block_size))
        if (
            tiles.dtype != torch.bool
            or tiles.dim() != 4
            or tiles.shape[0] not in (1, b)
            or tiles.shape[1] not in (1, h)
            or tuple(tiles.shape[2:]) != expected
        ):
            raise ValueError(
                f"tiles (shape {tuple(tiles.shape)}, dtype {tiles.dtype}) is not allowed: use a "
                f"bool [1 or {b}, 1 or {h}, {expected[0]}, {expected[1]}] tensor"
            )
        if columns is not None and (
            columns.dtype != torch.bool
            or columns.dim() != 4
            or columns.shape[0] not in (1, b)
            or columns.shape[1] not in (1, h)
            or tuple(columns.shape[2:]) != (expected[0], k)
        ):
            raise ValueError(
                f"columns (shape {tuple(columns.shape)}, dtype {columns.dtype}) is not allowed: "
                f"use a bool [1 or {b}, 1 or {h}, {expected[0]}, {k}] tensor or None"
            )
        first = k - q if first_position is None else int(first_position)
        if first < 0 or first + q > k:
            raise ValueError(
                f"first_position={first} is not allowed: the {q} queries must sit at key "
                f"positions inside 0..{k - 1}"
            )
        mask = cls("block", logical, tiles.device, dtype, binary=True)
        mask._tiles = tiles
        mask._columns = columns
        mask._block_size = block_size
        mask._first = first
        mask._shift = 0
        return mask

    # ------------------------------------------------------------------ layout access
    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def aligned(self) -> bool:
        """True when the queries are the last Q keys and block 0 starts at row 0 (the
        convention of the block-sparse prefill kernels)."""
        _b, _h, q, k = self._shape
        return self._shift == 0 and self._first == k - q

    def layout(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(tiles, columns)`` as stored (read-only)."""
        return self._tiles, self._columns

    # ------------------------------------------------------------------ per-row geometry
    def _row_blocks(self) -> torch.Tensor:
        q = self._shape[2]
        return (torch.arange(q, device=self._device) + self._shift) // self._block_size

    def _row_positions(self) -> torch.Tensor:
        q = self._shape[2]
        return torch.arange(q, device=self._device) + self._first

    def _attended(self) -> torch.Tensor:
        """Bool ``[B, Hq, Q, K]`` of the attended entries (materialised: tests, fallbacks)."""
        b, h, _q, k = self._shape
        blocks = self._row_blocks()
        positions = self._row_positions()
        key_block = torch.arange(k, device=self._device) // self._block_size
        tiles = self._tiles[:, :, blocks]  # [Bm, Hm, Qr, nKb]
        attended = tiles[..., key_block]
        if self._columns is not None:
            attended = attended | self._columns[:, :, blocks]
        causal = torch.arange(k, device=self._device) <= positions.unsqueeze(-1)
        return (attended & causal).expand(b, h, positions.shape[0], k)

    # ------------------------------------------------------------------ Mask API
    def get_dense_mask(self) -> torch.Tensor:
        return self._attended().to(self._dtype)

    def _dense_view(self) -> torch.Tensor:
        return self.get_dense_mask()

    def get_index_form(self, copy: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        dense = self.get_dense_mask()
        nonzero = dense > 0
        width = int(nonzero.sum(-1).max()) if dense.numel() else 0
        k = dense.shape[-1]
        keyed = torch.where(nonzero, torch.arange(k, device=self._device), k)
        packed = keyed.sort(dim=-1).values[..., :width]
        valid = packed < k
        return torch.where(valid, packed, -1), valid.to(self._dtype)

    def index_view(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        indices, _ = self.get_index_form()
        return indices, None

    def row_counts(self) -> torch.Tensor:
        b, h, q, k = self._shape
        bs = self._block_size
        blocks = self._row_blocks()
        positions = self._row_positions()
        # keys of tile j visible to a row at position p: clamp(p - j*bs + 1, 0, tile width)
        starts = torch.arange(num_blocks(k, bs), device=self._device) * bs
        widths = torch.clamp(k - starts, max=bs)
        visible = torch.minimum((positions.unsqueeze(-1) - starts + 1).clamp(min=0), widths)
        tiles = self._tiles[:, :, blocks].to(torch.int64)  # [Bm, Hm, Q, nKb]
        counts = (tiles * visible).sum(-1)
        if self._columns is not None:
            key_block = torch.arange(k, device=self._device) // bs
            cols = self._columns & ~self._tiles[..., key_block]  # a key counts once
            # columns at or before each row's position: cumulative counts along K
            cumulative = cols.to(torch.int64).cumsum(-1)  # [Bm, Hm, nQb, K]
            counts = counts + cumulative[:, :, blocks, positions]
        return counts.expand(b, h, q)

    def get_density(self) -> float:
        total = self.numel()
        return float(self.row_counts().sum()) / total if total else 0.0

    def is_full(self) -> bool:
        return self.numel() == 0 or bool((self.row_counts() == self._shape[3]).all())

    def is_empty(self) -> bool:
        return self.numel() == 0 or not bool((self.row_counts() > 0).any())

    def query_slice(self, start: int, end: int) -> Mask:
        b, h, q, k = self._shape
        if not 0 <= start <= end <= q:
            raise ValueError(
                f"query slice [{start}, {end}) is not allowed: use 0 <= start <= end <= {q}"
            )
        bs = self._block_size
        if end == start:
            return Mask.empty((b, h, 0, k), self._device, self._dtype)
        lo = (start + self._shift) // bs
        hi = (end - 1 + self._shift) // bs + 1
        part = BlockSparseMask(
            "block", (b, h, end - start, k), self._device, self._dtype, binary=True
        )
        part._tiles = self._tiles[:, :, lo:hi]
        part._columns = None if self._columns is None else self._columns[:, :, lo:hi]
        part._block_size = bs
        part._first = self._first + start
        part._shift = (start + self._shift) % bs
        return part

    def merge(self, other: Mask) -> Mask:
        """Union. With another block mask of the same geometry the result stays a block mask
        (tiles and columns OR-ed); with full/empty as usual; with index or dense masks the
        union is materialised (dense) -- put block maskers first in a stack or alone."""
        if other.shape != self._shape:
            raise ValueError(
                f"other.shape={other.shape} is not allowed: merging needs equal shapes "
                f"(self.shape={self._shape})"
            )
        kind = other.representation
        if kind == "full":
            return other
        if kind == "empty":
            return self
        if (
            isinstance(other, BlockSparseMask)
            and other._block_size == self._block_size
            and other._first == self._first
            and other._shift == self._shift
        ):
            tiles = self._tiles | other._tiles
            columns = self._columns
            if other._columns is not None:
                columns = other._columns if columns is None else columns | other._columns
            out = BlockSparseMask("block", self._shape, self._device, self._dtype, binary=True)
            out._tiles, out._columns = tiles, columns
            out._block_size, out._first, out._shift = self._block_size, self._first, self._shift
            return out
        logger.debug("block mask merged with a %s mask: materialising the union", kind)
        dense = (self.get_dense_mask() + other._dense_view()).clamp_(0.0, 1.0)
        return Mask.from_dense(dense, validate=False)

    def merge_disjoint(self, other: Mask) -> Mask:
        return self.merge(other)

    def __repr__(self) -> str:
        return (
            f"BlockSparseMask(shape={self._shape}, block_size={self._block_size}, "
            f"columns={self._columns is not None}, dtype={self._dtype})"
        )


def require_last_positions(call: CallPlan, owner: str) -> None:
    """Block layouts align query block 0 with the first query, the queries being the last Q
    keys (prefill, a question, decode); other given positions raise ``ValueError``."""
    given = call.given_positions
    if given is None:
        return
    expected = torch.arange(call.k_len - call.q_len, call.k_len, device=given.device)
    if not torch.equal(given, expected):
        raise ValueError(
            f"query_positions={given.tolist()[:8]}... is not allowed for {owner}: a block layout "
            "needs the queries to be the last Q keys (positions K-Q .. K-1)"
        )


def merge_into(previous: Mask, mine: BlockSparseMask) -> Mask:
    """``previous ∪ mine`` keeping the block form when ``previous`` is empty or a block mask."""
    if previous.representation == "empty":
        return mine
    return mine.merge(previous)


def row_by_row(
    call: CallPlan,
    previous: Mask,
    select: Callable[[CallPlan, Mask], Mask],
    owner: str,
) -> Mask:
    """``previous ∪`` the picks of ``select`` run on each batch row alone, for a call with
    padded keys (a left-padded batch of unequal rows, keys ``[context | pads | question]``).

    A block layout's tile grid, pooled scores, diagonal offsets and fractional budgets are
    those of the row's own sequence, which padding shifts; so each row is cut to its valid
    keys and real query rows (exactly the row run by itself) and selected there. Different
    rows' tiles then cover different physical keys, which one block layout cannot hold: the
    union is materialised as a dense ``[B, Hq, Q, K]`` mask (0 at pad keys and pad query
    rows). Calls without padding (a context prefill) never come here."""
    counts, index = call.key_counts, call.valid_key_index
    query_valid, row_positions = call.query_valid, call.row_query_positions
    if counts is None or index is None or query_valid is None or row_positions is None:
        raise ValueError(f"row_by_row is for calls with padded keys only (owner {owner})")
    dense = torch.zeros(call.shape, dtype=previous.dtype, device=call.device)
    for row, kept in enumerate(counts.tolist()):
        rows = query_valid[row].nonzero().flatten()
        if rows.numel() == 0 or kept == 0:
            continue
        own = torch.arange(kept - rows.numel(), kept, device=call.device)
        at = row_positions[row, rows]
        if not torch.equal(at, own):
            raise ValueError(
                f"batch row {row}: real queries at positions {at.tolist()[:8]}... of the row's "
                f"own sequence are not allowed for {owner}: they must be its last "
                f"{rows.numel()} valid keys (left padding only)"
            )
        keys_at = index[row, :kept]
        alone = CallPlan.build(
            call.queries[row : row + 1, :, rows],
            call.keys[row : row + 1, :, keys_at],
            call.values[row : row + 1, :, keys_at],
            None,
            call.scaling,
            layer_idx=call.layer_idx,
        )
        picked = select(alone, Mask.empty(alone.shape, call.device, previous.dtype))
        dense[row][:, rows.unsqueeze(-1), keys_at] = picked.get_dense_mask()[0]
    mine = Mask.from_dense(dense, validate=False)
    return mine if previous.representation == "empty" else mine.merge(previous)


# --------------------------------------------------------------------------- attention


def block_mask_attention_triton(call: CallPlan, mask: BlockSparseMask) -> torch.Tensor | None:
    """The Triton block-sparse prefill kernel for ``call`` under a block mask, or None when it
    does not apply (not CUDA / no Triton, dropout, an attention mask other than causal, a tile
    edge that is not a power of two >= 16)."""
    if not call.queries.is_cuda or call.dropout > 0.0 or not mask.aligned:
        return None
    bs = mask.block_size
    if bs < 16 or bs & (bs - 1):
        return None
    from sah_core.kernels.dispatch import block_sparse_prefill_attention, select_backend

    if select_backend(call.device, "auto") != "triton" or not _only_causal(call):
        return None
    tiles, columns = mask.layout()
    try:
        return block_sparse_prefill_attention(
            call.queries,
            call.keys,
            call.values,
            tiles,
            call.scaling,
            bs,
            True,
            call.s_aux,
            backend="triton",
            columns=columns,
        )
    except (ValueError, RuntimeError) as error:
        logger.debug("Triton block-sparse prefill declined (%s); using the reference", error)
        return None


def block_mask_attention_reference(
    call: CallPlan, mask: BlockSparseMask
) -> tuple[torch.Tensor, str]:
    """``(out [B, Hq, Q, Dv], name)``: the tiled torch reference over the active tiles and
    columns (adds the call's attention-mask bias; no ``[B, Hq, Q, K]`` tensor). Dropout or a
    sliced (unaligned) mask take the dense-weight path instead."""
    if call.dropout > 0.0 or not mask.aligned:
        from sah_core.attention.dense import dense_mask_attention

        out = dense_mask_attention(
            call.queries,
            call.keys,
            call.values,
            mask.get_dense_mask(),
            scaling=call.scaling,
            attention_mask=call.attention_mask,
            s_aux=call.s_aux,
            dropout=call.dropout,
            query_chunk_size=call.requested_chunk_rows,
        )
        return out, "reference/dense-mask"
    from sah_core.kernels.reference import block_sparse_prefill_attention_reference

    tiles, columns = mask.layout()
    out = block_sparse_prefill_attention_reference(
        call.queries,
        call.keys,
        call.values,
        tiles,
        call.scaling,
        mask.block_size,
        True,
        call.s_aux,
        columns=columns,
        attention_mask=call.attention_mask,
    )
    return out, "reference/block-sparse"


def _only_causal(call: CallPlan) -> bool:
    """True when the call's attention mask forbids exactly the causal future (or is None) and
    is 0 elsewhere, so the kernel's own causal rule reproduces it."""
    mask = call.attention_mask
    if mask is None:
        return True
    _q, k = call.q_len, call.k_len
    future = torch.arange(k, device=mask.device) > call.query_positions.unsqueeze(-1)
    forbidden = masked_keys(mask)
    return bool((forbidden == future).all()) and bool((mask.masked_fill(forbidden, 0) == 0).all())

"""`CallPlan`: everything one attention call needs, checked and derived once.

``ResearchAttention`` builds one plan per layer call (FlashInfer's "plan, then run" idea):
the inputs are validated, the attention mask is normalised, the query-chunk plan is fixed
and the per-row key validity (left padding) is derived on first use; every masker then reads
the plan instead of re-deriving it. ``plan.for_masker(i)`` is the same plan with masker
``i``'s own state slot; the maskers receive it as ``add_mask(call, previous)``.

Build one outside ``ResearchAttention`` (tests, notebooks) with :meth:`CallPlan.build`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import torch

from sah_core.attention.common import (
    attended_key_limit,
    grouped_scores,
    masked_keys,
    plan_chunk_rows,
)

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class NonFiniteInputError(ValueError):
    """Raised when ``raise_on_nonfinite`` is set and an attention input holds NaN or inf."""


@dataclasses.dataclass(frozen=True, eq=False)
class QueryChunk:
    """Rows ``start:end`` of one call: their queries and (additive) attention mask."""

    start: int
    end: int
    queries: torch.Tensor
    attention_mask: torch.Tensor | None
    key_len: int
    _cache: dict[str, int] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def rows(self) -> int:
        return self.end - self.start

    @property
    def key_limit(self) -> int:
        """1 + the last key column any row of the chunk may attend (K without a mask):
        keys at or beyond it are forbidden for every row (the future part in causal prefill)."""
        limit = self._cache.get("key_limit")
        if limit is None:
            limit = attended_key_limit(self.attention_mask, self.key_len)
            self._cache["key_limit"] = limit
        return limit

    @property
    def first_touched(self) -> int:
        """The first key column where the chunk's mask is nonzero for any row (``K``
        without a mask or when it is all zero): adding the mask from there is enough."""
        first = self._cache.get("first_touched")
        if first is None:
            mask = self.attention_mask
            if mask is None or mask.numel() == 0:
                first = self.key_len
            else:
                touched = mask.ne(0).flatten(0, -2).any(0)
                first = int(touched.int().argmax()) if bool(touched.any()) else self.key_len
            self._cache["first_touched"] = first
        return first


@dataclasses.dataclass(frozen=True, eq=False)
class CallPlan:
    """One layer call, read-only (see module doc). Shapes: ``queries [B, Hq, Q, D]``,
    ``keys [B, Hkv, K, D]``, ``values [B, Hkv, K, Dv]``; query head ``h`` reads KV head
    ``h // (Hq // Hkv)``.

    * ``attention_mask`` -- additive float ``[B|1, 1|Hq, Q, K]`` (0 = attend, ``-inf`` or the
      dtype's minimum = forbidden) or None; a bool mask, a broadcast single row and a static
      cache's longer key axis are already normalised away;
    * ``layer_idx`` -- the decoder layer (None outside a model);
    * ``query_positions`` -- absolute key position of each query, int64 ``[Q]`` (the last Q
      keys unless the caller gave positions);
    * ``chunk_rows`` / :meth:`query_chunks` -- the query-chunk plan: rows per chunk so one
      ``[B, Hq, Qc, K]`` fp32 working tensor stays near 16 MiB (or the caller's size);
    * ``key_valid`` -- bool ``[B, K]``, False at keys no query row of that batch row may
      attend (left padding of a batched request), or None when every key is valid;
      ``left_padding`` -- int64 ``[B]`` count of leading invalid keys; ``key_counts`` [B],
      ``key_positions`` [B, K] (index in the row's own sequence, -1 at pads),
      ``valid_key_index`` [B, K] (its inverse), ``query_valid`` [B, Q] and
      ``row_query_positions`` [B, Q] -- all None when no key is padding (the fast path);
    * ``sparse_meta_data`` -- the request's state dict; ``state`` -- this masker's own slot in
      it (``sparse_meta_data[layer_idx][f"{position}:{type_tag}"]``), ``masker_position`` --
      its index in the stack; ``last_in_stack`` -- True when no masker of the stack runs
      after it (its mask goes straight to the attention; False when unknown);
    * ``extras`` -- every other keyword transformers passed (read-only).
    """

    queries: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    attention_mask: torch.Tensor | None
    scaling: float
    layer_idx: int | None
    chunk_rows: int
    sparse_meta_data: dict[Any, Any]
    dropout: float = 0.0
    s_aux: torch.Tensor | None = None
    given_positions: torch.Tensor | None = None
    requested_chunk_rows: int | None = None
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    masker_position: int = 0
    last_in_stack: bool = False
    state: dict[str, Any] = dataclasses.field(default_factory=dict)
    _shared: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    _padding: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        scaling: float | None = None,
        *,
        layer_idx: int | None = None,
        sparse_meta_data: dict[Any, Any] | None = None,
        dropout: float = 0.0,
        s_aux: torch.Tensor | None = None,
        query_positions: Any = None,
        query_chunk_size: int | None = None,
        extras: Mapping[str, Any] | None = None,
        raise_on_nonfinite: bool = False,
    ) -> CallPlan:
        """Check the inputs (clear ``ValueError`` naming the field) and build the plan."""
        b, hq, q, k = check_attention_inputs(queries, keys, values)
        if scaling is None:
            scaling = 1.0 / math.sqrt(queries.shape[-1])
        if (
            isinstance(scaling, bool)
            or not isinstance(scaling, (int, float))
            or not math.isfinite(scaling)
            or scaling <= 0
        ):
            raise ValueError(f"scaling={scaling!r} is not allowed: use a finite number > 0")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not (0.0 <= dropout <= 1.0)
        ):
            raise ValueError(f"dropout={dropout!r} is not allowed: use a number in [0, 1]")
        if query_chunk_size is not None and (
            isinstance(query_chunk_size, bool)
            or not isinstance(query_chunk_size, int)
            or query_chunk_size < 1
        ):
            raise ValueError(
                f"query_chunk_size={query_chunk_size!r} is not allowed: use a positive int or None"
            )
        positions = None
        if query_positions is not None:
            positions = _check_positions(query_positions, q, k, queries.device)
        elif q > k:
            raise ValueError(
                f"queries.shape[2]={q} > keys.shape[2]={k} is not allowed: without "
                "query_positions the queries are the last Q keys, so Q <= K"
            )
        mask = normalize_call_mask(attention_mask, b, hq, q, k, queries.device)
        if s_aux is not None and (s_aux.dim() != 1 or s_aux.shape[0] != hq):
            raise ValueError(
                f"s_aux.shape={tuple(s_aux.shape)} is not allowed: use one sink logit per "
                f"query head, shape ({hq},)"
            )
        if raise_on_nonfinite:
            check_finite(queries=queries, keys=keys, values=values)
        return cls(
            queries=queries,
            keys=keys,
            values=values,
            attention_mask=mask,
            _padding=_padding_entries(attention_mask, positions, b, q, k),
            scaling=float(scaling),
            layer_idx=layer_idx,
            chunk_rows=plan_chunk_rows(query_chunk_size, b * hq * k),
            sparse_meta_data={} if sparse_meta_data is None else sparse_meta_data,
            dropout=float(dropout),
            s_aux=s_aux,
            given_positions=positions,
            requested_chunk_rows=query_chunk_size,
            extras={} if extras is None else extras,
        )

    def for_masker(self, position: int, type_tag: str, last: bool = False) -> CallPlan:
        """This plan with masker ``position``'s state slot (created on first use);
        ``last``: no masker of the stack runs after it."""
        per_layer = self.sparse_meta_data.setdefault(self.layer_idx, {})
        slot = per_layer.setdefault(f"{position}:{type_tag}", {})
        # a field-for-field copy (what dataclasses.replace makes, without its per-field
        # checks: this runs once per masker and layer call); _shared stays shared
        plan = object.__new__(type(self))
        fields = plan.__dict__
        fields.update(self.__dict__)
        fields["masker_position"] = position
        fields["last_in_stack"] = last
        fields["state"] = slot
        return plan

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(B, Hq, Q, K)``, the logical shape of every mask of this call."""
        b, hq, q, _ = self.queries.shape
        return (int(b), int(hq), int(q), int(self.keys.shape[2]))

    @property
    def batch(self) -> int:
        return int(self.queries.shape[0])

    @property
    def num_q_heads(self) -> int:
        return int(self.queries.shape[1])

    @property
    def num_kv_heads(self) -> int:
        return int(self.keys.shape[1])

    @property
    def group_size(self) -> int:
        """Query heads per KV head."""
        return self.num_q_heads // self.num_kv_heads

    @property
    def q_len(self) -> int:
        return int(self.queries.shape[2])

    @property
    def k_len(self) -> int:
        return int(self.keys.shape[2])

    @property
    def head_dim(self) -> int:
        return int(self.queries.shape[3])

    @property
    def device(self) -> torch.device:
        return self.queries.device

    # ------------------------------------------------------------------ derived (lazy, shared)
    @property
    def query_positions(self) -> torch.Tensor:
        """Absolute key position of each query, int64 ``[Q]``."""
        if self.given_positions is not None:
            return self.given_positions
        positions = self._shared.get("positions")
        if positions is None:
            positions = torch.arange(self.k_len - self.q_len, self.k_len, device=self.device)
            self._shared["positions"] = positions
        return positions

    @property
    def is_decode_like(self) -> bool:
        """True when every query sits at the last key position (decode; nothing causal)."""
        return self.given_positions is None and self.q_len <= 1

    def query_chunks(self, row_elements: int | None = None) -> tuple[QueryChunk, ...]:
        """The query chunks of this call. ``row_elements`` (default ``B * Hq * K``) is what
        one query row adds to the working tensor; other widths give other chunk sizes."""
        rows = (
            self.chunk_rows
            if row_elements is None
            else plan_chunk_rows(self.requested_chunk_rows, row_elements)
        )
        key = f"chunks:{rows}"
        chunks = self._shared.get(key)
        if chunks is None:
            q, k, mask = self.q_len, self.k_len, self.attention_mask
            chunks = tuple(
                QueryChunk(
                    start,
                    min(q, start + rows),
                    self.queries[:, :, start : min(q, start + rows)],
                    None if mask is None else mask[:, :, start : min(q, start + rows)],
                    k,
                )
                for start in range(0, q, rows)
            )
            if mask is not None and len(chunks) > 1:
                _seed_chunk_bounds(chunks, mask)
            self._shared[key] = chunks
        return chunks

    @property
    def key_valid(self) -> torch.Tensor | None:
        """bool ``[B, K]``: False at keys that no query row (and no head) of a batch row may
        attend -- left padding in a batched request; None when every key is valid. Stateful
        maskers keep such keys out of their summaries so batched equals one by one."""
        if "key_valid" not in self._padding:
            self._padding["key_valid"] = _key_valid(self.attention_mask, self.batch, self.k_len)
        valid: torch.Tensor | None = self._padding["key_valid"]
        return valid

    @property
    def left_padding(self) -> torch.Tensor | None:
        """int64 ``[B]``: number of leading invalid keys per batch row (None: no padding)."""
        valid = self.key_valid
        if valid is None:
            return None
        if "left_padding" not in self._padding:
            # index of the first valid key = count of leading invalid ones (K if none valid)
            first = torch.where(valid, torch.arange(self.k_len, device=valid.device), self.k_len)
            self._padding["left_padding"] = first.amin(-1)
        padding: torch.Tensor = self._padding["left_padding"]
        return padding

    @property
    def key_counts(self) -> torch.Tensor | None:
        """int64 ``[B]``: valid keys per batch row (None: no padding, every row has K)."""
        return self._padding_view("key_counts")

    @property
    def key_positions(self) -> torch.Tensor | None:
        """int64 ``[B, K]``: each key's index in its row's own unpadded sequence
        (``cumsum(key_valid) - 1``), -1 at invalid keys; None without padding."""
        return self._padding_view("key_positions")

    @property
    def valid_key_index(self) -> torch.Tensor | None:
        """int64 ``[B, K]``: ``[b, j]`` = physical index of row ``b``'s ``j``-th valid key
        (the inverse of ``key_positions``), -1 beyond ``key_counts[b]``; None without padding."""
        return self._padding_view("valid_key_index")

    @property
    def query_valid(self) -> torch.Tensor | None:
        """bool ``[B, Q]``: False for query rows that sit on an invalid key position (pad
        rows in a padded question prefill); None without padding."""
        return self._padding_view("query_valid")

    @property
    def row_query_positions(self) -> torch.Tensor | None:
        """int64 ``[B, Q]``: each query's position in its row's own unpadded sequence (-1 for
        pad rows); None without padding (then ``query_positions`` holds for every row)."""
        return self._padding_view("row_query_positions")

    def _padding_view(self, name: str) -> torch.Tensor | None:
        valid = self.key_valid
        if valid is None:
            return None
        if "key_positions" not in self._padding:
            k = self.k_len
            as_int = valid.to(torch.int64)
            positions = as_int.cumsum(-1) - 1
            self._padding["key_counts"] = as_int.sum(-1)
            self._padding["key_positions"] = positions.masked_fill(~valid, -1)
            # stable sort by (invalid, index) puts the valid keys first, in order
            order = torch.sort((~valid).to(torch.int8), dim=-1, stable=True).indices
            ranks = torch.arange(k, device=valid.device)
            self._padding["valid_key_index"] = order.masked_fill(
                ranks >= self._padding["key_counts"].unsqueeze(-1), -1
            )
            on_query = self.query_positions.unsqueeze(0).expand(valid.shape[0], -1)
            self._padding["query_valid"] = valid.gather(-1, on_query)
            self._padding["row_query_positions"] = self._padding["key_positions"].gather(
                -1, on_query
            )
        view: torch.Tensor = self._padding[name]
        return view

    # ------------------------------------------------------------------ shared scores
    def chunk_scores(self, chunk: QueryChunk) -> torch.Tensor:
        """``scaling * q . k`` of the chunk's rows over the keys ``[:chunk.key_limit]``,
        ``[B, Hq, Qc, K']`` in the query dtype (GQA grouped, no repeated K). Computed once
        per call and shared: when the call is one query chunk (decode), the reference
        attention reads the selected keys' logits from it instead of gathering their keys.
        **Read-only** (copy before editing it in place)."""
        entry = self._shared.get("scores")
        limit = chunk.key_limit
        if entry is not None and entry[0] == chunk.start and entry[1] == chunk.end:
            cached: torch.Tensor = entry[2]
            if cached.shape[-1] >= limit:
                return cached[..., :limit]
        scores = grouped_scores(chunk.queries, self.keys[:, :, :limit], self.scaling)
        if chunk.start == 0 and chunk.end == self.q_len:
            # only a whole-call chunk is kept: keeping every chunk of a long prefill would
            # hold the [B, Hq, Q, K] scores the query chunking exists to avoid
            self._shared["scores"] = (chunk.start, chunk.end, scores)
        return scores

    def cached_scores(self, start: int, end: int) -> torch.Tensor | None:
        """Rows ``start:end`` of the scores :meth:`chunk_scores` kept for this call (width
        ``K'`` <= K), or None when no masker computed them. Read-only."""
        entry = self._shared.get("scores")
        if entry is None or not (entry[0] <= start and end <= entry[1]):
            return None
        cached: torch.Tensor = entry[2]
        if start == entry[0] and end == entry[1]:
            return cached
        return cached[:, :, start - entry[0] : end - entry[0]]

    def legacy_kwargs(self) -> dict[str, Any]:
        """The ``**kwargs`` the old keyword signature of ``add_mask`` received."""
        kwargs: dict[str, Any] = dict(self.extras)
        kwargs["layer_idx"] = self.layer_idx
        if self.given_positions is not None:
            kwargs["query_positions"] = self.given_positions
        if self.requested_chunk_rows is not None:
            kwargs["query_chunk_size"] = self.requested_chunk_rows
        return kwargs


# --------------------------------------------------------------------------- checks


def _seed_chunk_bounds(chunks: tuple[QueryChunk, ...], mask: torch.Tensor) -> None:
    """Each chunk's ``key_limit`` and ``first_touched`` from one pass over the call's mask
    (:func:`~sah_core.attention.mask_bounds.mask_row_bounds`) instead of two reductions per
    chunk; unchanged where that kernel does not apply."""
    from sah_core.attention.mask_bounds import mask_row_bounds

    bounds = mask_row_bounds(mask)
    if bounds is None:
        return
    first, last = bounds
    for chunk in chunks:
        chunk._cache["first_touched"] = int(first[chunk.start : chunk.end].min())
        chunk._cache["key_limit"] = int(last[chunk.start : chunk.end].max()) + 1


def check_attention_inputs(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> tuple[int, int, int, int]:
    """Shapes, dtypes and devices of one attention call -> ``(B, Hq, Q, K)``."""
    for name, tensor in (("queries", queries), ("keys", keys), ("values", values)):
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name}={type(tensor).__name__} is not allowed: use a torch.Tensor")
        if tensor.dim() != 4:
            raise ValueError(
                f"{name}.shape={tuple(tensor.shape)} is not allowed: expected 4-D "
                f"[batch, heads, length, head_dim]"
            )
        if tensor.dtype not in _FLOAT_DTYPES:
            raise ValueError(
                f"{name}.dtype={tensor.dtype} is not allowed: use float16, bfloat16, float32 "
                "or float64"
            )
    if not (queries.dtype == keys.dtype == values.dtype):
        raise ValueError(
            f"queries.dtype={queries.dtype}, keys.dtype={keys.dtype}, values.dtype="
            f"{values.dtype} is not allowed: the three must share one dtype (cast them first)"
        )
    if not (queries.device == keys.device == values.device):
        raise ValueError(
            f"queries on {queries.device}, keys on {keys.device}, values on {values.device} "
            "is not allowed: put them on one device"
        )
    b, hq, q, d = (int(x) for x in queries.shape)
    kb, hkv, k, kd = (int(x) for x in keys.shape)
    vb, vh, vk, _ = (int(x) for x in values.shape)
    if kb != b or vb != b:
        raise ValueError(
            f"batch sizes queries={b}, keys={kb}, values={vb} are not allowed: they must be equal"
        )
    if kd != d:
        raise ValueError(
            f"keys.shape[3]={kd} is not allowed: the key head size must equal the query head "
            f"size {d}"
        )
    if vh != hkv:
        raise ValueError(
            f"values.shape[1]={vh} is not allowed: values need as many heads as keys ({hkv})"
        )
    if vk != k:
        raise ValueError(
            f"values.shape[2]={vk} is not allowed: values need as many positions as keys ({k})"
        )
    if hkv == 0 or hq % hkv != 0:
        raise ValueError(
            f"queries.shape[1]={hq} with keys.shape[1]={hkv} is not allowed: the query heads "
            "must be a multiple of the key heads"
        )
    return (b, hq, q, k)


def check_finite(**tensors: torch.Tensor) -> None:
    """Raise :class:`NonFiniteInputError` naming the first tensor holding NaN or inf."""
    for name, tensor in tensors.items():
        if tensor.numel() and not bool(torch.isfinite(tensor).all()):
            nan = int(torch.isnan(tensor).sum())
            inf = int(torch.isinf(tensor).sum())
            raise NonFiniteInputError(
                f"{name} holds {nan} NaN and {inf} inf values, which is not allowed with "
                "raise_on_nonfinite=True"
            )


def _check_positions(given: Any, q: int, k: int, device: torch.device) -> torch.Tensor:
    positions = torch.as_tensor(given, device=device).reshape(-1)
    if positions.dtype.is_floating_point or positions.dtype == torch.bool:
        raise ValueError(
            f"query_positions.dtype={positions.dtype} is not allowed: use integer positions"
        )
    positions = positions.to(torch.int64)
    if positions.numel() != q:
        raise ValueError(
            f"query_positions has {positions.numel()} entries, which is not allowed: expected "
            f"one per query ({q})"
        )
    if q and (int(positions.min()) < 0 or int(positions.max()) >= k):
        raise ValueError(
            f"query_positions in [{int(positions.min())}, {int(positions.max())}] is not "
            f"allowed: positions index the keys, 0..{k - 1}"
        )
    return positions


def normalize_call_mask(
    attention_mask: torch.Tensor | None,
    batch: int,
    heads: int,
    q: int,
    k: int,
    device: torch.device,
) -> torch.Tensor | None:
    """Check an attention mask against the call and return it additive ``[B|1, 1|H, Q, K]``.

    Accepts transformers' conventions: additive float (masked = -inf or the dtype minimum)
    or bool (True = attend); rows 1 (broadcast) or Q; a key axis >= K (static cache: cut).
    """
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, torch.Tensor):
        raise ValueError(
            f"attention_mask={type(attention_mask).__name__} is not allowed: use a tensor or None"
        )
    if attention_mask.dim() != 4:
        raise ValueError(
            f"attention_mask.shape={tuple(attention_mask.shape)} is not allowed: expected 4-D "
            "[B or 1, 1 or heads, Q or 1, K]"
        )
    mb, mh, mq, mk = (int(x) for x in attention_mask.shape)
    if mb not in (1, batch):
        raise ValueError(
            f"attention_mask.shape[0]={mb} is not allowed: use 1 or the batch size {batch}"
        )
    if mh not in (1, heads):
        raise ValueError(
            f"attention_mask.shape[1]={mh} is not allowed: use 1 or the query heads {heads}"
        )
    if mq not in (1, q):
        raise ValueError(
            f"attention_mask.shape[2]={mq} is not allowed: use 1 or one row per query ({q})"
        )
    if mk < k:
        raise ValueError(
            f"attention_mask.shape[3]={mk} is not allowed: it must be >= the key length {k}"
        )
    if attention_mask.device != device:
        raise ValueError(
            f"attention_mask on {attention_mask.device} is not allowed: use the queries' "
            f"device {device}"
        )
    mask = attention_mask[..., :k] if mk > k else attention_mask
    if mask.dtype == torch.bool:
        zero = torch.zeros((), dtype=torch.float32, device=mask.device)
        mask = torch.where(mask, zero, float("-inf"))
    elif not mask.dtype.is_floating_point:
        raise ValueError(
            f"attention_mask.dtype={attention_mask.dtype} is not allowed: use bool (True = "
            "attend) or an additive float mask"
        )
    if mq == 1 and q > 1:
        mask = mask.expand(mb, mh, q, k)  # a view: chunks can slice rows
    return mask


class _LastMask(threading.local):
    """The padding views derived for the last attention mask seen (per thread)."""

    def __init__(self) -> None:
        self.mask: weakref.ref[torch.Tensor] | None = None
        self.signature: tuple[int, ...] = ()
        self.entries: dict[str, Any] = {}


_LAST_MASK = _LastMask()


def _padding_entries(
    attention_mask: Any, positions: torch.Tensor | None, b: int, q: int, k: int
) -> dict[str, Any]:
    """The dict a plan keeps its padding views in (``key_valid``, ``key_counts``, ...):
    every layer of one forward pass gets the same mask object from transformers, so the
    layers after the first share the first one's dict instead of deriving the views again
    (a few ops per masker and layer in a padded batch). Shared only for that very mask
    tensor, unmodified, at the same shapes and with the default query positions."""
    if not isinstance(attention_mask, torch.Tensor) or positions is not None:
        return {}
    signature = (attention_mask._version, b, q, k)
    last = _LAST_MASK
    if last.mask is not None and last.mask() is attention_mask and last.signature == signature:
        return last.entries
    last.mask, last.signature, last.entries = weakref.ref(attention_mask), signature, {}
    return last.entries


def _key_valid(mask: torch.Tensor | None, batch: int, k: int) -> torch.Tensor | None:
    if mask is None or k == 0:
        return None
    allowed = ~masked_keys(mask)  # [B|1, H|1, Q, K]
    valid = allowed.any(dim=2).any(dim=1)  # [B|1, K]
    if bool(valid.all()):
        return None
    return valid.expand(batch, k)

"""Base classes of the research maskers, and how a new masker plugs in.

A masker is a pair (config dataclass, masker class) in one file
``sah_core/maskers/<name>.py`` plus one entry-point line in ``packages/sah-core/pyproject.toml``::

    [project.entry-points."sah.maskers"]
    quest = "sah_core.maskers.quest:QuestTopKMasker"

The entry point names the *masker* class; the masker names its config through the class
attribute ``config_type``. The registry (:mod:`sah_core.maskers.registry`) maps the config
class name (the ``"type"`` tag of ``to_dict()``) to the pair. A downstream package adds its own
maskers the same way, in its own pyproject; ``register_masker(cls)`` does it at run time.

What to subclass
----------------
* Config: subclass :class:`MaskerConfig` (or :class:`~sah_core.maskers.topk_base.TopKMaskerConfig`
  which already has ``heavy_size``, or
  :class:`~sah_core.maskers.sampling_base.SamplingMaskerConfig`) as a ``@dataclass``; override
  ``validate()`` and call the ``check_*`` helpers below (they raise ``ValueError`` naming the
  field, the value and the allowed range). ``validate()`` runs in ``__post_init__``, so a bad
  config fails at construction. Call ``super().validate()`` first.
* Top-k masker (HashAttention, Double Sparsity, Quest, SOCKET, PQCache, oracle top-k):
  subclass :class:`~sah_core.maskers.topk_base.TopKMasker`, set ``config_type`` and override
  only ``key_scores(...)`` (a float score per key ``[B, Hq, Qc, K']``, higher = keep), and
  optionally ``prepare(...)`` (work done once per call, e.g. hashing / summarising the keys;
  its return value reaches ``key_scores`` as ``state``) and ``budget(key_len)``. The base
  resolves the budget (``heavy_size``: int count or float fraction; ``>= K`` gives a full
  mask), works in query chunks, never selects a key already in ``previous_mask`` or one the
  additive ``attention_mask`` forbids, and emits index form. Page-level methods (Quest)
  return page scores expanded to keys with ``expand_page_scores``.
* Sampling masker (MagicPig, random sampling, vAttention): subclass
  :class:`~sah_core.maskers.sampling_base.SamplingMasker` and override
  ``keep_probabilities(...)`` (probability in ``[0, 1]`` that each key of the chunk is kept);
  override ``sample_chunk`` only when the draw itself is special. The base draws, packs the
  kept keys into index form with weight = keep probability (attention multiplies their
  exp-score by ``1/p``) and merges. At most one sampling masker per stack.
* Anything else: subclass :class:`ResearchMasker` and implement ``add_mask``; positional
  patterns subclass :class:`FixedMasker` and return indices from ``fixed_indices``.

The call
--------
``add_mask(keys, queries, values, attention_mask, scaling, dropout, sparse_meta_data,
previous_mask, **kwargs) -> Mask`` with ``queries [B, Hq, Q, D]``, ``keys``/``values``
``[B, Hkv, K, D]`` (``Hq`` a multiple of ``Hkv``: query head ``h`` reads KV head
``h // (Hq // Hkv)``), ``attention_mask`` additive float ``[B, 1, Q, K]`` (or bool, True =
attend, or None) and ``previous_mask`` of logical shape ``[B, Hq, Q, K]``. Return a **new**
mask, normally ``previous_mask.merge(mine)``; never mutate ``previous_mask``, the inputs or
tensors obtained from them with ``copy=False``.

``kwargs`` may hold:
* ``layer_idx`` (int | None) -- the decoder layer; key per-layer state with it;
* ``query_positions`` -- absolute key position of each query (``[Q]``); when absent the
  queries are the last Q keys (read it with :func:`sah_core.attention.common.query_positions`);
* ``query_chunk_size`` -- rows per query chunk (tests force small chunks);
* anything transformers passes (ignore what you do not know).

State
-----
State kept between calls of one request (key signatures, page summaries, centroids) lives in
``sparse_meta_data``, a dict owned by the request. Use ``self.layer_state(sparse_meta_data,
kwargs.get("layer_idx"))``: it returns ``sparse_meta_data[layer_idx][<config type name>]``,
a dict created on first use. Never keep per-request state on the masker object itself.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import torch

from sah_core.attention.common import query_positions
from sah_core.mask import Mask

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- validation


def _describe(owner: object, field: str) -> str:
    name = owner if isinstance(owner, str) else type(owner).__name__
    return f"{name}.{field}"


def check_size(owner: object, field: str, value: object, *, allow_zero: bool = True) -> None:
    """A size: ``int >= 0`` (absolute count) or ``float`` in ``(0, 1]`` (fraction of K)."""
    where = _describe(owner, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{where}={value!r} is not allowed: use an int >= 0 (count) or a float in (0, 1] "
            "(fraction of the key length)"
        )
    if isinstance(value, int):
        if value < (0 if allow_zero else 1):
            raise ValueError(
                f"{where}={value!r} is not allowed: an int size must be >= {0 if allow_zero else 1}"
            )
        return
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise ValueError(
            f"{where}={value!r} is not allowed: a float size must lie in (0, 1] "
            "(fraction of the key length)"
        )


def check_selection_size(owner: object, field: str, value: object) -> None:
    """:func:`check_size` for the size of what a masker selects, warning on 0: such a masker
    selects nothing, and a stack whose final mask is empty runs dense attention, so a
    forgotten size would otherwise pass unnoticed."""
    check_size(owner, field, value)
    if value == 0:
        logger.warning(
            "%s=0: this masker selects no keys (a stack that selects nothing runs dense "
            "attention); set a count or a fraction of the key length",
            _describe(owner, field),
        )


def check_int(
    owner: object, field: str, value: object, low: int | None = None, high: int | None = None
) -> None:
    """An int in ``[low, high]`` (either bound optional)."""
    where = _describe(owner, field)
    allowed = f"an int in [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}={value!r} is not allowed: use {allowed}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{where}={value!r} is not allowed: use {allowed}")


def check_float(
    owner: object,
    field: str,
    value: object,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    """A real number in the interval given (ints accepted)."""
    where = _describe(owner, field)
    interval = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{where}={value!r} is not allowed: use a number in {interval}")
    ok_low = value >= low if low_inclusive else value > low
    ok_high = value <= high if high_inclusive else value < high
    if not (ok_low and ok_high):
        raise ValueError(f"{where}={value!r} is not allowed: use a number in {interval}")


def check_choice(owner: object, field: str, value: object, allowed: Sequence[object]) -> None:
    """One of ``allowed``."""
    if value not in allowed:
        raise ValueError(
            f"{_describe(owner, field)}={value!r} is not allowed: use one of {list(allowed)}"
        )


def resolve_size(value: int | float, key_len: int) -> int:
    """Absolute count for a size: ints as is, floats ``int(value * key_len)`` (at least 1)."""
    if isinstance(value, float):
        return max(1, int(value * key_len))
    return int(value)


# --------------------------------------------------------------------------- configs


@dataclasses.dataclass
class MaskerConfig:
    """Base of every masker config: a dataclass with a JSON-safe ``to_dict``.

    ``to_dict()`` returns ``{"type": <class name>, <field>: <value>, ...}``;
    ``MaskerConfig.from_dict(d)`` finds the class by the tag through the registry, while
    ``SomeConfig.from_dict(d)`` accepts its own tag (or none).
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for an invalid field; subclasses extend it."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": type(self).__name__}
        for field in dataclasses.fields(self):
            data[field.name] = _to_json_value(getattr(self, field.name))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskerConfig:
        if not isinstance(data, dict):
            raise ValueError(f"data={data!r} is not allowed: expected a dict from to_dict()")
        tag = data.get("type")
        payload = {k: v for k, v in data.items() if k != "type"}
        if tag is None or tag == cls.__name__:
            if cls is MaskerConfig:
                raise ValueError("data['type'] is missing: a masker config dict needs its tag")
            return cls._from_fields(payload)
        from sah_core.maskers.registry import config_class_for

        target = config_class_for(str(tag))
        if not issubclass(target, cls):
            raise ValueError(
                f"data['type']={tag!r} is not allowed here: it is not a {cls.__name__}"
            )
        return target._from_fields(payload)

    @classmethod
    def _from_fields(cls, payload: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(payload) - names)
        if unknown:
            raise ValueError(
                f"{cls.__name__} fields {unknown} are not allowed: known fields are {sorted(names)}"
            )
        return cls(**payload)


def _to_json_value(value: Any) -> Any:
    if isinstance(value, MaskerConfig):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json_value(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


# --------------------------------------------------------------------------- maskers


class ResearchMasker(ABC):
    """Base of every masker: holds its config and adds keys to a previous mask."""

    #: The config dataclass this masker is built from (set by each subclass).
    config_type: ClassVar[type[MaskerConfig]] = MaskerConfig
    #: True for maskers whose weights are keep-probabilities (at most one per stack).
    is_sampling: ClassVar[bool] = False

    def __init__(self, config: MaskerConfig) -> None:
        if not isinstance(config, self.config_type):
            raise ValueError(
                f"config={type(config).__name__} is not allowed for {type(self).__name__}: "
                f"expected a {self.config_type.__name__}"
            )
        self.config = config

    @classmethod
    def create_from_config(cls, config: MaskerConfig) -> ResearchMasker:
        """Build the masker for ``config``; on the base class the registry picks the class."""
        if cls is ResearchMasker or getattr(cls, "__abstractmethods__", None):
            from sah_core.maskers.registry import masker_class_for

            return masker_class_for(config)(config)
        return cls(config)

    @abstractmethod
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
        """Return a new mask: ``previous_mask`` united with the keys this masker selects."""

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def mask_shape(queries: torch.Tensor, keys: torch.Tensor) -> tuple[int, int, int, int]:
        """``(B, Hq, Q, K)`` after checking the head layout."""
        if queries.dim() != 4 or keys.dim() != 4:
            raise ValueError(
                f"queries.dim()={queries.dim()}, keys.dim()={keys.dim()} are not allowed: "
                "expected queries [B, Hq, Q, D] and keys [B, Hkv, K, D]"
            )
        b, hq, q, _ = queries.shape
        hkv, k = keys.shape[1], keys.shape[2]
        if hkv == 0 or hq % hkv != 0:
            raise ValueError(
                f"query heads {hq} / key heads {hkv} is not allowed: Hq must be a multiple of Hkv"
            )
        return (int(b), int(hq), int(q), int(k))

    @staticmethod
    def query_positions(
        queries: torch.Tensor, keys: torch.Tensor, kwargs: dict[str, Any]
    ) -> torch.Tensor:
        """Absolute key position of each query ``[Q]`` (see module doc)."""
        return query_positions(queries.shape[2], keys.shape[2], kwargs, queries.device)

    def layer_state(
        self, sparse_meta_data: dict[Any, Any], layer_idx: int | None
    ) -> dict[str, Any]:
        """This masker's state dict for ``layer_idx`` inside ``sparse_meta_data``."""
        per_layer = sparse_meta_data.setdefault(layer_idx, {})
        state: dict[str, Any] = per_layer.setdefault(type(self.config).__name__, {})
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


class FixedMasker(ResearchMasker):
    """A positional pattern: the same key indices for every batch row and head.

    Subclasses return ``fixed_indices(key_len, positions) -> [Q, L]`` int64 (-1 = padding),
    or ``None`` when the pattern covers every key (a full mask).
    """

    @abstractmethod
    def fixed_indices(self, key_len: int, positions: torch.Tensor) -> torch.Tensor | None:
        """Selected key indices per query ``[Q, L]`` or None for "all keys"."""

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
        if previous_mask.representation == "full":
            return Mask.full(shape, previous_mask.device, previous_mask.dtype)
        positions = self.query_positions(queries, keys, kwargs)
        rows = self.fixed_indices(shape[3], positions)
        if rows is None:
            return Mask.full(shape, previous_mask.device, previous_mask.dtype)
        b, h, q, _ = shape
        indices = rows.to(device=previous_mask.device).expand(b, h, q, rows.shape[-1])
        mine = Mask.from_index(
            indices, None, shape, assume_unique=True, validate=False, dtype=previous_mask.dtype
        )
        return previous_mask.merge(mine)

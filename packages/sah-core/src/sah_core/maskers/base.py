"""Base classes of the research maskers, and how a new masker plugs in.

A masker is a pair (config dataclass, masker class) in one file
``sah_core/maskers/<name>.py`` plus one entry-point line in the package's pyproject::

    [project.entry-points."sah.maskers"]
    quest = "sah_core.maskers.quest:QuestTopKMasker"

Defining the classes registers them: a config subclass registers its JSON tag
(``type_tag``, default the class name; the class name and ``legacy_tags`` always load too),
and a masker class that sets ``config_type`` binds itself to that config
(``ConfigClass.masker_class``). The entry point only makes the registry import the module
of a plug-in that nothing imported yet. ``register_masker(cls)`` rebinds at run time.
A step-by-step page is ``docs/writing_a_masker.md``.

What to subclass
----------------
* Config: subclass :class:`MaskerConfig` (or :class:`~sah_core.maskers.topk_base.TopKMaskerConfig`
  which already has ``heavy_size``, or
  :class:`~sah_core.maskers.sampling_base.SamplingMaskerConfig`) as a ``@dataclass``; override
  ``validate()`` and call the ``check_*`` helpers below (they raise ``ValueError`` naming the
  field, the value and the allowed range). ``validate()`` runs at construction and again on
  every later field assignment (a bad assignment raises and is undone).
* Top-k masker: subclass :class:`~sah_core.maskers.topk_base.TopKMasker`, set
  ``config_type`` and override only ``key_scores(call, chunk, state)``, optionally
  ``prepare(call)`` and ``budget(key_len)``.
* Sampling masker: subclass :class:`~sah_core.maskers.sampling_base.SamplingMasker` and
  override ``keep_probabilities(call, chunk, population, previous)``.
* Anything else: subclass :class:`ResearchMasker` and implement ``add_mask(call, previous)``;
  positional patterns subclass :class:`FixedMasker` and return indices from ``fixed_indices``.

The call
--------
``add_mask(call, previous) -> Mask``: ``call`` is the :class:`~sah_core.call_plan.CallPlan`
of this layer call (queries, keys, values, normalised additive mask, scaling, layer index,
query positions, query-chunk plan, key validity / left padding, and ``call.state``: this
masker's own state dict, keyed by layer and position in the stack); ``previous`` has logical
shape ``[B, Hq, Q, K]``. Return a **new** mask, normally ``previous.merge(mine)``; never
mutate ``previous``, the inputs or tensors obtained from them with ``copy=False``.

Deprecated (until 0.3): the old keyword signature ``add_mask(keys, queries, values,
attention_mask, scaling, dropout, sparse_meta_data, previous_mask, **kwargs)``. A masker that
still defines it keeps working (the base class adapts the call and warns once with a
``DeprecationWarning``), and calling a ported masker the old way also works and warns.

State
-----
State kept between calls of one request lives in ``call.state`` (a dict inside the request's
``sparse_meta_data``, never on the masker object). Keys that ``call.key_valid`` marks invalid
(left padding) must not enter summaries, so a batched request equals its rows one by one.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Self

import torch

from sah_core import search_space as sp
from sah_core.call_plan import CallPlan
from sah_core.mask import Mask
from sah_core.maskers import registry

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- validation


def _describe(owner: object, field: str) -> str:
    name = owner if isinstance(owner, str) else type(owner).__name__
    return f"{name}.{field}"


#: Largest int size a config accepts (2**31 - 1 keys: longer than any context).
MAX_SIZE = 2**31 - 1


def check_size(owner: object, field: str, value: object, *, allow_zero: bool = True) -> None:
    """A size: ``int >= 0`` (absolute count) or ``float`` in ``(0, 1]`` (fraction of K)."""
    where = _describe(owner, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{where}={value!r} is not allowed: use an int >= 0 (count) or a float in (0, 1] "
            "(fraction of the key length)"
        )
    if isinstance(value, int):
        if value > MAX_SIZE:
            raise ValueError(
                f"{where}={value!r} is not allowed: an int size must be <= {MAX_SIZE} (no key "
                "sequence is longer); use a float in (0, 1] for a fraction of the keys"
            )
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
    selects nothing (a stack that selects nothing attends nothing, output 0, and never falls
    back to dense), so a forgotten size would otherwise pass unnoticed."""
    check_size(owner, field, value)
    if value == 0:
        logger.warning(
            "%s=0: this masker selects no keys (a stack that selects nothing attends nothing "
            "and gives output 0; it is never run dense); set a count or a fraction of the key "
            "length",
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

    ``to_dict()`` returns ``{"type": <type_tag>, <field>: <value>, ...}``;
    ``MaskerConfig.from_dict(d)`` finds the class by its tag (the class name and
    ``legacy_tags`` are accepted too), while ``SomeConfig.from_dict(d)`` also accepts no tag.
    """

    #: Stable JSON tag (default: the class name); renaming the class does not change it.
    type_tag: ClassVar[str] = "MaskerConfig"
    #: Older tags that still load (the class name is always accepted).
    legacy_tags: ClassVar[tuple[str, ...]] = ()
    #: The masker built from this config (bound when the masker class is defined).
    masker_class: ClassVar[type[ResearchMasker] | None] = None
    #: Tunable fields with ranges / choices and validity rules (``sah_core.search_space``);
    #: empty: nothing to tune.
    search_space: ClassVar[sp.SearchSpace] = sp.SearchSpace()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_tag" not in cls.__dict__:
            cls.type_tag = cls.__name__
        if "masker_class" not in cls.__dict__:
            cls.masker_class = None  # a subclass config is not its parent's masker's config
        registry.register_config(cls)

    def __post_init__(self) -> None:
        self.validate()
        object.__setattr__(self, "_sah_validated", True)

    def __setattr__(self, name: str, value: Any) -> None:
        # After construction every assignment is validated at once (and undone when bad), so
        # a mutated config fails here, naming the field, instead of deep inside torch later.
        if not self.__dict__.get("_sah_validated"):
            object.__setattr__(self, name, value)
            return
        missing = object()
        old = self.__dict__.get(name, missing)
        object.__setattr__(self, name, value)
        try:
            self.validate()
        except ValueError:
            if old is missing:
                object.__delattr__(self, name)
            else:
                object.__setattr__(self, name, old)
            raise

    def validate(self) -> None:
        """Raise ``ValueError`` for an invalid field; subclasses extend it."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": type(self).type_tag}
        for field in dataclasses.fields(self):
            data[field.name] = _to_json_value(getattr(self, field.name))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskerConfig:
        if not isinstance(data, dict):
            raise ValueError(f"data={data!r} is not allowed: expected a dict from to_dict()")
        tag = data.get("type")
        payload = {k: v for k, v in data.items() if k != "type"}
        if tag is None and cls is not MaskerConfig:
            return cls._from_fields(payload)
        if tag is None:
            raise ValueError(
                "data['type'] is missing: a masker config dict needs its tag (known: "
                f"{registry.known_tags()})"
            )
        if not isinstance(tag, str):
            raise ValueError(f"data['type']={tag!r} is not allowed: the tag is a string")
        target = registry.config_class_for(tag)
        if target.masker_class is None:
            raise ValueError(
                f"data['type']={tag!r} is not allowed: it names the base config class "
                f"{target.__name__}, which has no masker; use a concrete masker's tag (known: "
                f"{registry.known_tags()})"
            )
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


registry.register_config(MaskerConfig)  # so its tag gets the "base class" message


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


# --------------------------------------------------------------------------- old signature


_LEGACY_PARAMS = (
    "keys",
    "queries",
    "values",
    "attention_mask",
    "scaling",
    "dropout",
    "sparse_meta_data",
    "previous_mask",
)
_warned: set[tuple[str, str]] = set()


def _warn_once(kind: str, owner: type, message: str) -> None:
    key = (kind, f"{owner.__module__}.{owner.__qualname__}")
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, DeprecationWarning, stacklevel=4)


def uses_old_signature(function: Callable[..., Any]) -> bool:
    """True when a hook still takes the old leading ``keys, queries, ...`` parameters."""
    params = list(inspect.signature(function).parameters)
    return len(params) > 1 and params[1] == "keys"


def warn_old_hook(owner: type, hook: str) -> None:
    """One ``DeprecationWarning`` per class for a base-class hook with the old signature."""
    _warn_once(
        hook,
        owner,
        f"{owner.__name__}.{hook} uses the old keyword signature, deprecated and supported "
        "until 0.3: port it to the CallPlan hooks (see docs/writing_a_masker.md)",
    )


def plan_from_old_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[CallPlan, Mask]:
    """``(call, previous)`` from the old positional/keyword ``add_mask`` arguments."""
    bound = dict(zip(_LEGACY_PARAMS, args, strict=False))
    extra = dict(kwargs)
    for name in _LEGACY_PARAMS:
        if name in extra:
            bound[name] = extra.pop(name)
    missing = [name for name in _LEGACY_PARAMS if name not in bound]
    if missing:
        raise TypeError(f"add_mask() is missing {missing}: call add_mask(call, previous)")
    call = CallPlan.build(
        bound["queries"],
        bound["keys"],
        bound["values"],
        bound["attention_mask"],
        bound["scaling"],
        layer_idx=extra.pop("layer_idx", None),
        sparse_meta_data=bound["sparse_meta_data"],
        dropout=bound["dropout"],
        query_positions=extra.pop("query_positions", None),
        query_chunk_size=extra.pop("query_chunk_size", None),
        extras=extra,
    )
    return call, bound["previous_mask"]


def _entry_for_new(impl: Callable[..., Mask]) -> Callable[..., Mask]:
    """``add_mask(call, previous)``; an old-style positional call is adapted and warned."""

    @functools.wraps(impl)
    def add_mask(self: ResearchMasker, *args: Any, **kwargs: Any) -> Mask:
        if (args and isinstance(args[0], CallPlan)) or "call" in kwargs:
            return impl(self, *args, **kwargs)
        _warn_once(
            "caller",
            type(self),
            f"{type(self).__name__}.add_mask(keys, queries, values, ...) is deprecated: build "
            "a CallPlan (CallPlan.build(queries, keys, values, ...)) and call "
            "add_mask(call, previous)",
        )
        call, previous = plan_from_old_arguments(args, kwargs)
        return impl(self, call, previous)

    add_mask._sah_entry = True  # type: ignore[attr-defined]
    return add_mask


def _entry_for_old(impl: Callable[..., Mask]) -> Callable[..., Mask]:
    """A masker still written against the old signature, called with a plan."""

    @functools.wraps(impl)
    def add_mask(self: ResearchMasker, *args: Any, **kwargs: Any) -> Mask:
        if args and isinstance(args[0], CallPlan):
            call: CallPlan = args[0]
            previous = args[1] if len(args) > 1 else kwargs["previous"]
            _warn_once(
                "masker",
                type(self),
                f"{type(self).__name__}.add_mask uses the old keyword signature, deprecated "
                "and supported until 0.3: port it to add_mask(call, previous) (see "
                "docs/writing_a_masker.md)",
            )
            return impl(
                self,
                call.keys,
                call.queries,
                call.values,
                call.attention_mask,
                call.scaling,
                call.dropout,
                call.sparse_meta_data,
                previous,
                **call.legacy_kwargs(),
            )
        return impl(self, *args, **kwargs)

    add_mask._sah_entry = True  # type: ignore[attr-defined]
    return add_mask


# --------------------------------------------------------------------------- maskers


class ResearchMasker(ABC):
    """Base of every masker: holds its config and adds keys to a previous mask."""

    #: The config dataclass this masker is built from (set by each subclass).
    config_type: ClassVar[type[MaskerConfig]] = MaskerConfig
    #: True for maskers whose weights are keep-probabilities (at most one per stack).
    is_sampling: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        impl = cls.__dict__.get("add_mask")
        if (
            impl is not None
            and not getattr(impl, "__isabstractmethod__", False)
            and not getattr(impl, "_sah_entry", False)
        ):
            wrap = _entry_for_old if uses_old_signature(impl) else _entry_for_new
            cls.add_mask = wrap(impl)  # type: ignore[method-assign]
        config_type = cls.__dict__.get("config_type")
        if isinstance(config_type, type) and config_type is not MaskerConfig:
            registry.bind_masker(config_type, cls, replace=False)

    def __init__(self, config: MaskerConfig) -> None:
        if not isinstance(config, self.config_type):
            raise ValueError(
                f"config={type(config).__name__} is not allowed for {type(self).__name__}: "
                f"expected a {self.config_type.__name__}"
            )
        config.validate()  # a config mutated around the checks (e.g. via __dict__) fails here
        self.config = config

    @classmethod
    def create_from_config(cls, config: MaskerConfig) -> ResearchMasker:
        """Build the masker for ``config``; on the base class the config names the class."""
        if cls is ResearchMasker or inspect.isabstract(cls):
            return registry.masker_class_for(config)(config)
        return cls(config)

    @abstractmethod
    def add_mask(self, call: CallPlan, previous: Mask) -> Mask:
        """Return a new mask: ``previous`` united with the keys this masker selects."""

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def mask_shape(queries: torch.Tensor, keys: torch.Tensor) -> tuple[int, int, int, int]:
        """``(B, Hq, Q, K)`` after checking the head layout (new code: ``call.shape``)."""
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
        """Absolute key position of each query ``[Q]`` (old kwargs; new: ``call``)."""
        from sah_core.attention.common import query_positions

        return query_positions(queries.shape[2], keys.shape[2], kwargs, queries.device)

    def layer_state(
        self, sparse_meta_data: dict[Any, Any], layer_idx: int | None
    ) -> dict[str, Any]:
        """Deprecated (old signature): ``sparse_meta_data[layer_idx][<config type_tag>]``,
        shared by every masker of that config type. New code reads ``call.state``."""
        per_layer = sparse_meta_data.setdefault(layer_idx, {})
        state: dict[str, Any] = per_layer.setdefault(type(self.config).__name__, {})
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def known_spans(call: CallPlan, mask: Mask) -> list[tuple[int, int]] | None:
    """The key ranges ``[(lo, hi), ...]`` that every row of ``mask`` selects with weight 1
    (and nothing else), when fixed maskers of this call built it from ranges; ``[]`` for an
    empty mask; None when unknown."""
    if mask.representation == "empty":
        return []
    entry = call._shared.get("spans", {}).get(id(mask))
    if entry is None or entry[0] is not mask:
        return None
    spans: list[tuple[int, int]] = entry[1]
    return spans


def remember_spans(call: CallPlan, mask: Mask, spans: list[tuple[int, int]]) -> None:
    """Record that every row of ``mask`` selects exactly the key ranges ``spans``."""
    call._shared.setdefault("spans", {})[id(mask)] = (mask, spans)


def _known_row_spans(call: CallPlan, mask: Mask) -> list[list[tuple[int, int]]] | None:
    """Per batch row, the ranges of the row's own (unpadded) key positions whose keys are
    all ``mask`` holds, when fixed maskers of this call built it from such ranges."""
    entry = call._shared.get("row_spans", {}).get(id(mask))
    if entry is None or entry[0] is not mask:
        return None
    spans: list[list[tuple[int, int]]] = entry[1]
    return spans


def _remember_row_spans(call: CallPlan, mask: Mask, spans: list[list[tuple[int, int]]]) -> None:
    call._shared.setdefault("row_spans", {})[id(mask)] = (mask, spans)


def _merge_row_spans(
    call: CallPlan, previous: Mask, mine: Mask, spans: list[tuple[int, int]]
) -> Mask:
    """``previous.merge(mine)`` for a padded batch, where ``mine`` holds the keys of one
    logical range per batch row (``spans``): when ``previous`` is such ranges too and no row's
    ranges overlap, the union needs no duplicate check (distinct positions are distinct
    keys), so it is the same mask without the check's reductions."""
    if previous.representation == "empty":
        merged = previous.merge(mine)
        _remember_row_spans(call, merged, [[span] for span in spans])
        return merged
    known = _known_row_spans(call, previous)
    if known is None or not all(
        all(hi <= a or z <= lo for a, z in row) for row, (lo, hi) in zip(known, spans, strict=True)
    ):
        return previous.merge(mine)
    merged = previous.merge_disjoint(mine)
    _remember_row_spans(
        call, merged, [[*row, span] for row, span in zip(known, spans, strict=True)]
    )
    return merged


_SPAN_INDICES: dict[tuple[int, int, int, int, int, str], torch.Tensor] = {}


def _span_indices(
    lo: int, hi: int, shape: tuple[int, int, int, int], device: torch.device
) -> torch.Tensor:
    """``arange(lo, hi)`` expanded to ``[B, H, Q, hi - lo]`` (read-only, as every mask's
    indices), kept across calls: a sink span is the same at every decode step."""
    key = (lo, hi, shape[0], shape[1], shape[2], str(device))
    indices = _SPAN_INDICES.get(key)
    if indices is None:
        if len(_SPAN_INDICES) >= 64:
            _SPAN_INDICES.clear()
        indices = torch.arange(lo, hi, device=device).expand(*shape[:3], hi - lo)
        _SPAN_INDICES[key] = indices
    return indices


class FixedMasker(ResearchMasker):
    """A positional pattern: the same key indices for every batch row and head.

    Subclasses return ``fixed_indices(key_len, positions) -> [Q, L]`` int64 (-1 = padding),
    or ``None`` when the pattern covers every key (a full mask).
    """

    @abstractmethod
    def fixed_indices(self, key_len: int, positions: torch.Tensor) -> torch.Tensor | None:
        """Selected key indices per query ``[Q, L]`` or None for "all keys"."""

    def fixed_span(self, key_len: int, call: CallPlan) -> tuple[int, int] | None:
        """Optional: ``(lo, hi)`` when every query row of ``call`` selects exactly the keys
        ``lo .. hi-1`` (``hi - lo >= key_len``: all keys); None (default) otherwise. Lets the
        stack merge and exclude such masks by range, without tensor work."""
        return None

    def add_mask(self, call: CallPlan, previous: Mask) -> Mask:
        shape = call.shape
        if previous.representation == "full":
            return previous
        if call.key_valid is not None:
            spanned = self._per_row_span_mask(call, previous.dtype)
            if spanned is not None:
                return _merge_row_spans(call, previous, *spanned)
            return previous.merge(self._per_row_mask(call, previous.dtype))
        span = self.fixed_span(shape[3], call)
        if span is not None:
            return self._add_span(call, previous, span)
        rows = self.fixed_indices(shape[3], call.query_positions)
        if rows is None:
            return Mask.full(shape, previous.device, previous.dtype)
        if rows.shape[-1] == 0:
            return previous  # selects nothing (size 0)
        b, h, q, _ = shape
        indices = rows.to(device=previous.device).expand(b, h, q, rows.shape[-1])
        mine = Mask.from_index(
            indices, None, shape, assume_unique=True, validate=False, dtype=previous.dtype
        )
        return previous.merge(mine)

    def _add_span(self, call: CallPlan, previous: Mask, span: tuple[int, int]) -> Mask:
        shape = call.shape
        lo, hi = max(0, span[0]), min(shape[3], span[1])
        if hi - lo >= shape[3]:
            return Mask.full(shape, previous.device, previous.dtype)
        if hi <= lo:
            return previous  # selects nothing (size 0)
        indices = _span_indices(lo, hi, shape, previous.device)
        mine = Mask.from_index(
            indices, None, shape, assume_unique=True, validate=False, dtype=previous.dtype
        )
        known = known_spans(call, previous)
        if known is None or not all(hi <= a or z <= lo for a, z in known):
            return previous.merge(mine)
        merged = previous.merge_disjoint(mine)
        remember_spans(call, merged, [*known, (lo, hi)])
        return merged

    def _per_row_span_mask(
        self, call: CallPlan, dtype: torch.dtype
    ) -> tuple[Mask, list[tuple[int, int]]] | None:
        """:meth:`_per_row_mask` for a pattern that is one key range per row
        (:meth:`fixed_span` of the row's own key count): a few batched ops, no loop over the
        rows; with each row's range (its own positions). None when some row's pattern is not
        one range."""
        counts, index, row_positions = (
            call.key_counts,
            call.valid_key_index,
            call.row_query_positions,
        )
        assert counts is not None and index is not None and row_positions is not None
        spans = []
        for count in counts.tolist():
            span = self.fixed_span(count, call)
            if span is None:
                return None
            spans.append((min(max(span[0], 0), count), min(max(span[1], 0), count)))
        b, h, q, k = call.shape
        width = max(hi - lo for lo, hi in spans)
        bounds = torch.tensor(spans, device=call.device)
        logical = bounds[:, :1] + torch.arange(width, device=call.device)  # [B, W]
        outside = logical >= bounds[:, 1:]
        physical = index.gather(-1, logical.clamp(max=k - 1)).masked_fill(outside, -1)
        rows = physical.unsqueeze(1).expand(b, q, width)
        rows = rows.masked_fill((row_positions < 0).unsqueeze(-1), -1)
        indices = rows.unsqueeze(1).expand(b, h, q, width)
        mask = Mask.from_index(
            indices, None, call.shape, assume_unique=True, validate=False, dtype=dtype
        )
        return mask, spans

    def _per_row_mask(self, call: CallPlan, dtype: torch.dtype) -> Mask:
        """With padding, the pattern is laid over each row's own (unpadded) sequence: sizes
        resolve against the row's key count and positions are the row's own, so a batched
        row selects exactly the keys it selects alone."""
        counts, index, row_positions = (
            call.key_counts,
            call.valid_key_index,
            call.row_query_positions,
        )
        assert counts is not None and index is not None and row_positions is not None
        b, h, q, _ = call.shape
        parts: list[torch.Tensor] = []
        for row in range(b):
            count = int(counts[row])
            positions = row_positions[row]
            logical = self.fixed_indices(count, positions.clamp(min=0))
            if logical is None:
                logical = torch.arange(count, device=call.device).expand(q, count)
            logical = logical.to(call.device)
            physical = torch.where(
                logical >= 0,
                index[row].gather(0, logical.clamp(min=0).reshape(-1)).view(logical.shape),
                -1,
            )
            parts.append(physical.masked_fill((positions < 0).unsqueeze(-1), -1))
        width = max(p.shape[-1] for p in parts)
        pad = torch.nn.functional.pad
        rows = torch.stack([pad(p, (0, width - p.shape[-1]), value=-1) for p in parts])
        indices = rows.unsqueeze(1).expand(b, h, q, width)
        return Mask.from_index(
            indices, None, call.shape, assume_unique=True, validate=False, dtype=dtype
        )

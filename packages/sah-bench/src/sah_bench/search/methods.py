"""Search methods: masker stacks built like the original project's, their joint search space,
and the sparse config a search point stands for.

Every method except ``dense`` is ``Sink + Local + <method maskers>``. A search point is a
flat mapping ``"<role>.<field>" -> value``, the role being the masker's config tag
(``sink.sink_size``, ``quest.page_size``, ...); a :class:`~sah_core.search_space.Budget` field's
value is its share of what the target density leaves after the sink and local window.

Spaces come from the config classes (``ConfigClass.search_space``); a run may pin fields
(``fixed``: ``{"sink.sink_size": 128}``, applied to every method that has the role) or replace
a domain (``spaces``). :meth:`SearchMethod.materialize` turns a point into a
``ResearchAttentionConfig.to_dict()`` dict, or says why the point is invalid (no budget left,
a page larger than the budget, a sub-space count that does not divide the head size, budget
shares above 1, ...): such points are pruned before any model runs them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sah_bench.search.geometry import CallGeometry
from sah_core import search_space as sp
from sah_core.maskers.adaptive_sampling import AdaptiveSamplingMaskerConfig
from sah_core.maskers.base import MaskerConfig
from sah_core.maskers.double_sparsity import DoubleSparsityTopKMaskerConfig
from sah_core.maskers.hash_attention import HashAttentionTopKMaskerConfig
from sah_core.maskers.local import LocalMaskerConfig
from sah_core.maskers.magic_pig import MagicPigConfig
from sah_core.maskers.oracle_top_k import OracleTopKConfig
from sah_core.maskers.oracle_top_p import OracleTopPMaskerConfig
from sah_core.maskers.pq_cache import PQCacheConfig
from sah_core.maskers.quest import QuestTopKMaskerConfig
from sah_core.maskers.random_sampling import RandomSamplingMaskerConfig
from sah_core.maskers.sink import SinkMaskerConfig
from sah_core.maskers.socket_topk import SocketMaskerConfig

DENSE = "dense"
#: vAttention's top-k part takes this share range of the budget (the sample gets the rest).
VATTENTION_TOPK_SHARE = sp.Budget(sp.FloatRange(0.2, 0.8))
#: In a HashAttention weight path, this is replaced by the bit count (one file per count).
HAT_BITS_PLACEHOLDER = "{hat_bits}"

_BASE: tuple[type[MaskerConfig], ...] = (SinkMaskerConfig, LocalMaskerConfig)

#: Method name -> the maskers after Sink + Local (``dense``: no maskers at all).
METHOD_STACKS: dict[str, tuple[type[MaskerConfig], ...]] = {
    DENSE: (),
    "oracle_top_k": (OracleTopKConfig,),
    "oracle_top_p": (OracleTopPMaskerConfig,),
    "hash_attention": (HashAttentionTopKMaskerConfig,),
    "double_sparsity": (DoubleSparsityTopKMaskerConfig,),
    "quest": (QuestTopKMaskerConfig,),
    "pq_cache": (PQCacheConfig,),
    "socket": (SocketMaskerConfig,),
    "magic_pig": (MagicPigConfig,),
    "random_sampling": (RandomSamplingMaskerConfig,),
    "vattention_oracle": (OracleTopKConfig, AdaptiveSamplingMaskerConfig),
    "vattention_hash_attention": (HashAttentionTopKMaskerConfig, AdaptiveSamplingMaskerConfig),
    "vattention_pq_cache": (PQCacheConfig, AdaptiveSamplingMaskerConfig),
}
METHODS: tuple[str, ...] = tuple(METHOD_STACKS)


def parse_domain(key: str, value: Any) -> sp.Domain:
    """A domain from JSON: a list -> Choice; ``{"low", "high"[, "log"]}`` -> IntRange (both
    ints) or FloatRange; ``{"share": x | {"low", "high"}}`` -> Budget."""
    if isinstance(value, list) and value:
        return sp.Choice(tuple(value))
    if isinstance(value, Mapping) and "share" in value:
        share = value["share"]
        if isinstance(share, Mapping):
            return sp.Budget(sp.FloatRange(float(share["low"]), float(share["high"])))
        return sp.Budget(float(share))
    if isinstance(value, Mapping) and {"low", "high"} <= set(value) <= {"low", "high", "log"}:
        low, high, log = value["low"], value["high"], bool(value.get("log", False))
        if isinstance(low, int) and isinstance(high, int):
            return sp.IntRange(low, high, log)
        return sp.FloatRange(float(low), float(high), log)
    raise ValueError(
        f"search space {key}={value!r} is not allowed: use a list of choices, "
        '{"low": a, "high": b, "log": false} or {"share": s | {"low": a, "high": b}}'
    )


def _tokens(size: Any, key_len: int) -> float:
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        return 0.0
    return float(size) * key_len if isinstance(size, float) else float(size)


@dataclass(frozen=True)
class Slot:
    """One masker of a method: its config class, its space (pinned fields left out) and the
    fields set without searching."""

    role: str
    config_class: type[MaskerConfig]
    space: sp.SearchSpace
    fixed: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Materialized:
    """What a point stands for: the sparse config dict, or why it is invalid."""

    config: dict[str, Any] | None
    reason: str | None
    context: sp.SearchContext

    @property
    def valid(self) -> bool:
        return self.config is not None


@dataclass(frozen=True)
class SearchMethod:
    """A method's masker stack and joint search space."""

    name: str
    slots: tuple[Slot, ...]

    @property
    def params(self) -> dict[str, sp.Domain]:
        """The searched parameters, ``"<role>.<field>" -> domain`` (pinned budget shares
        included: Ray Tune is given only the searched ones, see :func:`searched`)."""
        return {f"{s.role}.{name}": d for s in self.slots for name, d in s.space.params.items()}

    @property
    def searched(self) -> dict[str, sp.Domain]:
        """The parameters a tuner draws (a pinned budget share is not drawn)."""
        return {
            k: d
            for k, d in self.params.items()
            if not (isinstance(d, sp.Budget) and not d.searched)
        }

    def context(
        self,
        point: Mapping[str, Any],
        target: float,
        key_len: int,
        head_dim: int | None,
        geometry: CallGeometry | None = None,
    ) -> sp.SearchContext:
        """The validity context of ``point``: the sink + local density at ``key_len`` (through
        the calibration's call ``geometry`` when given: see :mod:`.geometry`)."""
        fixed = 0.0
        for slot in self.slots:
            if slot.config_class in _BASE:
                name = "sink_size" if slot.config_class is SinkMaskerConfig else "window_size"
                value = point.get(f"{slot.role}.{name}", slot.fixed.get(name, 0))
                fixed += _tokens(value, key_len)
        if geometry is None:
            fixed_density, key_scale = min(1.0, fixed / max(1, key_len)), 1.0
        else:
            fixed_density, key_scale = geometry.fixed_density(fixed), geometry.key_scale
        return sp.SearchContext(
            target_density=float(target),
            key_len=int(key_len),
            fixed_density=fixed_density,
            head_dim=head_dim,
            key_scale=key_scale,
        )

    def materialize(
        self,
        point: Mapping[str, Any],
        target: float,
        key_len: int,
        head_dim: int | None = None,
        geometry: CallGeometry | None = None,
    ) -> Materialized:
        """The sparse config of ``point`` at ``target`` density, or the reason it is invalid."""
        from sah_core import ResearchAttentionConfig

        context = self.context(point, target, key_len, head_dim, geometry)
        if not self.slots:
            return Materialized(ResearchAttentionConfig().to_dict(), None, context)
        configs: list[MaskerConfig] = []
        shares = 0.0
        resolved_all: dict[str, dict[str, Any]] = {}
        for slot in self.slots:
            values: dict[str, Any] = dict(slot.fixed)
            for name, domain in slot.space.params.items():
                key = f"{slot.role}.{name}"
                raw = point.get(key)
                if isinstance(domain, sp.Budget):
                    share = float(raw) if raw is not None else _budget_default(domain)
                    shares += share
                    values[name] = domain.size(share, context)
                elif raw is None:
                    return Materialized(None, f"{key} is missing from the point", context)
                else:
                    values[name] = raw
            reason = slot.space.check(values, context)
            if reason is not None:
                return Materialized(None, f"{slot.role}: {reason}", context)
            resolved_all[slot.role] = values
        if shares > 1.0 + 1e-9:
            return Materialized(
                None,
                f"the budget shares add up to {shares:.3f} > 1: together the maskers would "
                "overshoot the target density",
                context,
            )
        for slot in self.slots:
            values = _link_fields(slot, resolved_all)
            reason = _hat_weights_exist(slot, values)
            if reason is not None:
                return Materialized(None, reason, context)
            try:
                configs.append(slot.config_class(**values))
            except (TypeError, ValueError) as exc:
                return Materialized(None, f"{slot.role}: {exc}", context)
        try:
            built = ResearchAttentionConfig(masker_configs=configs)
        except ValueError as exc:
            return Materialized(None, str(exc), context)
        return Materialized(built.to_dict(), None, context)


def _link_fields(slot: Slot, resolved: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Fields that follow other maskers: vAttention samples outside the sink and window."""
    values = dict(resolved[slot.role])
    if slot.config_class is AdaptiveSamplingMaskerConfig:
        values.setdefault("init_offset", resolved.get("sink", {}).get("sink_size", 0))
        values.setdefault("local_offset", resolved.get("local", {}).get("window_size", 0))
    if slot.config_class is PQCacheConfig:
        values.setdefault("init_offset", _int_or_zero(resolved.get("sink", {}).get("sink_size")))
    weight_file = values.get("hat_weight_file")
    if isinstance(weight_file, str) and HAT_BITS_PLACEHOLDER in weight_file:
        values["hat_weight_file"] = weight_file.replace(
            HAT_BITS_PLACEHOLDER, str(values.get("hat_bits", 32))
        )
    return values


def _int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _hat_weights_exist(slot: Slot, values: Mapping[str, Any]) -> str | None:
    if slot.config_class is not HashAttentionTopKMaskerConfig:
        return None
    path = values.get("hat_weight_file")
    template = slot.fixed.get("hat_weight_file")
    if (
        isinstance(path, str)
        and isinstance(template, str)
        and HAT_BITS_PLACEHOLDER in template
        and not Path(path).is_file()
    ):
        return (
            f"hash_attention: no weights for hat_bits={values.get('hat_bits')}: {path} is missing"
        )
    return None


def _budget_default(domain: sp.Budget) -> float:
    """A pinned share; a searched one without a value takes its range's middle."""
    share = domain.share
    return share if isinstance(share, float) else (share.low + share.high) / 2


def build_method(
    name: str,
    fixed: Mapping[str, Any] | None = None,
    spaces: Mapping[str, sp.Domain] | None = None,
) -> SearchMethod:
    """The method ``name`` with ``fixed`` fields pinned and ``spaces`` domains replaced (both
    keyed ``"<role>.<field>"``; keys of roles the method lacks are ignored, see
    :func:`check_keys`)."""
    if name not in METHOD_STACKS:
        raise ValueError(f"method {name!r} is not allowed; use one of {list(METHODS)}")
    fixed = dict(fixed or {})
    spaces = dict(spaces or {})
    stack = () if name == DENSE else (*_BASE, *METHOD_STACKS[name])
    slots = []
    for config_class in stack:
        role = config_class.type_tag
        space = config_class.search_space
        topk = config_class not in (*_BASE, AdaptiveSamplingMaskerConfig)
        if name.startswith("vattention_") and topk:
            space = space.extend(heavy_size=VATTENTION_TOPK_SHARE)
        pinned = {k.split(".", 1)[1]: v for k, v in fixed.items() if k.split(".", 1)[0] == role}
        replaced = {k.split(".", 1)[1]: v for k, v in spaces.items() if k.split(".", 1)[0] == role}
        names = sorted(f.name for f in dataclasses.fields(config_class))
        unknown = sorted((set(pinned) | set(replaced)) - set(names))
        if unknown:
            raise ValueError(
                f"{role}.{unknown[0]} is not allowed: {config_class.__name__} has no field "
                f"{unknown[0]!r}; fields: {names}"
            )
        if config_class is HashAttentionTopKMaskerConfig:
            weights = pinned.get("hat_weight_file")
            if weights is None and pinned.get("hat_weights") is None:
                raise ValueError(
                    f"method {name!r} needs trained HashAttention weights: set "
                    "hash_attention.hat_weight_file=PATH.safetensors (write "
                    f"{HAT_BITS_PLACEHOLDER} in the path to search hat_bits over one file per "
                    "bit count)"
                )
            if not (isinstance(weights, str) and HAT_BITS_PLACEHOLDER in weights):
                space = space.without("hat_bits")  # the weights fix the bit count
        space = space.without(*pinned).extend((), **replaced)
        slots.append(Slot(role, config_class, space, pinned))
    return SearchMethod(name, tuple(slots))


def check_keys(methods: list[SearchMethod], keys: list[str], what: str) -> None:
    """Every ``"<role>.<field>"`` key must name a role of at least one method of the run."""
    roles = {s.role for m in methods for s in m.slots}
    for key in keys:
        role, dot, rest = key.partition(".")
        if not dot or not rest:
            raise ValueError(f"{what} {key!r} is not allowed: use ROLE.FIELD, e.g. quest.page_size")
        if role not in roles:
            raise ValueError(
                f"{what} {key!r}: no method of this search has the masker {role!r}; "
                f"maskers here: {sorted(roles)}"
            )


def format_target(target: float) -> str:
    """``0.05`` -> ``"0.05"`` (the file name part of a target density)."""
    text = f"{target:.4f}".rstrip("0").rstrip(".")
    return text if "." in text else text + ".0"


def check_target(target: float) -> float:
    if isinstance(target, bool) or not isinstance(target, (int, float)) or math.isnan(target):
        raise ValueError(f"target density {target!r} is not allowed: use a number in (0, 1)")
    if not 0.0 < float(target) < 1.0:
        raise ValueError(f"target density {target!r} is not allowed: use a number in (0, 1)")
    return float(target)

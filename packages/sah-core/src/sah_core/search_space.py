"""Search spaces of masker configs: plain data that a tuner turns into its own domains.

Each tunable config class carries a ``search_space`` class attribute (a :class:`SearchSpace`):
the fields worth tuning with their ranges or choices, and validity rules. Nothing here
imports a tuner; ``sah_bench.search`` maps these domains to Ray Tune / Optuna ones.

Domains
-------
* :class:`IntRange` ``[low, high]`` (both included), optionally log-uniform;
* :class:`FloatRange` ``[low, high]``, optionally log-uniform;
* :class:`Choice` one of a few values;
* :class:`Budget`: a size field that gets what is left of the target density once the fixed
  maskers (sink, local window) are counted: ``share * (target - fixed)`` as a fraction of the
  keys. ``share`` is a float (pinned, default 1.0: the whole rest) or a :class:`FloatRange`
  searched like any other parameter (e.g. vAttention's top-k part of the budget).

Validity
--------
A point (field -> value) is checked against a :class:`SearchContext` (target density, the
calibration key length, the density the fixed maskers already take, how a fraction of a
call's keys turns into density, the model's head size)
by :meth:`SearchSpace.check`; it returns why the point is invalid, or None. A tuner prunes an
invalid point before it runs (it is never evaluated). :func:`budget_left` is the rule every
budgeted stack shares: fixed maskers that already reach the target leave no budget.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class IntRange:
    """An int in ``[low, high]``; ``log`` draws it log-uniformly (``low`` >= 1)."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"IntRange low={self.low} > high={self.high} is not allowed")
        if self.log and self.low < 1:
            raise ValueError(f"IntRange(log=True) low={self.low} is not allowed: use low >= 1")

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
        )

    def sample(self, rng: random.Random) -> int:
        if self.log:
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high + 1)))
            return min(self.high, max(self.low, int(x)))
        return rng.randint(self.low, self.high)


@dataclass(frozen=True)
class FloatRange:
    """A float in ``[low, high]``; ``log`` draws it log-uniformly (``low`` > 0)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"FloatRange low={self.low} > high={self.high} is not allowed")
        if self.log and self.low <= 0:
            raise ValueError(f"FloatRange(log=True) low={self.low} is not allowed: use low > 0")

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and self.low <= value <= self.high
        )

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


@dataclass(frozen=True)
class Choice:
    """One of ``options`` (JSON values: numbers, strings, booleans)."""

    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.options:
            raise ValueError("Choice options=() is not allowed: give at least one option")

    def contains(self, value: Any) -> bool:
        return value in self.options

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.options)


@dataclass(frozen=True)
class Budget:
    """A size field given ``share * (target - fixed)`` (fraction of the keys); see module doc.

    As a search parameter its value is the share (a float in ``share``'s range)."""

    share: float | FloatRange = 1.0

    def __post_init__(self) -> None:
        low, high = (
            (self.share.low, self.share.high)
            if isinstance(self.share, FloatRange)
            else (self.share, self.share)
        )
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"Budget share={self.share!r} is not allowed: use shares in (0, 1]")

    @property
    def searched(self) -> bool:
        return isinstance(self.share, FloatRange)

    def contains(self, value: Any) -> bool:
        if isinstance(self.share, FloatRange):
            return self.share.contains(value)
        return bool(value == self.share)

    def sample(self, rng: random.Random) -> float:
        return self.share.sample(rng) if isinstance(self.share, FloatRange) else self.share

    def size(self, share: float, context: SearchContext) -> float:
        """The fraction of the keys this field gets (at most 1): its share of the density
        left, converted from allowed pairs to a fraction of each call's keys."""
        return min(1.0, share * context.budget / context.key_scale)


Domain = IntRange | FloatRange | Choice | Budget


@dataclass(frozen=True)
class SearchContext:
    """What a validity rule may look at.

    ``target_density``: the density the search aims at; ``key_len``: calibration key length
    (tokens) that int sizes resolve against; ``fixed_density``: share of the allowed pairs the
    fixed maskers (sink, local) of this point attend; ``key_scale``: mean over the measured
    attention calls of (the call's keys) / (the keys a row of it may attend), i.e. the density a
    fraction 1 of the keys would buy (1 in decode; above 1 in a causal question or prefill call,
    whose early rows may attend fewer keys than a fraction budget counts); ``head_dim``: the
    model's attention head size, None when unknown (rules needing it then pass)."""

    target_density: float
    key_len: int
    fixed_density: float = 0.0
    head_dim: int | None = None
    key_scale: float = 1.0

    @property
    def budget(self) -> float:
        """Density left for the method: ``target - fixed`` (may be <= 0)."""
        return self.target_density - self.fixed_density


#: A validity rule: ``rule(point, context) -> reason or None`` (``point``: field -> value,
#: budget fields already resolved to fractions of the keys).
Rule = Callable[[Mapping[str, Any], SearchContext], str | None]


@dataclass(frozen=True)
class SearchSpace:
    """Tunable fields (field name -> :data:`Domain`) and validity rules."""

    params: Mapping[str, Domain] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    def extend(self, rules: tuple[Rule, ...] = (), **params: Domain) -> SearchSpace:
        """A copy with more (or replaced) fields and more rules (for a subclass)."""
        return SearchSpace({**self.params, **params}, (*self.rules, *rules))

    def without(self, *names: str) -> SearchSpace:
        """A copy without some fields (pinned by the user)."""
        return SearchSpace({k: v for k, v in self.params.items() if k not in names}, self.rules)

    def sample(self, rng: random.Random) -> dict[str, Any]:
        """One point drawn from the domains (validity not checked)."""
        return {name: domain.sample(rng) for name, domain in self.params.items()}

    def check(self, point: Mapping[str, Any], context: SearchContext) -> str | None:
        """Why ``point`` (budget fields resolved) is invalid, or None when it is valid."""
        for rule in self.rules:
            reason = rule(point, context)
            if reason is not None:
                return reason
        return None


def budget_left(point: Mapping[str, Any], context: SearchContext) -> str | None:
    """Invalid when the fixed maskers already attend the target density (no budget left)."""
    del point
    if context.budget <= 0:
        return (
            f"the fixed maskers already attend {context.fixed_density:.4f} of the keys, which "
            f"reaches the target density {context.target_density:.4f}: no budget is left"
        )
    return None


def _tokens(value: Any, key_len: int) -> float:
    return float(value) * key_len if isinstance(value, float) else float(value)


#: Quest's fewest pages per row (``sah_core.maskers.quest.MIN_PAGES``; no masker import here).
QUEST_MIN_PAGES = 3


def pages_fit_budget(point: Mapping[str, Any], context: SearchContext) -> str | None:
    """Quest: a token budget under three pages overshoots the target (Quest takes at least
    three whole pages)."""
    page, size = point.get("page_size"), point.get("heavy_size")
    if not isinstance(page, int) or size is None:
        return None
    tokens = _tokens(size, context.key_len)
    if QUEST_MIN_PAGES * page > max(tokens, 1.0):
        return (
            f"page_size={page} is too large for the token budget {tokens:.1f} "
            f"(heavy_size={size!r} of {context.key_len} keys): Quest takes at least "
            f"{QUEST_MIN_PAGES} whole pages, which would overshoot the target density"
        )
    return None


def divides_head_dim(name: str) -> Rule:
    """A rule: ``point[name]`` must divide the head size (when the head size is known)."""

    def rule(point: Mapping[str, Any], context: SearchContext) -> str | None:
        value = point.get(name)
        if context.head_dim is None or not isinstance(value, int):
            return None
        if value < 1 or context.head_dim % value:
            return f"{name}={value} does not divide the head size {context.head_dim}"
        return None

    rule.__name__ = f"divides_head_dim_{name}"
    return rule


def at_most_head_dim(name: str) -> Rule:
    """A rule: ``point[name]`` must not exceed the head size (when it is known)."""

    def rule(point: Mapping[str, Any], context: SearchContext) -> str | None:
        value = point.get(name)
        if context.head_dim is None or not isinstance(value, int):
            return None
        if value > context.head_dim:
            return f"{name}={value} exceeds the head size {context.head_dim}"
        return None

    rule.__name__ = f"at_most_head_dim_{name}"
    return rule


def centroids_fit_keys(point: Mapping[str, Any], context: SearchContext) -> str | None:
    """PQCache: ``2**pq_bits`` centroids need at least as many keys to cluster."""
    bits = point.get("pq_bits")
    if isinstance(bits, int) and 2**bits > context.key_len:
        return (
            f"pq_bits={bits} means {2**bits} centroids per sub-space, more than the "
            f"{context.key_len} calibration keys"
        )
    return None


#: The budget share a top-k masker gets by default (the whole rest of the target).
WHOLE_BUDGET = Budget()

__all__ = [
    "WHOLE_BUDGET",
    "Budget",
    "Choice",
    "Domain",
    "FloatRange",
    "IntRange",
    "Rule",
    "SearchContext",
    "SearchSpace",
    "at_most_head_dim",
    "budget_left",
    "centroids_fit_keys",
    "divides_head_dim",
    "pages_fit_budget",
]

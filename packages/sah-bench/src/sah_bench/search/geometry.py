"""Call geometry of a calibration run: how a fraction budget turns into measured density.

The measured density (:mod:`.objective`) is the mean over the attention-layer calls of each
call's share of the **allowed** (query, key) pairs. A fraction budget (``heavy_size=0.1``) is
a fraction of the call's keys ``K``. In a decode call the one row may attend all ``K`` keys,
so the two agree; in the causal question call (and a sparse context prefill) row ``r`` may
attend only ``K - Q + r + 1`` keys, so the same fraction buys more of the allowed pairs. On a
short calibration context with a long question (a chat template adds tokens) this is several
points of density. The search therefore resolves budgets through this geometry
(:attr:`sah_core.search_space.SearchContext.key_scale`), counted from the calibration prompts
the way the adapter tokenises them (context, then question + answer prefix, then one call per
generated token after the first).

It is a first-order model: sink and local counts are capped at a call's mean allowed keys,
every question is its own call (as with ``batch_size=1``) and generation runs to its token cap.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class PromptShape:
    """One calibration question: context tokens, question tokens (question + answer prefix,
    chat-template suffix included) and the tokens it may generate."""

    context: int
    question: int
    new_tokens: int


@dataclass(frozen=True)
class CallGeometry:
    """The measured attention calls: ``(keys of the call, mean keys a row may attend)``."""

    calls: tuple[tuple[float, float], ...]

    @classmethod
    def of_prompts(
        cls, prompts: Iterable[PromptShape], sparse_prefill: bool = False
    ) -> CallGeometry:
        calls: list[tuple[float, float]] = []
        for p in prompts:
            if sparse_prefill and p.context > 0:
                calls.append((p.context, (p.context + 1) / 2))
            keys = p.context + p.question
            if p.question > 0:
                calls.append((keys, p.context + (p.question + 1) / 2))
            # the first new token comes from the question call; each later one is a decode call
            calls.extend((keys + t, keys + t) for t in range(1, p.new_tokens))
        if not calls:
            raise ValueError("the calibration prompts make no attention call to measure")
        return cls(tuple(calls))

    @property
    def key_scale(self) -> float:
        """Mean of keys / allowed keys: the density that a fraction 1 of the keys buys."""
        return statistics.fmean(keys / allowed for keys, allowed in self.calls)

    def fixed_density(self, tokens: float) -> float:
        """Density of ``tokens`` keys attended by every row (sink + local window)."""
        return statistics.fmean(min(tokens, allowed) / allowed for _, allowed in self.calls)

"""Token counting for the synthetic suite's target lengths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Counts the tokens of a text.
TokenCounter = Callable[[str], int]


def whitespace_token_count(text: str) -> int:
    """Approximate token count: the number of whitespace-separated words.

    Sub-word tokenizers produce more tokens than words (about 1.3x for English), so a context
    built to N "words" is somewhat longer in real tokens; pass a real tokenizer's counter when
    the length matters.
    """
    return len(text.split())


def tokenizer_token_counter(tokenizer: Any) -> TokenCounter:
    """A counter from a HF tokenizer (no special tokens added)."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


def largest_fitting(build: Callable[[int], str], count: TokenCounter, target: int, hi: int) -> int:
    """The largest ``n`` in ``[0, hi]`` whose ``build(n)`` has at most ``target`` tokens.

    ``build`` must grow with ``n`` (more filler, more list items); a binary search keeps the
    number of (possibly slow) tokenizer calls logarithmic.
    """
    lo = 0
    while count(build(hi)) <= target:
        lo, hi = hi, hi * 2  # the first guess was short: widen the bracket
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(build(mid)) <= target:
            lo = mid
        else:
            hi = mid - 1
    return lo

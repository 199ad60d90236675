r"""LongBench's passage-retrieval and passage-count scores (Bai et al., 2023).

Retrieval: the reference names a paragraph ("Paragraph 7" / "段落7"); the score is the fraction
of the numbers in the prediction equal to that paragraph's number. Count: the fraction of the
numbers in the prediction equal to the reference count. As in THUDM ``metrics.py``, numbers are
``\d+`` runs (so "12.5" is two numbers), the reference count is compared as ``str(...)``
without stripping, and a prediction with no number scores 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_NUMBER = re.compile(r"\d+")
_PARAGRAPH_EN = re.compile(r"Paragraph (\d+)")
_PARAGRAPH_ZH = re.compile(r"段落(\d+)")


def _fraction_equal(prediction: str, target: str) -> float:
    numbers = _NUMBER.findall(prediction)
    if not numbers:
        return 0.0
    return float(sum(n == target for n in numbers)) / len(numbers)


def _retrieval_one(prediction: str, reference: str, pattern: re.Pattern[str]) -> float:
    match = pattern.search(reference)
    if match is None:
        raise ValueError(
            f"retrieval reference {reference!r} does not name a paragraph "
            f"(expected a match of {pattern.pattern!r})"
        )
    return _fraction_equal(prediction, match.group(1))


def retrieval_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """English passage retrieval: references look like ``"Paragraph 12"``."""
    return max((_retrieval_one(prediction, r, _PARAGRAPH_EN) for r in answers), default=0.0)


def retrieval_zh_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """Chinese passage retrieval: references look like ``"段落12"``."""
    return max((_retrieval_one(prediction, r, _PARAGRAPH_ZH) for r in answers), default=0.0)


def count_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """Passage count: fraction of the numbers in the prediction equal to the reference."""
    return max((_fraction_equal(prediction, str(r)) for r in answers), default=0.0)

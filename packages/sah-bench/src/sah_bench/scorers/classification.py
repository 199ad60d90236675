"""LongBench's classification score (Bai et al., 2023) for TREC and LSHT.

The class names that occur in the prediction are collected; a name that is a proper substring of
the reference is not counted against it. The score is ``1 / (#names found)`` when the reference
is among them, else 0, so naming several classes is penalised.
"""

from __future__ import annotations

from collections.abc import Sequence


def classification_one(prediction: str, reference: str, all_classes: Sequence[str]) -> float:
    found = [name for name in all_classes if name in prediction]
    found = [name for name in found if not (name in reference and name != reference)]
    return 1.0 / len(found) if reference in found else 0.0


def classification_score(
    prediction: str, answers: Sequence[str], all_classes: Sequence[str] | None = None, **_: object
) -> float:
    """Max over references; ``all_classes`` (the row's label set) is required."""
    if not all_classes:
        raise ValueError(
            "classification_score needs all_classes (the task's label names), got "
            f"{all_classes!r}; pass the row's 'all_classes' field"
        )
    return max((classification_one(prediction, ref, all_classes) for ref in answers), default=0.0)

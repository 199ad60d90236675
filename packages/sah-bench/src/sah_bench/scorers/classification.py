"""LongBench's classification score (Bai et al., 2023) for TREC and LSHT.

Official rule (THUDM ``metrics.py``): collect the class names that occur as substrings of the
prediction (in ``all_classes`` order), then drop names that are proper substrings of the
reference, and score ``1 / len(kept)`` when the reference is kept, else 0. Quirk matched: the
official code removes items from the list *while iterating over it*, so the name right after a
removed one is never examined and stays in the list even when it too is a proper substring of
the reference (it then dilutes the score). Matching is case-sensitive.
"""

from __future__ import annotations

from collections.abc import Sequence


def _drop_substrings_of_reference(found: list[str], reference: str) -> list[str]:
    """Replay ``for x in lst: if cond: lst.remove(x)``: the element after a removal is skipped."""
    kept = list(found)
    index = 0
    while index < len(kept):
        name = kept[index]
        if name in reference and name != reference:
            # list.remove drops the first equal item (the same one unless names repeat) and the
            # list iterator then moves on to index + 1 of the shortened list.
            kept.remove(name)
        index += 1
    return kept


def classification_one(prediction: str, reference: str, all_classes: Sequence[str]) -> float:
    found = [name for name in all_classes if name in prediction]
    found = _drop_substrings_of_reference(found, reference)
    return 1.0 / len(found) if reference in found else 0.0


def classification_score(
    prediction: str, answers: Sequence[str], all_classes: Sequence[str] | None = None, **_: object
) -> float:
    """Max over references; ``all_classes`` (the row's label set) is required."""
    if all_classes is None or len(all_classes) == 0:
        raise ValueError(
            "classification_score needs all_classes (the task's label names), got "
            f"{all_classes!r}; pass the row's 'all_classes' field"
        )
    classes = [str(c) for c in all_classes]
    return max((classification_one(prediction, str(ref), classes) for ref in answers), default=0.0)

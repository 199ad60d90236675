"""RULER's string-match metrics (Hsieh et al., 2024).

``string_match_all``: the fraction of references that occur (case-insensitively) in the
prediction — used for every RULER task except QA. ``string_match_part``: 1 if any reference
occurs, else 0 — used for RULER's QA tasks.
"""

from __future__ import annotations

from collections.abc import Sequence


def string_match_all(prediction: str, answers: Sequence[str], **_: object) -> float:
    if not answers:
        return 0.0
    lowered = prediction.lower()
    return sum(str(ref).lower() in lowered for ref in answers) / len(answers)


def string_match_part(prediction: str, answers: Sequence[str], **_: object) -> float:
    lowered = prediction.lower()
    return float(any(str(ref).lower() in lowered for ref in answers))

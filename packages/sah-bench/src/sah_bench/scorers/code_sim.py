"""LongBench's code-completion similarity (Bai et al., 2023) for LCC and RepoBench-P.

The first line of the prediction that is not a comment or a Markdown fence is compared with the
reference line by normalised Indel similarity (``rapidfuzz.fuzz.ratio`` / 100).
"""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz import fuzz

_SKIP_MARKERS = ("`", "#", "//")


def first_code_line(prediction: str) -> str:
    """The first line that holds no fence or comment marker ("" when there is none)."""
    for line in prediction.lstrip("\n").split("\n"):
        if not any(marker in line for marker in _SKIP_MARKERS):
            return line
    return ""


def code_sim_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    line = first_code_line(prediction)
    return max((fuzz.ratio(line, ref) / 100.0 for ref in answers), default=0.0)

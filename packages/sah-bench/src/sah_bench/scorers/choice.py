"""Multiple-choice answer extraction.

LongBench-v2 (Bai et al., 2024) asks the model to end with "The correct answer is (X)"; that
phrase is read first. InfiniteBench (Zhang et al., 2024) accepts an answer that starts with the
option letter ("B." / "B:") or that follows an "answer is"-style cue with the letter or the
option's text. Both readings are offered here; a bare leading "(B)" or "B" is also accepted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_LETTERS = "ABCDEFGHIJ"
_CORRECT_IS = re.compile(r"The correct answer is \(?([A-J])\)?", re.IGNORECASE)
# "(B)", "B.", "B:", "B)" or a lone "B"; not "I am ..." (a letter followed by a word).
_LEADING = re.compile(r"^\s*(?:\(([A-J])\)|([A-J])(?:[.:)]|\s*$))")
_CUES = ("answer is:", "answer:", "answer is", "error is", "is:", "answer")


def extract_choice(prediction: str) -> str | None:
    """The option letter the prediction commits to, or None."""
    text = prediction.replace("*", "")
    match = _CORRECT_IS.search(text)
    if match:
        return match.group(1).upper()
    match = _LEADING.match(text)
    if match:
        return (match.group(1) or match.group(2)).upper()
    lowered = text.lower()
    for cue in _CUES:
        idx = lowered.find(cue)
        if idx != -1:
            match = _LEADING.match(text[idx + len(cue) :])
            if match:
                return (match.group(1) or match.group(2)).upper()
    return None


def choice_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """1 when the extracted letter equals a reference letter (answers like ``["B"]``)."""
    letter = extract_choice(prediction)
    return float(letter is not None and letter in {str(a).strip().upper() for a in answers})


def option_choice_score(
    prediction: str, answers: Sequence[str], options: Sequence[str] | None = None, **_: object
) -> float:
    """InfiniteBench choice: references are option texts; ``options`` lists them in order.

    Correct when the prediction commits to the reference's letter, or when the text after an
    answer cue starts with the reference's option text.
    """
    if not options:
        raise ValueError(f"option_choice_score needs the row's options, got {options!r}")
    letters = {_LETTERS[i] for i, opt in enumerate(options) if opt in answers}
    letter = extract_choice(prediction)
    if letter is not None and letter in letters:
        return 1.0
    lowered = prediction.replace("*", "").lower()
    for cue in _CUES:
        idx = lowered.find(cue)
        if idx != -1:
            tail = prediction.replace("*", "")[idx + len(cue) :].strip()
            if any(tail.startswith(str(ans)) for ans in answers):
                return 1.0
    return 0.0

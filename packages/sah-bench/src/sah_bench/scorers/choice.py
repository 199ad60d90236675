"""LongBench-v2 answer extraction (Bai et al., 2024; THUDM ``pred.py`` ``extract_answer``).

Official rule: drop every "*", then search (case-sensitive) for "The correct answer is (X)"
anywhere in the text, and only if there is none for "The correct answer is X", X in A-D; no
match means no answer (judged wrong). Quirks matched: "the correct answer is (B)" (lower case),
"The correct answer is: B", "Answer: B" and a bare "B" are not read; the parenthesised form wins
even when an unparenthesised one comes first; "The correct answer is Bob" reads as B.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_PARENTHESISED = re.compile(r"The correct answer is \(([A-D])\)")
_BARE = re.compile(r"The correct answer is ([A-D])")


def extract_choice(prediction: str) -> str | None:
    """The letter LongBench-v2's ``extract_answer`` reads from ``prediction``, or None."""
    text = prediction.replace("*", "")
    match = _PARENTHESISED.search(text) or _BARE.search(text)
    return match.group(1) if match else None


def choice_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """LongBench-v2: 1 when the extracted letter equals the reference letter (``["B"]``)."""
    letter = extract_choice(prediction)
    return float(letter is not None and letter in {str(a) for a in answers})

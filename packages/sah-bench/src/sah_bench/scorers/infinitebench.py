"""InfiniteBench's retrieval and math scorers (Zhang et al., 2024, "∞Bench").

``first_int``: passkey / number_string — the first integer in the prediction equals the label.
``kv_retrieval``: after turning separators (newline, colon, quotes, period, comma, ?, !, braces)
into spaces, one whitespace-separated word equals the label.
``math_find``: the first number (int or float) in the prediction equals the label.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_INT = re.compile(r"\d+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_KV_SEPARATORS = "\n:\"'.,?!{}"


def first_int_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    match = _INT.search(prediction)
    if match is None:
        return 0.0
    return float(any(match.group(0) == str(a).strip() for a in answers))


def kv_retrieval_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    for sep in _KV_SEPARATORS:
        prediction = prediction.replace(sep, " ")
    words = set(prediction.split())
    return float(any(str(a).strip() in words for a in answers))


def math_find_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    match = _NUMBER.search(prediction)
    if match is None:
        return 0.0
    value = float(match.group(0))
    for ans in answers:
        try:
            if float(str(ans)) == value:
                return 1.0
        except ValueError:
            continue
    return 0.0

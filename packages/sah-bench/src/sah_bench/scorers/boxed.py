"""Final-answer extraction for AIME 2024/2025 (integer answers 0-999).

Rule: when the prediction has a ``\\boxed{...}`` (or ``\\fbox{...}``), the answer is the integer
in the *last* one (braces matched, so ``\\boxed{\\text{042}}`` reads 42): its content, once
``\\text{}``/``\\mathrm{}``/``\\mathbf{}`` wrappers, "$", spaces and a trailing "." are dropped,
must be a (signed) integer, leading zeros allowed; a box holding anything else (``\\frac{1}{2}``,
"x = 5") answers nothing and scores 0, it does not fall back. Without a box, the answer is the
last number in the text (an integer, or a decimal that then must equal the integer reference).
Answers compare as integers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_BOX_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_INTEGER = re.compile(r"[+-]?\d+")
_LAST_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def extract_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{...}`` or ``\\fbox{...}``, or None."""
    starts = [m.end() for m in _BOX_START.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for pos in range(start, len(text)):
            if text[pos] == "{":
                depth += 1
            elif text[pos] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:pos]
    return None


def _boxed_integer(content: str) -> int | None:
    previous = None
    while previous != content:  # unwrap nested \text{\textbf{..}}
        previous, content = content, _WRAPPER.sub(r"\1", content)
    content = content.replace("$", "").replace(" ", "").strip().rstrip(".")
    return int(content) if _INTEGER.fullmatch(content) else None


def extract_final_answer(text: str) -> str | None:
    """The answer as text: the integer of the last box, else the last number, else None."""
    boxed = extract_boxed(text)
    if boxed is not None:
        value = _boxed_integer(boxed)
        return None if value is None else str(value)
    numbers = _LAST_NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _reference_int(reference: str) -> int:
    text = str(reference).strip()
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"AIME reference {reference!r} is not an integer")
    return int(text)


def boxed_match_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """1 when the extracted final answer equals an (integer) reference, else 0."""
    extracted = extract_final_answer(prediction)
    if extracted is None:
        return 0.0
    value = float(extracted)
    return float(any(value == _reference_int(ref) for ref in answers))

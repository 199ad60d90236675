"""Final-answer extraction for math competitions (AIME 2024/2025).

The answer is the content of the last ``\\boxed{...}`` (braces matched, so ``\\boxed{\\frac{1}{2}}``
is read whole). Without a box, the last integer in the text is taken, because small models often
state "the answer is 204" without the box. AIME answers are integers 0..999, so values compare as
integers when both sides parse (``"042"`` == ``"42"``); otherwise as normalised strings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_INTEGER = re.compile(r"-?\d[\d,]*")


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` or ``\\fbox{...}``, or None."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
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


def extract_final_answer(text: str) -> str | None:
    """The boxed answer, else the last integer in the text, else None."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    integers = _INTEGER.findall(text)
    return integers[-1] if integers else None


def _normalize(answer: str) -> str:
    answer = answer.strip().strip("$").strip()
    answer = re.sub(r"\\text\{([^}]*)\}", r"\1", answer)
    answer = answer.replace(",", "").replace(" ", "").rstrip(".")
    return answer


def _as_int(answer: str) -> int | None:
    try:
        return int(answer)
    except ValueError:
        return None


def answers_equal(predicted: str, reference: str) -> bool:
    pred, ref = _normalize(predicted), _normalize(reference)
    pred_int, ref_int = _as_int(pred), _as_int(ref)
    if pred_int is not None and ref_int is not None:
        return pred_int == ref_int
    return pred == ref


def boxed_match_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """1 when the extracted final answer equals a reference, else 0."""
    extracted = extract_final_answer(prediction)
    if extracted is None:
        return 0.0
    return float(any(answers_equal(extracted, str(ref)) for ref in answers))

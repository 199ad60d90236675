"""LooGLE's automatic metrics (Li et al., 2023), as bigai-nlco/LooGLE ``Evaluation/``.

Cloze (``shortdep_cloze``): the reference is a dict ``{"<mask-0>": "entity", ...}`` (the hub
stores it as a JSON string). The prediction must itself be a dict literal (the official code
``eval``-s it; we read it with ``ast.literal_eval``, which accepts the same literals and runs no
code); anything else, an empty prediction included, matches nothing. ``exact_match`` counts
masks whose predicted string equals the reference string (case-sensitive); ``partial_match``
counts masks whose predicted and reference strings share a whitespace token. The official
number is the *micro* rate over all masks of the subset, ``round(sum(matched) / sum(masks), 4)``
(``loogle_cloze_micro_average``); the per-row scorers return the row's fraction.
A predicted value that is not a string (where the official partial match would raise) matches
nothing.

QA / summarisation: the ``rouge`` package's ROUGE-L *recall* (an empty prediction is replaced
by "None" first, as the official evaluator does). BLEU, METEOR and BERTScore are not offered.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Sequence
from typing import Any


def _reference_dict(answers: Sequence[str]) -> dict[str, Any]:
    if len(answers) != 1:
        raise ValueError(
            f"LooGLE cloze: expected one reference (a JSON dict string), got {list(answers)!r}"
        )
    raw = answers[0]
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw)
    except (TypeError, ValueError):
        try:
            parsed = ast.literal_eval(str(raw))
        except (ValueError, SyntaxError):
            parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(f"LooGLE cloze: reference {raw!r} is not a dict of masks")
    return parsed


def _prediction_dict(prediction: str) -> dict[Any, Any] | None:
    try:
        parsed = ast.literal_eval(prediction if prediction != "" else "None")
    except Exception:  # the official eval() failure is caught wholesale too
        return None
    return parsed if isinstance(parsed, dict) else None


def loogle_cloze_counts(
    prediction: str, answers: Sequence[str], *, partial: bool = False
) -> tuple[int, int]:
    """(masks matched, masks in the reference) for one row."""
    reference = _reference_dict(answers)
    predicted = _prediction_dict(prediction)
    if predicted is None:
        return 0, len(reference)
    matched = 0
    for key, want in reference.items():
        if key not in predicted:
            continue
        got = predicted[key]
        if partial:
            if isinstance(got, str) and set(str(want).split()) & set(got.split()):
                matched += 1
        elif got == want:
            matched += 1
    return matched, len(reference)


def _fraction(counts: tuple[int, int]) -> float:
    matched, total = counts
    return matched / total if total else 0.0


def loogle_cloze_exact_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """Fraction of the row's masks whose predicted entity is exactly the reference."""
    return _fraction(loogle_cloze_counts(prediction, answers))


def loogle_cloze_partial_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """Fraction of the row's masks whose prediction shares a word with the reference."""
    return _fraction(loogle_cloze_counts(prediction, answers, partial=True))


def loogle_cloze_micro_average(
    rows: Iterable[tuple[str, Sequence[str]]], *, partial: bool = False
) -> float:
    """Official subset number: ``round(sum matched / sum masks, 4)`` over (prediction, answers)."""
    matched = total = 0
    for prediction, answers in rows:
        m, t = loogle_cloze_counts(prediction, answers, partial=partial)
        matched, total = matched + m, total + t
    if total == 0:
        raise ValueError("loogle_cloze_micro_average: no masks in the given rows")
    return round(matched / total, 4)


def loogle_rouge_l_recall_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """LooGLE ROUGE-L recall (``rouge`` package), max over references; 0.0 where it raises."""
    from sah_bench.scorers.rouge import rouge_package_scores

    hypothesis = prediction if prediction != "" else "None"
    best = 0.0
    for ref in answers:
        scores = rouge_package_scores(hypothesis, str(ref))
        if scores is not None:
            best = max(best, float(scores["rouge-l"]["r"]))
    return best

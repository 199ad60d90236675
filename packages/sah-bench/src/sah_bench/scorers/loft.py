"""LOFT RAG answer parsing and metrics (Lee et al., 2024, "Can Long-Context Language Models
Subsume Retrieval, RAG, SQL, and More?").

The model ends with ``Final Answer: [a, b, ...]`` (a list, possibly JSON). Answers are compared
after SQuAD normalisation. Single-value tasks (NQ, HotpotQA, MuSiQue) use subspan exact match:
1 when some normalised reference occurs inside a normalised predicted answer (or vice versa).
Multi-value tasks (QAMPARI, QUEST) use coverage: the fraction of references matched exactly by a
predicted answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from sah_bench.scorers.normalize import normalize_english

_FINAL = re.compile(r"Final Answer\s*:\s*(.*)", re.IGNORECASE | re.DOTALL)


def parse_final_answers(prediction: str) -> list[str]:
    """The answers listed after "Final Answer:" (the whole text when the cue is missing)."""
    match = _FINAL.search(prediction)
    body = (match.group(1) if match else prediction).strip().split("\n")[0].strip()
    if body.startswith("["):
        try:
            parsed = json.loads(body)
            if isinstance(parsed, list):
                return [str(x) for x in parsed]
        except json.JSONDecodeError:
            body = body.strip("[]")
    return [part.strip().strip("'\"") for part in body.split(",") if part.strip()]


def subspan_em_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    predicted = [normalize_english(p) for p in parse_final_answers(prediction)]
    predicted = [p for p in predicted if p]
    for ref in answers:
        gold = normalize_english(str(ref))
        if gold and any(gold in p or p in gold for p in predicted):
            return 1.0
    return 0.0


def coverage_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    predicted = {normalize_english(p) for p in parse_final_answers(prediction)}
    golds = [normalize_english(str(r)) for r in answers]
    if not golds:
        return 0.0
    return sum(g in predicted for g in golds) / len(golds)

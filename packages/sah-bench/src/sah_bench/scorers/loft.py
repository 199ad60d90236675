"""LOFT RAG answer parsing and metrics (Lee et al., 2024), as google-deepmind/loft does it.

Parsing (``utils.extract_prediction``): remove every "*" and "`", strip, and take the *first*
line holding both "[" and "]"; the span from its first "[" to its last "]" is read with
``ast.literal_eval`` after escaping a quote between two alphanumerics ("the devil's sleep").
A line that does not parse, or no such line, gives no answers (score 0); an answer without
brackets is never read. Each parsed item is ``str()``-ed, then normalised.

Normalisation (``evaluation.utils.normalize_answer``): Unicode NFD first, then lower-case, drop
ASCII punctuation, drop the articles a/an/the, collapse whitespace.

Single-value tasks (nq, hotpotqa, musique; task type ``rag``) use only the *first* predicted
answer; its primary metric ``subspan_em`` is 1 when some normalised reference is a substring of
it (one direction only). Multi-value tasks (qampari, quest; ``multi_value_rag``) report
``subspan_em`` too: 1 only when every reference can be paired with a *distinct* predicted
answer that contains it or is contained in it (an optimal assignment); ``coverage`` and set
``em`` are the secondary metrics. Quirks kept: a reference that normalises to "" is inside every
answer, and (multi-value) an answer that normalises to "" (e.g. "The") is inside every reference.
"""

from __future__ import annotations

import ast
import collections
import logging
import math
import re
import string
import unicodedata
from collections.abc import Sequence

logger = logging.getLogger(__name__)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_INNER_QUOTE = re.compile(r"([a-zA-Z0-9])'([a-zA-Z0-9])")
_PUNCTUATION = frozenset(string.punctuation)


def loft_normalize(text: str) -> str:
    """LOFT's SQuAD normalisation with Unicode NFD in front."""
    text = unicodedata.normalize("NFD", text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def parse_final_answers(prediction: str) -> list[str]:
    """The answers LOFT's ``extract_prediction`` reads, each ``str()``-ed ([] when none)."""
    lines = prediction.replace("*", "").replace("`", "").strip().split("\n")
    for line in lines:
        if "[" in line and "]" in line:
            span = line[line.find("[") : line.rfind("]") + 1].strip()
            try:
                parsed = ast.literal_eval(_INNER_QUOTE.sub(r"\1\\'\2", span))
            except Exception:  # the official parser catches everything too
                logger.debug("LOFT answer list does not parse: %r", span)
                return []
            # "[a], [b]" parses as a tuple of lists; the official code str()-s each item.
            return [str(item) for item in parsed] if isinstance(parsed, list | tuple) else []
    return []


def _normalized_predictions(prediction: str) -> list[str]:
    return [loft_normalize(p) for p in parse_final_answers(prediction)]


def _normalized_golds(answers: Sequence[str]) -> list[str]:
    return [loft_normalize(str(a)) for a in answers]


def subspan_em_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """LOFT ``rag`` subspan EM: some reference is a substring of the first predicted answer."""
    predicted = _normalized_predictions(prediction)
    golds = _normalized_golds(answers)
    if not predicted or not golds:
        return 0.0
    return float(any(gold in predicted[0] for gold in golds))


def loft_em_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """LOFT ``rag`` EM: the first predicted answer equals a reference (normalised)."""
    predicted = _normalized_predictions(prediction)
    golds = _normalized_golds(answers)
    if not predicted or not golds:
        return 0.0
    return float(predicted[0] in golds)


def loft_f1_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """LOFT ``rag`` token F1 of the first predicted answer, max over references."""
    predicted = parse_final_answers(prediction)
    if not predicted or not answers:
        return 0.0
    pred_tokens = loft_normalize(predicted[0]).split()
    best = 0.0
    for gold in answers:
        gold_tokens = loft_normalize(str(gold)).split()
        common = sum((collections.Counter(gold_tokens) & collections.Counter(pred_tokens)).values())
        if common == 0:
            continue
        precision, recall = common / len(pred_tokens), common / len(gold_tokens)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def _max_matching(edges: list[list[int]], n_right: int) -> int:
    """Size of a maximum bipartite matching (Kuhn's augmenting paths)."""
    owner = [-1] * n_right

    def augment(left: int, seen: list[bool]) -> bool:
        for right in edges[left]:
            if not seen[right]:
                seen[right] = True
                if owner[right] == -1 or augment(owner[right], seen):
                    owner[right] = left
                    return True
        return False

    return sum(augment(left, [False] * n_right) for left in range(len(edges)))


def multi_value_subspan_em_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """LOFT ``multi_value_rag`` subspan EM: every reference paired with a distinct answer.

    The official code maximises the matched pairs with ``linear_sum_assignment`` and asks that
    every reference be matched; that is a maximum matching covering all references.
    """
    predicted = _normalized_predictions(prediction)
    golds = _normalized_golds(answers)
    if not predicted:
        return 0.0
    edges = [[j for j, p in enumerate(predicted) if g in p or p in g] for g in golds]
    return float(_max_matching(edges, len(predicted)) == len(golds))


def coverage_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """LOFT ``multi_value_rag`` coverage: distinct references found / number of references.

    Quirk kept: the official evaluator records no coverage for a row whose answer list is empty
    or unparsable, so its mean runs over the other rows only; such a row scores NaN here (NaN
    rows are left out of the subset mean).
    """
    predicted = set(_normalized_predictions(prediction))
    golds = _normalized_golds(answers)
    if not predicted:
        return math.nan
    if not golds:
        return 0.0
    return len(predicted & set(golds)) / len(golds)


def set_em_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """LOFT ``multi_value_rag`` EM: the answer set equals the reference set."""
    predicted = _normalized_predictions(prediction)
    if not predicted:
        return 0.0
    return float(set(predicted) == set(_normalized_golds(answers)))

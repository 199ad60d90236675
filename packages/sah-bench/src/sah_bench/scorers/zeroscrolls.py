"""ZeroSCROLLS' metrics (Shaham et al., 2023), for local data that carries answers.

ZeroSCROLLS' **test** answers are private: the official number of a test run comes only from
the leaderboard, which scores the submission file that
:func:`sah_bench.benchmarks.zeroscrolls.write_zeroscrolls_submission` writes. These metrics are
for data with references, e.g. a snapshot of tau's small ``validation`` split; they follow the
official definitions, task by task:

* **ROUGE** (gov_report, summ_screen_fd, qmsum, squality): the SCROLLS metric script
  (``tau/scrolls`` ``metrics/scrolls.py``, same authors, which ZeroSCROLLS reports as its
  summarisation metric): Google's ``rouge-score`` without stemming, F-measure × 100 of ROUGE-1,
  ROUGE-2 and ROUGE-L, each the maximum over the references of a row, each averaged over the
  rows, and the subset number is the **geometric mean of the three averages**
  (:func:`zeroscrolls_rouge_aggregate`; not the mean of per-row geometric means, which is what
  the per-row score :func:`zeroscrolls_rouge_score` shows). The script splits sentences with
  ``nltk.sent_tokenize`` first; that only matters for ROUGE-Lsum (rouge-score's tokens are
  lower-cased alphanumeric runs, so line breaks never change ROUGE-1/2/L), and ROUGE-Lsum is
  not part of the score, so it is not reported (it needs nltk's punkt data, not shipped).
* **F1** (qasper, narrative_qa, musique): SQuAD token F1 after lower-casing, removing
  ``string.punctuation``, the articles a/an/the and extra spaces, then ``unidecode``
  transliteration (in that order); maximum over the references.
* **accuracy** (quality): the first standalone capital ``A``-``D`` (regex ``\\b[A-D]\\b``) of
  the prediction must equal that of the reference. Quirk kept: an article "A" before the
  chosen letter counts as the answer "A".
* **exponential similarity** (space_digest): with ``p`` and ``g`` the first ``\\d+\\.?\\d*%``
  percentages of the prediction and the reference, ``0.5 ** (|p - g| / 10)``; no percentage in
  the prediction scores 0, none in the reference counts as 0 %.
* **concordance index** (book_sum_sort): both texts reduced to their integers (everything
  but digits, spaces and commas dropped, commas as spaces); a prediction that is not a
  permutation of the reference's numbers scores 0; otherwise Harrell's concordance index of
  the position of each summary in the prediction against its position in the reference.
  The official code calls ``lifelines.utils.concordance_index``; on two position lists (every
  "event" observed, no tied positions) that index is exactly the share of summary pairs whose
  order agrees, which :func:`concordance_index` computes without the lifelines dependency.
  Where the official code would raise (fewer than two summaries: no admissible pair; a number
  outside 1..n) we score 0.

Every subset number is × 100 and rounded to 4 decimals, as the SCROLLS metric script reports
(ZeroSCROLLS' own script lives in the hub dataset repo ``tau/zero_scrolls``, not in its GitHub
repository; the definitions above are the ZeroSCROLLS paper's, checked against a public copy of
its metric functions); the per-row scorers return [0, 1].
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)
_PERCENTAGE = re.compile(r"\d+\.?\d*%")
_CHOICE = re.compile(r"\b[A-D]\b")
_NOT_INT_LIST = re.compile(r"[^0-9\s,]")

#: ROUGE keys in the score (ROUGE-Lsum is computed by the script but not part of the score).
ROUGE_KEYS: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")


# -- F1 ---------------------------------------------------------------------------------------
def zeroscrolls_normalize(text: str) -> str:
    """Lower-case, drop punctuation, articles and extra spaces, then transliterate (unidecode)."""
    from unidecode import unidecode

    lowered = text.lower()
    no_punct = "".join(ch for ch in lowered if ch not in _PUNCTUATION)
    no_articles = _ARTICLES.sub(" ", no_punct)
    return str(unidecode(" ".join(no_articles.split())))


def _f1(prediction: str, reference: str) -> float:
    pred = zeroscrolls_normalize(prediction).split()
    ref = zeroscrolls_normalize(reference).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def zeroscrolls_f1_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """Token F1, maximum over the references (qasper, narrative_qa, musique)."""
    return max((_f1(prediction, str(ref)) for ref in answers), default=0.0)


# -- accuracy ---------------------------------------------------------------------------------
def _choice(text: str) -> str | None:
    match = _CHOICE.search(text)
    return None if match is None else match.group()


def zeroscrolls_accuracy_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """1.0 when the first standalone A-D of the prediction is the reference's letter (quality).

    A reference without such a letter is a ValueError (the official code asserts on it).
    """
    best = 0.0
    for ref in answers:
        letter = _choice(str(ref))
        if letter is None:
            raise ValueError(f"zeroscrolls/quality: reference {ref!r:.80} names no letter A-D")
        best = max(best, float(_choice(str(prediction)) == letter))
    return best


# -- exponential similarity -------------------------------------------------------------------
def _percentage(text: str) -> float | None:
    match = _PERCENTAGE.search(text)
    return None if match is None else float(match.group().replace("%", ""))


def zeroscrolls_exp_similarity_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """``0.5 ** (|p - g| / 10)`` of the first percentages, maximum over the references."""
    predicted = _percentage(str(prediction))
    best = 0.0
    for ref in answers:
        gold = _percentage(str(ref))
        if predicted is None:
            continue
        best = max(best, 0.5 ** (abs((gold or 0.0) - predicted) / 10))
    return best


# -- concordance index ------------------------------------------------------------------------
def _integers(text: str) -> list[int]:
    """The integers of a text as the official ``normalize_answer_ci`` reads them ([] if any
    piece is not an integer)."""
    pieces = _NOT_INT_LIST.sub("", str(text)).replace(",", " ").strip(string.punctuation).split()
    try:
        return [int("".join(ch for ch in p if ch not in _PUNCTUATION).strip()) for p in pieces]
    except ValueError:
        return []


def _positions(ids: Sequence[int]) -> list[int]:
    """Position (1-based) of summary ``k`` at index ``k - 1``, as the official helper."""
    order = [-1] * len(ids)
    for position, summary in enumerate(ids, 1):
        order[summary - 1] = position  # negative indices wrap, as in the official helper
    return order


def concordance_index(truth: Sequence[float], predicted: Sequence[float]) -> float:
    """Harrell's C with every event observed: over pairs with different ``truth``, the share
    ordered the same way by ``predicted`` (a tie in ``predicted`` counts one half).

    No admissible pair is a ValueError (lifelines raises ZeroDivisionError there).
    """
    if len(truth) != len(predicted):
        raise ValueError(f"concordance_index: {len(truth)} truths vs {len(predicted)} predictions")
    pairs = agree = 0.0
    for i in range(len(truth)):
        for j in range(i + 1, len(truth)):
            if truth[i] == truth[j]:
                continue
            pairs += 1
            direction = (truth[i] - truth[j]) * (predicted[i] - predicted[j])
            agree += 1.0 if direction > 0 else 0.5 if direction == 0 else 0.0
    if pairs == 0:
        raise ValueError("concordance_index: no admissible pairs (all truths equal, or < 2)")
    return agree / pairs


def _concordance(prediction: str, reference: str) -> float:
    predicted, gold = _integers(prediction), _integers(reference)
    if sorted(predicted) != sorted(gold):
        return 0.0
    try:
        return concordance_index(_positions(gold), _positions(predicted))
    except (IndexError, ValueError):  # the official code raises here; we score nothing
        return 0.0


def zeroscrolls_concordance_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """Concordance index of the predicted chapter order, maximum over the references."""
    return max((_concordance(str(prediction), str(ref)) for ref in answers), default=0.0)


# -- ROUGE ------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=False)


def zeroscrolls_rouge_row(prediction: str, answers: Sequence[str]) -> dict[str, float]:
    """ROUGE-1/2/L F-measure × 100 of one row, each the maximum over its references."""
    best = dict.fromkeys(ROUGE_KEYS, 0.0)
    scorer = _rouge_scorer()
    for ref in answers:
        scores = scorer.score(str(ref), str(prediction))  # (target, prediction)
        for key in ROUGE_KEYS:
            best[key] = max(best[key], scores[key].fmeasure * 100)
    return best


def zeroscrolls_rouge_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """Per-row view in [0, 1]: the geometric mean of this row's ROUGE-1/2/L (the subset number
    is :func:`zeroscrolls_rouge_aggregate`, the geometric mean of the averages)."""
    row = zeroscrolls_rouge_row(prediction, answers)
    return _geometric_mean([row[k] for k in ROUGE_KEYS]) / 100


def _geometric_mean(values: Sequence[float]) -> float:
    product = math.prod(values)
    return float(product ** (1.0 / len(values))) if product > 0 else 0.0


def zeroscrolls_rouge_aggregate(rows: Sequence[tuple[str, Sequence[str]]]) -> dict[str, float]:
    """The official summarisation numbers of (prediction, references) rows: ROUGE-1/2/L
    averages × 100 and their geometric mean, each rounded to 4 decimals."""
    if not rows:
        raise ValueError("zeroscrolls_rouge_aggregate: no rows")
    per_row = [zeroscrolls_rouge_row(p, a) for p, a in rows]
    means = {k: sum(r[k] for r in per_row) / len(per_row) for k in ROUGE_KEYS}
    geometric = (means["rouge1"] * means["rouge2"] * means["rougeL"]) ** (1.0 / 3.0)
    return {**{k: round(v, 4) for k, v in means.items()}, "geometric_mean": round(geometric, 4)}


#: Each task's metric name and per-row scorer.
ZEROSCROLLS_METRICS: dict[str, tuple[str, Any]] = {
    "gov_report": ("rouge/geometric_mean", zeroscrolls_rouge_score),
    "summ_screen_fd": ("rouge/geometric_mean", zeroscrolls_rouge_score),
    "qmsum": ("rouge/geometric_mean", zeroscrolls_rouge_score),
    "squality": ("rouge/geometric_mean", zeroscrolls_rouge_score),
    "qasper": ("f1", zeroscrolls_f1_score),
    "narrative_qa": ("f1", zeroscrolls_f1_score),
    "musique": ("f1", zeroscrolls_f1_score),
    "quality": ("accuracy", zeroscrolls_accuracy_score),
    "space_digest": ("exp_similarity", zeroscrolls_exp_similarity_score),
    "book_sum_sort": ("concordance_index", zeroscrolls_concordance_score),
}

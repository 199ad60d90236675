"""ROUGE-L as the official benchmark code computes it.

LongBench (Bai et al., 2023, THUDM ``metrics.py``) scores with the ``rouge`` PyPI package, not
Google's ``rouge-score``. That package splits the text into sentences at every ".", splits each
sentence on single spaces (case-sensitive, punctuation kept: "cat," and "cat" differ), and takes
the summary-level union-LCS F-measure over *sets* of words. Chinese text is first joined into
jieba words with spaces. Where the package raises (an empty or "."-only hypothesis or
reference, or a recursion error on a very long sentence) LongBench returns 0.0; so do we.

InfiniteBench (Zhang et al., 2024, OpenBMB ``compute_scores.py``) scores ``longbook_sum_eng`` with
HuggingFace ``evaluate``'s "rouge" metric, i.e. ``rouge-score``'s ``rougeLsum`` (lower-cased
alphanumeric tokens, no stemming, sentences split at newlines), max over the references.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _rouge_package() -> Any:
    from rouge import Rouge  # the `rouge` PyPI package, as LongBench's requirements.txt

    return Rouge()


def rouge_package_scores(hypothesis: str, reference: str) -> dict[str, dict[str, float]] | None:
    """The ``rouge`` package's scores of one pair, or None where the package raises."""
    try:
        scores: dict[str, dict[str, float]] = _rouge_package().get_scores(
            [hypothesis], [reference], avg=True
        )
    except Exception:  # LongBench's bare `except: return 0.0`, matched on purpose
        return None
    return scores


def rouge_l(prediction: str, reference: str, *, chinese: bool = False) -> float:
    """LongBench's ROUGE-L F of one prediction against one reference (0.0 where it raises)."""
    if chinese:
        import jieba  # lazy: jieba builds its dictionary on first use (~1 s)

        prediction = " ".join(jieba.cut(prediction, cut_all=False))
        reference = " ".join(jieba.cut(reference, cut_all=False))
    scores = rouge_package_scores(prediction, reference)
    return 0.0 if scores is None else float(scores["rouge-l"]["f"])


def rouge_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """LongBench ROUGE-L (gov_report, qmsum, multi_news, samsum): max over references."""
    return max((rouge_l(prediction, str(ref)) for ref in answers), default=0.0)


def rouge_zh_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """LongBench Chinese ROUGE-L (dureader, vcsum) over jieba words: max over references."""
    return max((rouge_l(prediction, str(ref), chinese=True) for ref in answers), default=0.0)


@lru_cache(maxsize=1)
def _rouge_lsum_scorer() -> Any:
    from rouge_score import rouge_scorer  # what `evaluate.load("rouge")` wraps

    return rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=False)


def rouge_lsum_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """InfiniteBench ``longbook_sum_eng``: ``rougeLsum`` F, best reference (``score_multi``)."""
    refs = [str(ref) for ref in answers]
    if not refs:
        return 0.0
    return float(_rouge_lsum_scorer().score_multi(refs, prediction)["rougeLsum"].fmeasure)

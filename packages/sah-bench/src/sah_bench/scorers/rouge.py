"""ROUGE-L F-measure (Lin, 2004) through Google's ``rouge-score`` package.

English uses the package's own tokenizer (lower-case, alphanumeric tokens). Chinese is first
segmented with jieba, as LongBench does, and scored with a whitespace tokenizer because the
package's default tokenizer drops every non-ASCII character.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any


class _WhitespaceTokenizer:
    """Tokenizer for ``rouge_score``: split on whitespace, keep every script."""

    def tokenize(self, text: str) -> list[str]:
        return text.split()


@lru_cache(maxsize=2)
def _scorer(chinese: bool) -> Any:
    from rouge_score import rouge_scorer  # lazy: pulls in nltk

    if chinese:
        return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_WhitespaceTokenizer())
    return rouge_scorer.RougeScorer(["rougeL"])


def rouge_l(prediction: str, reference: str, *, chinese: bool = False) -> float:
    """ROUGE-L F-measure of one prediction against one reference."""
    if chinese:
        import jieba

        prediction = " ".join(jieba.cut(prediction, cut_all=False))
        reference = " ".join(jieba.cut(reference, cut_all=False))
    return float(_scorer(chinese).score(reference, prediction)["rougeL"].fmeasure)


def rouge_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """Max over references of ROUGE-L F (English)."""
    return max((rouge_l(prediction, ref) for ref in answers), default=0.0)


def rouge_zh_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """Max over references of ROUGE-L F over jieba words (Chinese)."""
    return max((rouge_l(prediction, ref, chinese=True) for ref in answers), default=0.0)

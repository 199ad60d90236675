"""Token-level QA F1 (SQuAD, Rajpurkar et al., 2016), as LongBench uses it for QA tasks.

F1 between the bag of tokens of the prediction and of one reference; the score of a prediction
is the maximum over its references. Chinese text is segmented with jieba, as LongBench does
(jieba runs on the raw text, each word is then normalised and empty words dropped).
InfiniteBench's ``longbook_qa_chn`` instead normalises the whole text and takes one character
per token (OpenBMB ``compute_scores.qa_f1_score_zh``); ``qa_f1_zh_char_score`` is that one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sah_bench.scorers.normalize import normalize_chinese, normalize_english


def token_f1(prediction_tokens: Sequence[str], reference_tokens: Sequence[str]) -> float:
    """F1 of two token bags (multiset overlap); 0 when either is empty or nothing overlaps."""
    common = Counter(prediction_tokens) & Counter(reference_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction_tokens)
    recall = overlap / len(reference_tokens)
    return 2 * precision * recall / (precision + recall)


def qa_f1_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """Max over references of the token F1 after English normalisation."""
    pred_tokens = normalize_english(prediction).split()
    return max(
        (token_f1(pred_tokens, normalize_english(str(ref)).split()) for ref in answers), default=0.0
    )


def _jieba_tokens(text: str) -> list[str]:
    import jieba  # lazy: jieba builds its dictionary on first use (~1 s)

    words = (normalize_chinese(w) for w in jieba.cut(text, cut_all=False))
    return [w for w in words if w]


def qa_f1_zh_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """Max over references of the token F1 over jieba words after Chinese normalisation."""
    pred_tokens = _jieba_tokens(prediction)
    return max((token_f1(pred_tokens, _jieba_tokens(str(ref))) for ref in answers), default=0.0)


def qa_f1_zh_char_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """InfiniteBench Chinese QA F1: characters of the normalised texts as tokens."""
    pred_chars = list(normalize_chinese(prediction))
    return max(
        (token_f1(pred_chars, list(normalize_chinese(str(ref)))) for ref in answers),
        default=0.0,
    )

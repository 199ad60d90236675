"""Answer normalisation shared by the QA scorers.

English follows the SQuAD evaluation convention used by LongBench's QA-F1 (Rajpurkar et al.,
2016): lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace. Chinese
follows LongBench (Bai et al., 2023): lower-case, drop ASCII and CJK punctuation, drop all
whitespace.
"""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
#: CJK punctuation stripped by the Chinese normalisation, on top of ASCII punctuation.
_CJK_PUNCTUATION = (
    "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃》「」『』【】〔〕〖〗〘〙〚〛"
    "〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏."
)
_ALL_PUNCTUATION = frozenset(string.punctuation) | frozenset(_CJK_PUNCTUATION)


def normalize_english(text: str) -> str:
    """SQuAD-style normalisation: lower, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def normalize_chinese(text: str) -> str:
    """LongBench's Chinese normalisation: lower, no punctuation (ASCII or CJK), no spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _ALL_PUNCTUATION)
    return "".join(text.split())

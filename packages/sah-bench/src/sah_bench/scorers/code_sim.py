"""LongBench's code-completion similarity (Bai et al., 2023) for LCC and RepoBench-P.

Official rule (THUDM ``metrics.py``): drop leading newlines, take the first line that contains
none of "`", "#" or "//" (anywhere in the line, so ``x = "#"`` is skipped too; "" when every
line has one), and score ``fuzzywuzzy.fuzz.ratio(line, reference) / 100``. The ratio is an
integer percent (rounded), 100 for identical strings (even two empty ones) and 0 when exactly
one side is empty. LongBench's requirements install ``fuzzywuzzy`` without
``python-Levenshtein``, so the ratio is difflib's ``SequenceMatcher``: we depend on the same
package and check that it runs that path (about 1 % of pairs differ by a point under the
Levenshtein path).
"""

from __future__ import annotations

import difflib
import logging
import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

_SKIP_MARKERS = ("`", "#", "//")


def first_code_line(prediction: str) -> str:
    """The first line that holds no fence or comment marker ("" when there is none)."""
    for line in prediction.lstrip("\n").split("\n"):
        if not any(marker in line for marker in _SKIP_MARKERS):
            return line
    return ""


@lru_cache(maxsize=1)
def _fuzz() -> Any:
    with warnings.catch_warnings():
        # fuzzywuzzy warns that it uses difflib: that is the path LongBench ran.
        warnings.simplefilter("ignore", UserWarning)
        from fuzzywuzzy import fuzz
    if fuzz.SequenceMatcher is not difflib.SequenceMatcher:
        logger.warning(
            "python-Levenshtein is installed, so fuzzywuzzy uses it instead of difflib: "
            "code_sim scores may differ by a point from LongBench's reference environment"
        )
    return fuzz


def fuzzywuzzy_ratio(a: str, b: str) -> int:
    """``fuzzywuzzy.fuzz.ratio``: integer percent similarity."""
    return int(_fuzz().ratio(a, b))


def code_sim_score(prediction: str, answers: Sequence[str], **_: object) -> float:
    """LongBench code similarity: max over references of ``ratio(first line, ref) / 100``."""
    line = first_code_line(prediction)
    return max((fuzzywuzzy_ratio(line, str(ref)) / 100 for ref in answers), default=0.0)

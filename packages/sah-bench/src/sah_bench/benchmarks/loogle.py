"""LooGLE (Li et al., 2023, "LooGLE: Can Long-Context Language Models Understand Long
Contexts?"): short- and long-dependency QA, cloze and summarisation over long documents.

From the hub copy ``simonjegou/loogle`` (config = task, split ``test``), whose rows are in the
common schema already (``answer`` is one string; for the cloze task the JSON of the
``{"<mask-n>": entity}`` dict). Text columns are passed through; many questions share one
document, so they are asked as one request. Placeholder rows of documents without QA (empty
reference) are skipped: they cannot be scored. Scorers: ``LOOGLE_SCORERS`` (cloze:
LooGLE's exact match of the entity dict; QA and summaries: ROUGE-L recall; the paper's BERTScore
and GPT judges are not run offline).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.scorers import LOOGLE_SCORERS

logger = logging.getLogger(__name__)

#: Official generation budgets (LooGLE ``task2maxlen``).
LOOGLE_MAX_NEW_TOKENS: dict[str, int] = {
    "shortdep_qa": 300,
    "longdep_qa": 500,
    "shortdep_cloze": 50,
    "longdep_summarization": 500,
}


class LooGLE(Benchmark):
    name: ClassVar[str] = "loogle"
    hub_id: ClassVar[str] = "simonjegou/loogle"
    all_subsets: ClassVar[tuple[str, ...]] = tuple(LOOGLE_MAX_NEW_TOKENS)

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        row = super().to_rows(subset, record)[0]
        answers = row.get("answers")
        if answers is None or (isinstance(answers, str) and not answers.strip()):
            logger.debug("loogle/%s: skipping a placeholder row with no reference", subset)
            return []
        row["task"] = subset
        row["max_new_tokens"] = LOOGLE_MAX_NEW_TOKENS[subset]
        return [row]

    def scorer(self, subset: str) -> Scorer:
        return LOOGLE_SCORERS[subset]

    def postprocess(self, subset: str, prediction: str) -> str:
        # LooGLE's automatic_eval.py scores the generated text as is (only "" becomes "None",
        # in the scorer): stripping would change ROUGE, whose `rouge` package reads a trailing
        # space after "." as one more (empty) sentence.
        return prediction

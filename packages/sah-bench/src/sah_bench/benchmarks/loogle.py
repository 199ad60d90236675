"""LooGLE (Li et al., 2023, "LooGLE: Can Long-Context Language Models Understand Long
Contexts?"): short- and long-dependency QA, cloze and summarisation over long documents.

The paper scores generation with n-gram overlap (BLEU/ROUGE/METEOR) and model-based judges;
offline we use ROUGE-L for QA and summaries, and ``string_match_all`` over the masked entities for
the cloze task. Rows already come in the common schema on the hub mirror.
"""

from __future__ import annotations

from typing import ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.scorers import rouge_score, string_match_all


class LooGLE(Benchmark):
    name: ClassVar[str] = "loogle"
    hub_id: ClassVar[str] = "simonjegou/loogle"
    all_subsets: ClassVar[tuple[str, ...]] = (
        "shortdep_qa",
        "longdep_qa",
        "shortdep_cloze",
        "longdep_summarization",
    )

    def scorer(self, subset: str) -> Scorer:
        return string_match_all if subset == "shortdep_cloze" else rouge_score

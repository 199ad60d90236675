"""Which official scorer each benchmark task uses (one table per benchmark)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from sah_bench.scorers.boxed import boxed_match_score
from sah_bench.scorers.choice import choice_score
from sah_bench.scorers.classification import classification_score
from sah_bench.scorers.code_sim import code_sim_score
from sah_bench.scorers.infinitebench import (
    code_debug_score,
    code_run_score,
    first_int_score,
    kv_retrieval_score,
    longbook_choice_score,
    longdialogue_score,
    math_calc_score,
    math_find_score,
)
from sah_bench.scorers.loft import multi_value_subspan_em_score, subspan_em_score
from sah_bench.scorers.loogle import loogle_cloze_exact_score, loogle_rouge_l_recall_score
from sah_bench.scorers.qa_f1 import qa_f1_score, qa_f1_zh_char_score, qa_f1_zh_score
from sah_bench.scorers.retrieval import count_score, retrieval_score, retrieval_zh_score
from sah_bench.scorers.rouge import rouge_lsum_score, rouge_score, rouge_zh_score
from sah_bench.scorers.string_match import string_match_all, string_match_part

ScorerFn = Callable[..., float]

#: THUDM LongBench ``eval.py`` ``dataset2metric`` (``<task>_e`` uses the base task's scorer).
LONGBENCH_SCORERS: Mapping[str, ScorerFn] = MappingProxyType(
    {
        "narrativeqa": qa_f1_score,
        "qasper": qa_f1_score,
        "multifieldqa_en": qa_f1_score,
        "multifieldqa_zh": qa_f1_zh_score,
        "hotpotqa": qa_f1_score,
        "2wikimqa": qa_f1_score,
        "musique": qa_f1_score,
        "dureader": rouge_zh_score,
        "gov_report": rouge_score,
        "qmsum": rouge_score,
        "multi_news": rouge_score,
        "vcsum": rouge_zh_score,
        "trec": classification_score,
        "triviaqa": qa_f1_score,
        "samsum": rouge_score,
        "lsht": classification_score,
        "passage_retrieval_en": retrieval_score,
        "passage_count": count_score,
        "passage_retrieval_zh": retrieval_zh_score,
        "lcc": code_sim_score,
        "repobench-p": code_sim_score,
    }
)

#: OpenBMB InfiniteBench ``compute_scores.get_score_one`` per task.
INFINITEBENCH_SCORERS: Mapping[str, ScorerFn] = MappingProxyType(
    {
        "passkey": first_int_score,
        "number_string": first_int_score,
        "kv_retrieval": kv_retrieval_score,
        "code_run": code_run_score,
        "code_debug": code_debug_score,
        "math_find": math_find_score,
        "math_calc": math_calc_score,
        "longdialogue_qa_eng": longdialogue_score,
        "longbook_qa_eng": qa_f1_score,
        "longbook_qa_chn": qa_f1_zh_char_score,
        "longbook_choice_eng": longbook_choice_score,
        "longbook_sum_eng": rouge_lsum_score,
    }
)

#: LOFT RAG primary metric per task (README table): ``rag`` / ``multi_value_rag`` subspan EM.
LOFT_RAG_SCORERS: Mapping[str, ScorerFn] = MappingProxyType(
    {
        "nq": subspan_em_score,
        "hotpotqa": subspan_em_score,
        "musique": subspan_em_score,
        "qampari": multi_value_subspan_em_score,
        "quest": multi_value_subspan_em_score,
    }
)

#: LooGLE automatic metrics usable offline (the paper's headline for QA/summaries is BERTScore).
LOOGLE_SCORERS: Mapping[str, ScorerFn] = MappingProxyType(
    {
        "shortdep_cloze": loogle_cloze_exact_score,
        "shortdep_qa": loogle_rouge_l_recall_score,
        "longdep_qa": loogle_rouge_l_recall_score,
        "longdep_summarization": loogle_rouge_l_recall_score,
    }
)


def ruler_scorer(task: str) -> ScorerFn:
    """RULER ``constants.TASKS``: ``qa_*`` use ``string_match_part``, the rest ``_all``."""
    return string_match_part if task.startswith("qa") else string_match_all


#: LongBench-v2 and AIME have one scorer each.
LONGBENCH_V2_SCORER: ScorerFn = choice_score
AIME_SCORER: ScorerFn = boxed_match_score

"""Official scorers: each maps ``(prediction, answers, **row_fields) -> float`` in [0, 1].

Every scorer returns the number the benchmark's own scoring code returns on the same
prediction and references (per row; the task aggregation helpers are in ``longbench_eval`` and
``loogle``). The quirks of the official code that change numbers are kept and named in each
module's docstring.
"""

from sah_bench.scorers.boxed import boxed_match_score, extract_boxed, extract_final_answer
from sah_bench.scorers.choice import choice_score, extract_choice
from sah_bench.scorers.classification import classification_score
from sah_bench.scorers.code_sim import code_sim_score, first_code_line, fuzzywuzzy_ratio
from sah_bench.scorers.infinitebench import (
    choice_label,
    code_debug_score,
    code_run_score,
    first_int_match,
    first_int_score,
    kv_retrieval_score,
    longbook_choice_score,
    longdialogue_score,
    math_calc_score,
    math_find_score,
    option_choice_score,
)
from sah_bench.scorers.loft import (
    coverage_score,
    loft_em_score,
    loft_f1_score,
    loft_normalize,
    multi_value_subspan_em_score,
    parse_final_answers,
    set_em_score,
    subspan_em_score,
)
from sah_bench.scorers.longbench_eval import (
    E_BUCKETS,
    FIRST_LINE_TASKS,
    longbench_e_bucket,
    longbench_e_bucket_scores,
    longbench_e_buckets,
    longbench_percent,
    longbench_postprocess,
)
from sah_bench.scorers.loogle import (
    loogle_cloze_counts,
    loogle_cloze_exact_score,
    loogle_cloze_micro_average,
    loogle_cloze_partial_score,
    loogle_rouge_l_recall_score,
)
from sah_bench.scorers.normalize import normalize_chinese, normalize_english
from sah_bench.scorers.qa_f1 import qa_f1_score, qa_f1_zh_char_score, qa_f1_zh_score, token_f1
from sah_bench.scorers.registry import (
    AIME_SCORER,
    INFINITEBENCH_SCORERS,
    LOFT_RAG_SCORERS,
    LONGBENCH_SCORERS,
    LONGBENCH_V2_SCORER,
    LOOGLE_SCORERS,
    ruler_scorer,
)
from sah_bench.scorers.retrieval import count_score, retrieval_score, retrieval_zh_score
from sah_bench.scorers.rouge import rouge_l, rouge_lsum_score, rouge_score, rouge_zh_score
from sah_bench.scorers.string_match import string_match_all, string_match_part

__all__ = [
    "AIME_SCORER",
    "E_BUCKETS",
    "FIRST_LINE_TASKS",
    "INFINITEBENCH_SCORERS",
    "LOFT_RAG_SCORERS",
    "LONGBENCH_SCORERS",
    "LONGBENCH_V2_SCORER",
    "LOOGLE_SCORERS",
    "boxed_match_score",
    "choice_label",
    "choice_score",
    "classification_score",
    "code_debug_score",
    "code_run_score",
    "code_sim_score",
    "count_score",
    "coverage_score",
    "extract_boxed",
    "extract_choice",
    "extract_final_answer",
    "first_code_line",
    "first_int_match",
    "first_int_score",
    "fuzzywuzzy_ratio",
    "kv_retrieval_score",
    "loft_em_score",
    "loft_f1_score",
    "loft_normalize",
    "longbench_e_bucket",
    "longbench_e_bucket_scores",
    "longbench_e_buckets",
    "longbench_percent",
    "longbench_postprocess",
    "longbook_choice_score",
    "longdialogue_score",
    "loogle_cloze_counts",
    "loogle_cloze_exact_score",
    "loogle_cloze_micro_average",
    "loogle_cloze_partial_score",
    "loogle_rouge_l_recall_score",
    "math_calc_score",
    "math_find_score",
    "multi_value_subspan_em_score",
    "normalize_chinese",
    "normalize_english",
    "option_choice_score",
    "parse_final_answers",
    "qa_f1_score",
    "qa_f1_zh_char_score",
    "qa_f1_zh_score",
    "retrieval_score",
    "retrieval_zh_score",
    "rouge_l",
    "rouge_lsum_score",
    "rouge_score",
    "rouge_zh_score",
    "ruler_scorer",
    "set_em_score",
    "string_match_all",
    "string_match_part",
    "subspan_em_score",
    "token_f1",
]

"""Official scorers: each maps ``(prediction, answers, **row_fields) -> float`` in [0, 1]."""

from sah_bench.scorers.boxed import boxed_match_score, extract_boxed, extract_final_answer
from sah_bench.scorers.choice import choice_score, extract_choice, option_choice_score
from sah_bench.scorers.classification import classification_score
from sah_bench.scorers.code_sim import code_sim_score, first_code_line
from sah_bench.scorers.infinitebench import first_int_score, kv_retrieval_score, math_find_score
from sah_bench.scorers.loft import coverage_score, parse_final_answers, subspan_em_score
from sah_bench.scorers.normalize import normalize_chinese, normalize_english
from sah_bench.scorers.qa_f1 import qa_f1_score, qa_f1_zh_score, token_f1
from sah_bench.scorers.retrieval import count_score, retrieval_score, retrieval_zh_score
from sah_bench.scorers.rouge import rouge_l, rouge_score, rouge_zh_score
from sah_bench.scorers.string_match import string_match_all, string_match_part

__all__ = [
    "boxed_match_score",
    "choice_score",
    "classification_score",
    "code_sim_score",
    "count_score",
    "coverage_score",
    "extract_boxed",
    "extract_choice",
    "extract_final_answer",
    "first_code_line",
    "first_int_score",
    "kv_retrieval_score",
    "math_find_score",
    "normalize_chinese",
    "normalize_english",
    "option_choice_score",
    "parse_final_answers",
    "qa_f1_score",
    "qa_f1_zh_score",
    "retrieval_score",
    "retrieval_zh_score",
    "rouge_l",
    "rouge_score",
    "rouge_zh_score",
    "string_match_all",
    "string_match_part",
    "subspan_em_score",
    "token_f1",
]

"""LongBench (Bai et al., 2023, "LongBench: A Bilingual, Multitask Benchmark for Long Context
Understanding"): 21 tasks plus the length-balanced ``_e`` variants, with the official metrics.

Each task's prompt is split into the part that holds the document (the request's context,
prefilled once) and the part that holds the question. Metrics: QA-F1 (English / Chinese with
jieba), ROUGE-L, classification, passage retrieval, passage count and code similarity; TREC,
TriviaQA, SAMSum and LSHT score only the first line of the prediction, as the official
evaluation does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.scorers import (
    classification_score,
    code_sim_score,
    count_score,
    qa_f1_score,
    qa_f1_zh_score,
    retrieval_score,
    retrieval_zh_score,
    rouge_score,
    rouge_zh_score,
)


@dataclass(frozen=True)
class LongBenchTask:
    scorer: Scorer
    max_new_tokens: int
    context_template: str
    question_template: str
    answer_prefix: str = ""
    first_line_only: bool = False


_EN_QA_CTX = "Read the text below and answer the question about it.\n\nText:\n{context}\n\n"
_EN_QA_Q = (
    "Answer the question as concisely as you can, using a single phrase if possible. "
    "Do not explain.\n\nQuestion: {input}"
)
_MULTI_DOC_CTX = "Answer the question using the passages below.\n\n{context}\n\n"
_MULTI_DOC_Q = (
    "Answer the question using the passages above. Give only the answer, no other words."
    "\n\nQuestion: {input}"
)
_ZH_QA_CTX = "阅读以下文字并用中文简短回答问题：\n\n{context}\n\n"
_ZH_QA_Q = (
    "现在请基于上面的文章回答下面的问题，只告诉我答案，不要输出任何其他字词。\n\n问题：{input}"
)

TASKS: dict[str, LongBenchTask] = {
    "narrativeqa": LongBenchTask(
        qa_f1_score,
        128,
        "You are given a story (a novel or a film script). Read it, then answer the question."
        "\n\nStory: {context}\n\n",
        "Answer the question about the story as briefly as you can, with no explanation."
        "\n\nQuestion: {input}",
        "Answer:",
    ),
    "qasper": LongBenchTask(
        qa_f1_score,
        128,
        "You are given a scientific article and a question.\n\nArticle: {context}\n\n",
        "Answer the question about the article as concisely as you can, in a phrase or a "
        'sentence. If it cannot be answered from the article, write "unanswerable". If it is a '
        'yes/no question, answer "yes", "no" or "unanswerable". Do not explain.'
        "\n\nQuestion: {input}",
        "Answer:",
    ),
    "multifieldqa_en": LongBenchTask(qa_f1_score, 64, _EN_QA_CTX, _EN_QA_Q, "Answer:"),
    "multifieldqa_zh": LongBenchTask(qa_f1_zh_score, 64, _ZH_QA_CTX, _ZH_QA_Q, "回答："),
    "hotpotqa": LongBenchTask(qa_f1_score, 32, _MULTI_DOC_CTX, _MULTI_DOC_Q, "Answer:"),
    "2wikimqa": LongBenchTask(qa_f1_score, 32, _MULTI_DOC_CTX, _MULTI_DOC_Q, "Answer:"),
    "musique": LongBenchTask(qa_f1_score, 32, _MULTI_DOC_CTX, _MULTI_DOC_Q, "Answer:"),
    "dureader": LongBenchTask(
        rouge_zh_score,
        128,
        "请基于下面给定的文章回答问题。\n\n文章：{context}\n\n",
        "请基于上面的文章回答下面的问题。\n\n问题：{input}",
        "回答：",
    ),
    "gov_report": LongBenchTask(
        rouge_score,
        512,
        "You are given a report by a government agency.\n\nReport:\n{context}\n\n",
        "Write a one-page summary of the report.",
        "Summary:",
    ),
    "qmsum": LongBenchTask(
        rouge_score,
        512,
        "You are given a meeting transcript.\n\nTranscript:\n{context}\n\n",
        "Answer the query about the transcript in one or more sentences.\n\nQuery: {input}",
        "Answer:",
    ),
    "multi_news": LongBenchTask(
        rouge_score,
        512,
        "You are given several news articles.\n\nNews:\n{context}\n\n",
        "Write a one-page summary of all the news above.",
        "Summary:",
    ),
    "vcsum": LongBenchTask(
        rouge_zh_score,
        512,
        "下面有一段会议记录。\n\n会议记录：\n{context}\n\n",
        "请给出上面会议的总结。",
        "会议总结：",
    ),
    "trec": LongBenchTask(
        classification_score,
        64,
        "Classify the type of the question's answer. Labelled examples follow.\n\n{context}\n",
        "{input}",
        "",
        first_line_only=True,
    ),
    "triviaqa": LongBenchTask(
        qa_f1_score,
        32,
        "Answer the question from the passage, in the format of the examples below.\n\n"
        "{context}\n\n",
        "{input}",
        "",
        first_line_only=True,
    ),
    "samsum": LongBenchTask(
        rouge_score,
        128,
        "Summarise the dialogue in the format of the examples below.\n\n{context}\n\n",
        "{input}",
        "",
        first_line_only=True,
    ),
    "lsht": LongBenchTask(
        classification_score,
        64,
        "请判断给定新闻的类别，下面是一些例子。\n\n{context}\n",
        "{input}",
        "",
        first_line_only=True,
    ),
    "passage_count": LongBenchTask(
        count_score,
        32,
        "Below are several paragraphs; some may be duplicates of each other.\n\n{context}\n\n",
        "How many distinct paragraphs are there after removing duplicates? Reply with one "
        "number only.",
        "The final answer is: ",
    ),
    "passage_retrieval_en": LongBenchTask(
        retrieval_score,
        32,
        "Below are 30 paragraphs and an abstract. Find the paragraph the abstract comes from."
        "\n\n{context}\n\n",
        "Abstract:\n{input}\n\nGive the number of the paragraph the abstract comes from, in "
        'the form "Paragraph 1", "Paragraph 2", and so on.',
        "The answer is: ",
    ),
    "passage_retrieval_zh": LongBenchTask(
        retrieval_zh_score,
        32,
        "以下是若干段落文字，以及其中一个段落的摘要。请确定给定的摘要出自哪一段。\n\n{context}\n\n",
        '摘要：\n{input}\n\n请输入摘要所属段落的编号，格式为"段落1"、"段落2"等。',
        "答案是：",
    ),
    "lcc": LongBenchTask(
        code_sim_score,
        64,
        "Complete the code below.\n\n{context}",
        "Next line of code:\n",
        "",
    ),
    "repobench-p": LongBenchTask(
        code_sim_score,
        64,
        "Complete the code below, using the repository context.\n\n{context}",
        "{input}Next line of code:\n",
        "",
    ),
}

#: The 13 tasks that have a length-balanced ``_e`` variant.
E_TASKS: tuple[str, ...] = (
    "qasper",
    "multifieldqa_en",
    "hotpotqa",
    "2wikimqa",
    "gov_report",
    "multi_news",
    "trec",
    "triviaqa",
    "samsum",
    "passage_count",
    "passage_retrieval_en",
    "lcc",
    "repobench-p",
)


def base_task(subset: str) -> str:
    return subset[:-2] if subset.endswith("_e") else subset


class LongBench(Benchmark):
    """LongBench's 21 tasks and 13 ``_e`` variants (hub mirror in parquet form)."""

    name: ClassVar[str] = "longbench"
    hub_id: ClassVar[str] = "Xnhyacinth/LongBench"
    all_subsets: ClassVar[tuple[str, ...]] = (*TASKS, *(f"{t}_e" for t in E_TASKS))
    subset_field: ClassVar[str] = "dataset"

    def record_subset(self, record: dict[str, Any]) -> str:
        return str(record.get("dataset"))

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        task = TASKS[base_task(subset)]
        context = task.context_template.format(context=record["context"])
        question = task.question_template.format(input=record.get("input") or "")
        row: dict[str, Any] = {
            "context": context,
            "question": question,
            "answer_prefix": task.answer_prefix,
            "answers": record["answers"],
            "task": subset,
            "max_new_tokens": task.max_new_tokens,
        }
        if record.get("all_classes"):
            row["all_classes"] = list(record["all_classes"])
        if record.get("length") is not None:
            row["length"] = int(record["length"])
        return [row]

    def scorer(self, subset: str) -> Scorer:
        return TASKS[base_task(subset)].scorer

    def postprocess(self, subset: str, prediction: str) -> str:
        task = TASKS[base_task(subset)]
        if task.first_line_only:
            return prediction.lstrip("\n").split("\n")[0].strip()
        if task.scorer is code_sim_score:
            return prediction  # indentation is part of the line being compared
        return prediction.strip()

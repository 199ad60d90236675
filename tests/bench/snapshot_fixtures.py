"""Tiny on-disk snapshots of every benchmark's hub repo, in the real schema, built at test time.

Each snapshot is laid out as ``huggingface-cli download --repo-type dataset --local-dir`` fetches
a repo that ``push_to_hub`` wrote: ``README.md`` with YAML ``configs:`` (``data_files`` per
split) and ``<config>/<split>-00000-of-00001.parquet`` (``data/`` for a ``default`` config).
Column names, types and the content of each text column follow
``shared/reference/benchmark_datasets.md``; the texts themselves are short placeholders.

:func:`build_snapshots` writes them all under ``root/<owner>/<name>`` and returns every row it
wrote, keyed by ``(repo id, config, split)``, so tests compare loaded requests with the data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

Rows = list[dict[str, Any]]
Written = dict[tuple[str, str, str], Rows]

STR = pa.string()
LIST_STR = pa.list_(pa.string())
I32 = pa.int32()
I64 = pa.int64()

# ---------------------------------------------------------------------------------------------
# The layout


def write_repo(
    root: Path,
    repo_id: str,
    splits: dict[tuple[str, str], Rows],
    schema: pa.Schema | Callable[[str], pa.Schema],
    written: Written,
) -> Path:
    """Write one repo: ``splits[(config, split)]`` rows, with README ``configs:`` metadata.

    ``schema`` is one schema for every config, or a function of the config name.
    """
    folder = root / repo_id
    folder.mkdir(parents=True, exist_ok=True)
    by_config: dict[str, list[str]] = {}
    for (config, split), rows in splits.items():
        sub = "data" if config == "default" else config
        (folder / sub).mkdir(parents=True, exist_ok=True)
        config_schema = schema if isinstance(schema, pa.Schema) else schema(config)
        table = pa.Table.from_pylist(rows, schema=config_schema)
        pq.write_table(table, folder / sub / f"{split}-00000-of-00001.parquet")
        by_config.setdefault(config, []).append(split)
        written[(repo_id, config, split)] = rows
    # YAML as huggingface_hub writes it (safe_dump quotes names such as '4096').
    meta = {
        "configs": [
            {
                "config_name": config,
                "data_files": [
                    {
                        "split": split,
                        "path": f"{'data' if config == 'default' else config}/{split}-*",
                    }
                    for split in config_splits
                ],
            }
            for config, config_splits in by_config.items()
        ]
    }
    text = f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n# {repo_id} (test fixture)\n"
    (folder / "README.md").write_text(text, encoding="utf-8")
    _download_leftovers(folder, [f"{'data' if c == 'default' else c}/{s}" for c, s in splits])
    return folder


def _download_leftovers(folder: Path, names: list[str]) -> None:
    """What ``huggingface-cli download --local-dir`` leaves beside the data: not data files."""
    (folder / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    meta = folder / ".cache" / "huggingface" / "download"
    for name in names:
        path = meta / f"{name}-00000-of-00001.parquet.metadata"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("0123abcd\nfedc\n1700000000.0\n")


def _schema(fields: Iterable[tuple[str, pa.DataType]]) -> pa.Schema:
    return pa.schema(list(fields))


# ---------------------------------------------------------------------------------------------
# LongBench and LongBench-E (Xnhyacinth/LongBench)

LONGBENCH_TASKS = (
    "narrativeqa",
    "qasper",
    "multifieldqa_en",
    "hotpotqa",
    "2wikimqa",
    "musique",
    "gov_report",
    "qmsum",
    "multi_news",
    "trec",
    "triviaqa",
    "samsum",
    "passage_count",
    "passage_retrieval_en",
    "lcc",
    "repobench-p",
)
LONGBENCH_E_TASKS = (
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
#: dataset2maxlen (THUDM LongBench), the hub rows carry these + 20.
LONGBENCH_MAXLEN = {
    "narrativeqa": 128,
    "qasper": 128,
    "multifieldqa_en": 64,
    "hotpotqa": 32,
    "2wikimqa": 32,
    "musique": 32,
    "gov_report": 512,
    "qmsum": 512,
    "multi_news": 512,
    "trec": 64,
    "triviaqa": 32,
    "samsum": 128,
    "passage_count": 32,
    "passage_retrieval_en": 32,
    "lcc": 64,
    "repobench-p": 64,
}
_LB_PREFIX = {
    "trec": "Type:",
    "triviaqa": "Answer:",
    "samsum": "Summary:",
    "gov_report": "Summary:",
    "multi_news": "Summary:",
    "passage_count": "The final answer is: ",
    "passage_retrieval_en": "The answer is: ",
    "lcc": "Next line of code:\n",
    "repobench-p": "Next line of code:\n",
}
#: Word counts spanning the LongBench-E buckets (<4000, <8000, the rest).
E_LENGTHS = (1500, 3999, 4000, 7999, 8000, 12000)


def _longbench_rows(task: str, config: str, lengths: Iterable[int]) -> Rows:
    rows = []
    for i, length in enumerate(lengths):
        if task in ("gov_report", "multi_news", "passage_count"):
            question = "Now, write a one-page summary.\n\n"  # a fixed instruction
        elif task in ("lcc",):
            question = ""
        elif task in ("trec", "triviaqa", "samsum", "repobench-p"):
            question = f"input {i} of {config}\n"
        else:
            question = f"Question: question {i} of {config}?\n"
        rows.append(
            {
                "context": f"Instruction of {task}.\n\nDocument {i} of {config} " * 3 + "\n\n",
                "question": question,
                "answer_prefix": _LB_PREFIX.get(task, "Answer:"),
                "answers": [f"answer {i}", f"alias {i}"] if i % 2 else [f"answer {i}"],
                "length": length,
                "dataset": config,
                "language": "en",
                "all_classes": ["Location", "Number", "Person"] if task == "trec" else None,
                "_id": f"{config}-{i}",
                "task": task,  # _e configs hold the base name
                "max_new_tokens": LONGBENCH_MAXLEN[task] + 20,
            }
        )
    return rows


def build_longbench(root: Path, written: Written) -> None:
    splits: dict[tuple[str, str], Rows] = {}
    for task in LONGBENCH_TASKS:
        splits[(task, "test")] = _longbench_rows(task, task, (900, 5000))
    for task in LONGBENCH_E_TASKS:
        splits[(f"{task}_e", "test")] = _longbench_rows(task, f"{task}_e", E_LENGTHS)
    write_repo(root, "Xnhyacinth/LongBench", splits, _longbench_schema, written)


def _longbench_schema(config: str) -> pa.Schema:
    # all_classes is a list for trec and null-typed in the other configs (one file each).
    return _schema(
        [
            ("context", STR),
            ("question", STR),
            ("answer_prefix", STR),
            ("answers", LIST_STR),
            ("length", I32),
            ("dataset", STR),
            ("language", STR),
            ("all_classes", LIST_STR if config.startswith("trec") else pa.null()),
            ("_id", STR),
            ("task", STR),
            ("max_new_tokens", I64),
        ]
    )


# ---------------------------------------------------------------------------------------------
# LongBench-v2 (Xnhyacinth/LongBench-v2)

V2_BUCKETS = [
    ("easy", "short", "A"),
    ("easy", "medium", "B"),
    ("hard", "long", "C"),
    ("hard", "short", "D"),
    ("hard", "medium", "A"),
    ("easy", "long", "B"),
]


def build_longbench_v2(root: Path, written: Written) -> None:
    schema = _schema(
        [
            ("_id", STR),
            ("domain", STR),
            ("sub_domain", STR),
            ("difficulty", STR),
            ("length", STR),
            ("question", STR),
            ("choice_A", STR),
            ("choice_B", STR),
            ("choice_C", STR),
            ("choice_D", STR),
            ("answer", STR),
            ("context", STR),
            ("answer_prefix", STR),
            ("task", STR),
            ("max_new_tokens", I64),
        ]
    )
    splits: dict[tuple[str, str], Rows] = {}
    for config, budget in (("0shot", 148), ("cot", 1044)):
        rows = []
        for i, (difficulty, length, answer) in enumerate(V2_BUCKETS):
            choices = {f"choice_{c}": f"option {c}{i}" for c in "ABCD"}
            question = f"What is asked {i}?\n\n" + "\n".join(
                f"({c}) {choices['choice_' + c]}" for c in "ABCD"
            )
            prefix = (
                'Format your response as follows: "The correct answer is (insert answer here)".'
            )
            if config == "cot":
                prefix += "\n\nLet's think step by step:"
            rows.append(
                {
                    "_id": f"v2-{i}",
                    "domain": "Single-Document QA",
                    "sub_domain": "Academic",
                    "difficulty": difficulty,
                    "length": length,
                    "question": question,
                    **choices,
                    "answer": answer,
                    "context": f"Please read the following text and answer the question below."
                    f"\n\n<text>\nDocument {i}\n</text>\n\n",
                    "answer_prefix": prefix,
                    "task": config,
                    "max_new_tokens": budget,
                }
            )
        splits[(config, "test")] = rows
    write_repo(root, "Xnhyacinth/LongBench-v2", splits, schema, written)


# ---------------------------------------------------------------------------------------------
# InfiniteBench (MaxJeblick/InfiniteBench)

#: Official max lengths (OpenBMB eval_utils.py); the hub rows carry these + 20.
INFINITEBENCH_MAXLEN = {
    "passkey": 6,
    "kv_retrieval": 50,
    "number_string": 12,
    "code_run": 5,
    "code_debug": 5,
    "math_find": 3,
    "math_calc": 30000,
    "longdialogue_qa_eng": 40,
    "longbook_qa_eng": 40,
    "longbook_choice_eng": 40,
    "longbook_sum_eng": 1200,
    "longbook_qa_chn": 40,
}


def build_infinitebench(root: Path, written: Written) -> None:
    schema = _schema(
        [
            ("context", STR),
            ("question", STR),
            ("answer_prefix", STR),
            ("answer", LIST_STR),
            ("task", STR),
            ("max_new_tokens", I64),
        ]
    )
    splits: dict[tuple[str, str], Rows] = {}
    for task, maxlen in INFINITEBENCH_MAXLEN.items():
        rows = []
        for i in range(2):
            question = f"What is asked in {task} {i}?"
            answer = [str(70000 + i)]
            if task == "longbook_choice_eng":
                question += (
                    "\n\nOnly one of the following options is correct, tell me the answer using "
                    "one single letter (A, B, C, or D). Don't say anything else."
                    f"\nA. Walking {i}\nB. Taking care of Totty\nC. Working in the dairy"
                    "\nD. Light housework"
                )
                answer = ["AB"[i]]
            elif task == "code_debug":
                question += "\n\nOptions:\nA. func_a\nB. func_b\nC. Foo.func_c\nD. func_d"
                answer = ["CD"[i]]
            elif task == "longdialogue_qa_eng":
                answer = ["ACE", "ACE ROTHSTEIN"]
            rows.append(
                {
                    "context": f"An instruction for {task}.\n\nHaystack {i} " * 4 + "\n\n",
                    "question": question,
                    "answer_prefix": "The pass key is:" if task == "passkey" else "Answer:",
                    "answer": answer,
                    "task": task,
                    "max_new_tokens": maxlen + 20,
                }
            )
        splits[(task, "test")] = rows
    write_repo(root, "MaxJeblick/InfiniteBench", splits, schema, written)


# ---------------------------------------------------------------------------------------------
# RULER: simonjegou/ruler (config = length, split test) and xAlg-AI/att-hub-ruler-16k|32k
# (config = split = task)

RULER_TASKS = (
    "niah_single_1",
    "niah_single_2",
    "niah_single_3",
    "niah_multikey_1",
    "niah_multikey_2",
    "niah_multikey_3",
    "niah_multivalue",
    "niah_multiquery",
    "vt",
    "cwe",
    "fwe",
    "qa_1",
    "qa_2",
)
RULER_MAXLEN = {"niah": 128, "vt": 30, "cwe": 120, "fwe": 50, "qa": 32}
RULER_SCHEMA = _schema(
    [
        ("context", STR),
        ("question", STR),
        ("answer_prefix", STR),
        ("answer", LIST_STR),
        ("task", STR),
        ("max_new_tokens", I64),
    ]
)


def _ruler_row(task: str, length: int, i: int) -> dict[str, Any]:
    return {
        "context": f"RULER {length} haystack {i} for {task}. " * 3,
        "question": f" What are all the special magic numbers for key-{i} ({task})?",
        "answer_prefix": f" Answer: The special magic numbers for key-{i} are",
        "answer": [f"{1000 + i}", f"{2000 + i}"] if task == "niah_multivalue" else [f"{i}"],
        "task": task,
        "max_new_tokens": RULER_MAXLEN[task.split("_")[0]],
    }


def build_ruler(root: Path, written: Written) -> None:
    splits: dict[tuple[str, str], Rows] = {}
    for length in (4096, 8192, 16384):
        splits[(str(length), "test")] = [
            _ruler_row(task, length, i) for i in range(2) for task in RULER_TASKS
        ]
    write_repo(root, "simonjegou/ruler", splits, RULER_SCHEMA, written)
    for name, length in (
        ("xAlg-AI/att-hub-ruler-16k", 16384),
        ("xAlg-AI/att-hub-ruler-32k", 32768),
    ):
        by_task = {
            (task, task): [_ruler_row(task, length, i) for i in range(2)] for task in RULER_TASKS
        }
        write_repo(root, name, by_task, RULER_SCHEMA, written)


# ---------------------------------------------------------------------------------------------
# ZeroSCROLLS (simonjegou/zero_scrolls): one default config, split test, ten tasks concatenated

ZEROSCROLLS_MAXLEN = {
    "gov_report": 1024,
    "summ_screen_fd": 512,
    "qmsum": 512,
    "qasper": 128,
    "narrative_qa": 64,
    "quality": 10,
    "musique": 32,
    "squality": 512,
    "space_digest": 36,
    "book_sum_sort": 256,
}


def build_zeroscrolls(root: Path, written: Written) -> None:
    schema = _schema(
        [
            ("id", STR),
            ("pid", STR),
            ("input", STR),
            ("output", STR),
            ("document_start_index", I32),
            ("document_end_index", I32),
            ("query_start_index", I32),
            ("query_end_index", I32),
            ("truncation_seperator", STR),
            ("inner_docs_start_indices", pa.list_(I32)),
            ("context", STR),
            ("question", STR),
            ("answer_prefix", STR),
            ("answer", STR),
            ("task", STR),
            ("max_new_tokens", I64),
            ("__index_level_0__", I64),
        ]
    )
    rows = []
    for n, (task, maxlen) in enumerate(ZEROSCROLLS_MAXLEN.items()):
        for i in range(2):
            document = f"You are given a {task} document.\n\nDocument {i}: text text.\n\n"
            query = f"Question:\nWhat about {task} {i}?\n\n"
            rest = " Answer:\n"
            text = document + query + rest
            rows.append(
                {
                    "id": f"{task}-{i}",
                    "pid": f"{task}-{i}",
                    "input": text,
                    "output": None,
                    "document_start_index": text.index("Document"),
                    "document_end_index": len(document),
                    "query_start_index": len(document),
                    "query_end_index": len(document) + len(query),
                    "truncation_seperator": "... [The rest is omitted]\n\n",
                    "inner_docs_start_indices": [0] if task == "musique" else None,
                    "context": text[: len(document)],
                    "question": query,
                    "answer_prefix": rest.strip(),
                    "answer": "",
                    "task": task,
                    "max_new_tokens": maxlen,
                    "__index_level_0__": 2 * n + i,
                }
            )
    write_repo(root, "simonjegou/zero_scrolls", {("default", "test"): rows}, schema, written)


# ---------------------------------------------------------------------------------------------
# LooGLE (simonjegou/loogle)

LOOGLE_MAXLEN = {
    "shortdep_qa": 300,
    "longdep_qa": 500,
    "shortdep_cloze": 50,
    "longdep_summarization": 500,
}


def build_loogle(root: Path, written: Written) -> None:
    schema = _schema(
        [
            ("context", STR),
            ("question", STR),
            ("answer_prefix", STR),
            ("answer", STR),
            ("task", STR),
            ("max_new_tokens", I64),
            ("__index_level_0__", I64),
        ]
    )
    splits: dict[tuple[str, str], Rows] = {}
    for task, maxlen in LOOGLE_MAXLEN.items():
        rows = []
        for doc in range(2):
            context = f"Please answer the question based on the long texts below.\nDoc {doc}"
            for q in range(3 if task != "longdep_summarization" else 1):
                if task == "longdep_summarization":
                    question, prefix, answer = "\n", "Summarization: ", f"summary {doc}"
                elif task == "shortdep_cloze":
                    question = f"\nQuestion: <mask-0> met {q}. What are the masked entities?\n"
                    prefix = "Answer:"
                    answer = json.dumps({"<mask-0>": f"Entity {doc}{q}"})
                else:
                    question, prefix, answer = f"\nQuestion: q{doc}{q}?\n", "Answer: ", f"a{q}"
                rows.append(
                    {
                        "context": context,
                        "question": question,
                        "answer_prefix": prefix,
                        "answer": answer,
                        "task": task,
                        "max_new_tokens": maxlen,
                        "__index_level_0__": doc,
                    }
                )
        if task != "longdep_summarization":  # a document without QA: placeholder row
            rows.append(
                {
                    "context": "Please answer the question based on the long texts below.\nDoc 9",
                    "question": "\nQuestion: \n",
                    "answer_prefix": "Answer: ",
                    "answer": "",
                    "task": task,
                    "max_new_tokens": maxlen,
                    "__index_level_0__": 9,
                }
            )
        splits[(task, "test")] = rows
    write_repo(root, "simonjegou/loogle", splits, schema, written)


# ---------------------------------------------------------------------------------------------
# LOFT RAG (f20180301/loft-rag-{ds}-{len}): default config, dev + test (qampari-1m: test only)

LOFT_TASKS = ("nq", "hotpotqa", "musique", "qampari", "quest")
LOFT_LENGTHS = ("32k", "128k", "1m")


def build_loft(root: Path, written: Written) -> None:
    schema = _schema(
        [
            ("context", STR),
            ("question", STR),
            ("answer_prefix", STR),
            ("answers", LIST_STR),
            ("task", STR),
            ("max_new_tokens", I64),
        ]
    )
    for task in LOFT_TASKS:
        for length in LOFT_LENGTHS:
            context = f"Corpus of {task} {length}.\nID: 1 | TITLE: Paris\n"
            splits: dict[tuple[str, str], Rows] = {}
            for split in ("dev", "test"):
                if (task, length, split) == ("qampari", "1m", "dev"):
                    continue
                splits[("default", split)] = [
                    {
                        "context": context,
                        "question": f"====== Now let's start! ======\nquery {split} {i}",
                        "answer_prefix": "Final Answer: ",
                        "answers": ["Paris", "Lyon"] if task in ("qampari", "quest") else ["Paris"],
                        "task": f"{task}_{length}",
                        "max_new_tokens": 256,
                    }
                    for i in range(2)
                ]
            write_repo(root, f"f20180301/loft-rag-{task}-{length}", splits, schema, written)


# ---------------------------------------------------------------------------------------------
# AIME 2024 / 2025 (xAlg-AI/att-hub-aime2024|2025)


def build_aime(root: Path, written: Written, *, aime2025_answer_repr: bool = False) -> None:
    schema24 = _schema(
        [
            ("context", STR),
            ("question", STR),
            ("answer_prefix", STR),
            ("answer", STR),
            ("id", STR),
            ("max_new_tokens", I64),
        ]
    )
    rows24 = [
        {
            "context": f"Solve the problem.\nf\nProblem {i}: what is {i}+1?\nBox the answer.",
            "question": "What is the answer to this problem?",
            "answer_prefix": "",
            "answer": f"{i + 1:03d}" if i == 0 else str(i + 1),
            "id": f"2024-I-{i + 1}",
            "max_new_tokens": 32000,
        }
        for i in range(2)
    ]
    write_repo(root, "xAlg-AI/att-hub-aime2024", {("aime2024", "test"): rows24}, schema24, written)
    schema25 = _schema(
        [
            ("context", STR),
            ("question", STR),
            ("answer_prefix", STR),
            ("answer", STR if aime2025_answer_repr else LIST_STR),
            ("task", STR),
            ("max_new_tokens", I64),
        ]
    )
    rows25 = [
        {
            "context": f"Solve the problem.\nProblem {i}: what is 2*{i}?",
            "question": "What is the answer to this problem?",
            "answer_prefix": "",
            "answer": repr([str(2 * i)]) if aime2025_answer_repr else [str(2 * i)],
            "task": "aime2025",
            "max_new_tokens": 32000,
        }
        for i in range(2)
    ]
    write_repo(root, "xAlg-AI/att-hub-aime2025", {("aime2025", "test"): rows25}, schema25, written)


def build_snapshots(root: Path, *, aime2025_answer_repr: bool = False) -> Written:
    """Write every benchmark's snapshot under ``root``; return the rows written."""
    written: Written = {}
    build_longbench(root, written)
    build_longbench_v2(root, written)
    build_infinitebench(root, written)
    build_ruler(root, written)
    build_zeroscrolls(root, written)
    build_loogle(root, written)
    build_loft(root, written)
    build_aime(root, written, aime2025_answer_repr=aime2025_answer_repr)
    return written

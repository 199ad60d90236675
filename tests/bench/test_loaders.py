"""Every benchmark loader on tiny fixture files it writes itself (never the network)."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from sah_bench import get_benchmark, group_rows, list_benchmarks
from sah_bench.rows import COMMON_FIELDS


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def assert_common_schema(rows: list[dict[str, Any]]) -> None:
    assert rows
    for row in rows:
        assert set(COMMON_FIELDS) <= set(row)
        assert isinstance(row["answers"], list)
        assert row["max_new_tokens"] > 0


def test_every_issue_benchmark_is_registered() -> None:
    expected = {
        "synthetic",
        "mock",
        "longbench",
        "longbench_v2",
        "infinitebench",
        "ruler",
        "ruler16k",
        "ruler32k",
        "zeroscrolls",
        "loogle",
        "loft_rag",
        "aime2024",
        "aime2025",
    }
    assert expected <= set(list_benchmarks())


def test_unknown_benchmark_and_subset_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        get_benchmark("nope")
    with pytest.raises(ValueError, match="unknown subset 'nope'"):
        get_benchmark("mock").load_rows("nope")


def test_longbench_covers_21_tasks_and_e_variants(tmp_path: Path) -> None:
    bench = get_benchmark("longbench")
    base = [s for s in bench.all_subsets if not s.endswith("_e")]
    assert len(base) == 21
    assert len(bench.all_subsets) == 21 + 13
    assert "repobench-p_e" in bench.all_subsets
    # A run over the hub copy without named subsets skips the 5 Chinese tasks it lacks ...
    chinese = {"multifieldqa_zh", "dureader", "vcsum", "lsht", "passage_retrieval_zh"}
    assert set(bench.all_subsets) - set(bench.subsets) == chinese
    # ... and local files serve them all.
    assert len(get_benchmark("longbench", data_path=tmp_path).subsets) == 34
    # LOFT's qampari at 1m has no dev split.
    assert "qampari_1m" not in get_benchmark("loft_rag").subsets
    assert "qampari_1m" in get_benchmark("loft_rag", split="test").subsets


def _longbench_record(dataset: str, **fields: Any) -> dict[str, Any]:
    """A record in the hub schema of Xnhyacinth/LongBench (official prompt already split)."""
    base = {
        "context": "Determine the type of the question.\n\nQuestion: How far? Type: Number\n",
        "question": "What is the capital of France?\n",
        "answer_prefix": "Type:",
        "answers": ["Location"],
        "length": 120,
        "dataset": dataset,
        "language": "en",
        "all_classes": None,
        "_id": "x1",
        "task": dataset,
        "max_new_tokens": 84,
    }
    return {**base, **fields}


def test_longbench_flat_files_in_the_hub_schema(tmp_path: Path) -> None:
    trec = _longbench_record("trec", all_classes=["Location", "Number", "Person"])
    qasper = _longbench_record(
        "qasper",
        context="Article: We use BERT.\n\n",
        question="Question: What is used?\n\n",
        answer_prefix="Answer:",
        answers=["BERT"],
    )
    # Folder form: one file per subset.
    write_jsonl(tmp_path / "lb" / "trec.jsonl", [trec])
    bench = get_benchmark("longbench", data_path=tmp_path / "lb")
    rows = bench.load_rows("trec")
    assert_common_schema(rows)
    row = rows[0]
    # Passed through unchanged; the budget is the official 64, not the row's 64 + 20.
    assert (row["context"], row["question"], row["answer_prefix"]) == (
        trec["context"],
        trec["question"],
        trec["answer_prefix"],
    )
    assert row["max_new_tokens"] == 64 and row["all_classes"] == trec["all_classes"]
    # TREC scores only the first line, with the classification metric.
    extras = {k: v for k, v in row.items() if k not in COMMON_FIELDS}
    assert bench.score("trec", "Location\nNumber", row["answers"], **extras) == 1.0
    # Single-file form: rows are filtered by the record's dataset field.
    single = write_jsonl(tmp_path / "all.jsonl", [trec, qasper])
    bench = get_benchmark("longbench", data_path=single)
    rows = bench.load_rows("qasper")
    assert len(rows) == 1 and rows[0]["answers"] == ["BERT"]
    assert bench.score("qasper", "BERT", ["BERT"]) == 1.0
    assert "all_classes" not in rows[0]


def test_longbench_raw_thudm_records_are_refused(tmp_path: Path) -> None:
    raw = {"input": "Q?", "context": "doc", "answers": ["a"], "dataset": "hotpotqa"}
    bench = get_benchmark("longbench", data_path=write_jsonl(tmp_path / "raw.jsonl", [raw]))
    with pytest.raises(ValueError, match=r"no 'question'/'answer_prefix'.*official prompt"):
        bench.load_rows("hotpotqa")


def test_longbench_parquet_fixture(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    record = _longbench_record(
        "lcc",
        context="Please complete the code given below. \ndef f():\n    x = 1\n",
        question="",
        answer_prefix="Next line of code:\n",
        answers=["    return x"],
    )
    (tmp_path / "lb").mkdir()
    pq.write_table(pa.Table.from_pylist([record]), tmp_path / "lb" / "lcc.parquet")
    bench = get_benchmark("longbench", data_path=tmp_path / "lb")
    row = bench.load_rows("lcc")[0]
    assert row["context"] == record["context"] and row["question"] == ""
    # Code similarity keeps indentation (no stripping before comparing lines).
    assert bench.score("lcc", "    return x\n", row["answers"]) == 1.0


def test_longbench_v2_flat_file(tmp_path: Path) -> None:
    base = {
        "domain": "d",
        "sub_domain": "s",
        "question": "Q?\n\n(A) a\n(B) b\n(C) c\n(D) d",
        "choice_A": "a",
        "choice_B": "b",
        "choice_C": "c",
        "choice_D": "d",
        "context": "Please read the following text.\n\n<text>\ndoc\n</text>\n\n",
        "answer_prefix": 'Format your response as "The correct answer is (X)".',
        "task": "0shot",
        "max_new_tokens": 148,
    }
    records = [
        {**base, "_id": "1", "difficulty": "easy", "length": "short", "answer": "B"},
        {**base, "_id": "2", "difficulty": "hard", "length": "long", "answer": "C"},
    ]
    path = write_jsonl(tmp_path / "v2.jsonl", records)
    bench = get_benchmark("longbench_v2", data_path=path)
    rows = bench.load_rows("0shot")
    assert [r["answers"] for r in rows] == [["B"], ["C"]]
    assert rows[0]["question"] == base["question"] and rows[0]["max_new_tokens"] == 128
    assert bench.score("0shot", "The correct answer is (C)", ["C"]) == 1.0
    # The official report: accuracy x 100 (1 decimal) overall and per bucket.
    scored = [
        {"score": 1.0, "extra": {"difficulty": "easy", "length": "short"}},
        {"score": 0.0, "extra": {"difficulty": "hard", "length": "long"}},
        {"score": 1.0, "extra": {"difficulty": "hard", "length": "long"}},
    ]
    report = bench.aggregate("0shot", scored)["official"]
    assert report["overall"] == 66.7 and report["easy"] == 100.0 and report["hard"] == 50.0
    assert report["short"] == 100.0 and report["long"] == 50.0 and report["medium"] is None


def test_infinitebench_choice_and_retrieval(tmp_path: Path) -> None:
    choice = {
        "context": "Read the book and answer the question.\n\na long book\n\n",
        "question": "Who?\n\nOnly one is correct.\nA. Ann\nB. Bob\nC. Cy\nD. Di",
        "answer_prefix": "The letter of the correct answer is",
        "answer": ["B"],
        "task": "longbook_choice_eng",
        "max_new_tokens": 60,
    }
    write_jsonl(tmp_path / "ib" / "longbook_choice_eng.jsonl", [choice])
    passkey = {
        "context": "noise 12345 noise",
        "question": "What is the pass key?",
        "answer_prefix": "The pass key is:",
        "answer": ["12345"],
        "task": "passkey",
        "max_new_tokens": 26,
    }
    write_jsonl(tmp_path / "ib" / "passkey.jsonl", [passkey])
    bench = get_benchmark("infinitebench", data_path=tmp_path / "ib")
    row = bench.load_rows("longbook_choice_eng")[0]
    assert row["question"] == choice["question"] and row["options"] == ["Ann", "Bob", "Cy", "Di"]
    assert row["max_new_tokens"] == 40
    assert bench.score("longbook_choice_eng", "B", row["answers"], options=row["options"]) == 1
    assert bench.score("longbook_choice_eng", "A", row["answers"], options=row["options"]) == 0
    row = bench.load_rows("passkey")[0]
    assert row["max_new_tokens"] == 6
    assert bench.score("passkey", " 12345.", row["answers"]) == 1.0
    raw = {"id": 1, "context": "c", "input": "Q", "answer": ["x"], "options": []}
    write_jsonl(tmp_path / "raw" / "passkey.jsonl", [raw])
    with pytest.raises(ValueError, match="hub schema"):
        get_benchmark("infinitebench", data_path=tmp_path / "raw").load_rows("passkey")


def test_ruler_common_schema_and_metric_choice(tmp_path: Path) -> None:
    rows = [
        {
            "context": "c1",
            "question": "q",
            "answer_prefix": "A:",
            "answer": ["1", "2"],
            "task": "niah_multivalue",
            "max_new_tokens": 64,
        },
        {
            "context": "c2",
            "question": "q",
            "answer_prefix": "A:",
            "answer": ["x", "y"],
            "task": "qa_1",
            "max_new_tokens": 32,
        },
    ]
    path = write_jsonl(tmp_path / "ruler.jsonl", rows)
    bench = get_benchmark("ruler", data_path=path)
    assert len(bench.subsets) == 13
    mv = bench.load_rows("niah_multivalue")
    assert len(mv) == 1 and mv[0]["answers"] == ["1", "2"]
    assert bench.score("niah_multivalue", "1 only", ["1", "2"]) == 0.5  # string_match_all
    assert bench.score("qa_1", "x only", ["x", "y"]) == 1.0  # string_match_part
    assert get_benchmark("ruler32k").context_length == 32768
    with pytest.raises(ValueError, match="context_length"):
        get_benchmark("ruler", context_length=1000)


def test_zeroscrolls_has_length_statistics_only(tmp_path: Path) -> None:
    text = "DOCUMENT TEXT. Question: what? Answer:"
    record = {
        "id": "z",
        "pid": "p",
        "input": text,
        "output": None,
        "document_end_index": text.index("Question"),
        "query_start_index": text.index("Question"),
        "query_end_index": text.index(" Answer:"),
    }
    write_jsonl(tmp_path / "zs" / "qasper.jsonl", [record])
    bench = get_benchmark("zeroscrolls", data_path=tmp_path / "zs")
    row = bench.load_rows("qasper")[0]
    assert row["context"] == "DOCUMENT TEXT. " and row["question"] == "Question: what?"
    assert row["answer_prefix"] == "Answer:" and row["max_new_tokens"] == 128
    assert row["answers"] == []
    assert math.isnan(bench.score("qasper", "anything", []))
    stats = bench.aggregate(
        "qasper",
        [{"score": math.nan, "prediction": "two words"}, {"score": math.nan, "prediction": ""}],
    )
    assert stats["score"] is None and stats["prediction_words_mean"] == 1.0
    assert stats["empty_predictions"] == 1


def test_loogle_and_loft(tmp_path: Path) -> None:
    loogle = {
        "context": "doc",
        "question": "q",
        "answer_prefix": "Answer:",
        "answer": "the cat sat",
        "task": "longdep_qa",
        "max_new_tokens": 32,
    }
    write_jsonl(tmp_path / "lg" / "longdep_qa.jsonl", [loogle])
    bench = get_benchmark("loogle", data_path=tmp_path / "lg")
    row = bench.load_rows("longdep_qa")[0]
    assert row["answers"] == ["the cat sat"]
    assert bench.score("longdep_qa", "the cat sat", row["answers"]) == pytest.approx(1.0)

    loft = {
        "context": "corpus",
        "question": "q",
        "answer_prefix": "",
        "answers": ["Paris"],
        "task": "whatever",
        "max_new_tokens": 256,
    }
    write_jsonl(tmp_path / "loft" / "nq_32k.jsonl", [loft])
    write_jsonl(tmp_path / "loft" / "quest_32k.jsonl", [{**loft, "answers": ["A", "B"]}])
    bench = get_benchmark("loft_rag", data_path=tmp_path / "loft")
    assert bench.load_rows("nq_32k")[0]["task"] == "nq_32k"
    assert bench.score("nq_32k", "Final Answer: ['paris']", ["Paris"]) == 1.0
    # LOFT's multi-value subspan EM: every reference must be found.
    assert bench.score("quest_32k", "Final Answer: ['A', 'B']", ["A", "B"]) == 1.0
    assert bench.score("quest_32k", "Final Answer: ['A']", ["A", "B"]) == 0.0


def test_aime_native_and_common_forms(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "aime.jsonl", [{"problem": "1+1?", "answer": "2"}])
    bench = get_benchmark("aime2024", data_path=path)
    row = bench.load_rows("aime2024")[0]
    assert "1+1?" in row["context"] and "boxed" in row["question"]
    assert bench.score("aime2024", r"so \boxed{2}", row["answers"]) == 1.0
    assert bench.score("aime2024", r"so \boxed{3}", row["answers"]) == 0.0
    common = {
        "context": "P",
        "question": "Q",
        "answer_prefix": "",
        "answer": 7,
        "task": "x",
        "max_new_tokens": 100,
    }
    bench = get_benchmark("aime2025", data_path=write_jsonl(tmp_path / "a25.jsonl", [common]))
    assert bench.load_rows("aime2025")[0]["answers"] == ["7"]


def test_mock_groups_questions_by_context() -> None:
    bench = get_benchmark("mock")
    rows = bench.load_rows("reading_comprehension")
    groups = group_rows(rows)
    assert [len(g.rows) for g in groups] == [3, 3, 2]
    request = groups[0].to_request()
    assert request.is_batched and len(request.question_list) == 3
    assert bench.score("reading_comprehension", "It was 1874.", ["1874"]) == 1.0


def test_mock_reads_the_original_rows_without_prefix_or_budget(tmp_path: Path) -> None:
    original = {
        "context": "Ada lit the lamp.",
        "question": "Who lit the lamp?",
        "answers": ["Ada"],
        "task": "reading_comprehension",
        "sample_id": 1,
    }
    bench = get_benchmark("mock", data_path=write_jsonl(tmp_path / "m.jsonl", [original]))
    row = bench.load_rows("reading_comprehension")[0]
    assert row["answer_prefix"] == "" and row["max_new_tokens"] == 16
    assert row["answers"] == ["Ada"] and row["sample_id"] == 1


def test_malformed_rows_name_the_field(tmp_path: Path) -> None:
    bad = {
        "context": "c",
        "question": "q",
        "answer_prefix": "",
        "answers": ["a"],
        "task": "qa_1",
        "max_new_tokens": "lots",
    }
    bench = get_benchmark("ruler", data_path=write_jsonl(tmp_path / "r.jsonl", [bad]))
    with pytest.raises(ValueError, match="max_new_tokens"):
        bench.load_rows("qa_1")
    missing = {k: v for k, v in bad.items() if k != "question"}
    bench = get_benchmark("ruler", data_path=write_jsonl(tmp_path / "m.jsonl", [missing]))
    with pytest.raises(ValueError, match="question"):
        bench.load_rows("qa_1")
    with pytest.raises(ValueError, match="does not exist"):
        get_benchmark("ruler", data_path=tmp_path / "missing.jsonl")


def test_hub_loading_uses_the_dataset_id(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_load_dataset(path: str, name: Any = None, split: Any = None) -> list[dict]:
        calls.append((path, name, split))
        return [_longbench_record("hotpotqa", task=str(name), answers=["a"])]

    fake = types.ModuleType("datasets")
    fake.load_dataset = fake_load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    rows = get_benchmark("longbench").load_rows("hotpotqa")
    assert calls == [("Xnhyacinth/LongBench", "hotpotqa", "test")]
    assert rows[0]["answers"] == ["a"]
    # Where every other benchmark's subsets live on the hub (benchmark_datasets.md).
    expected = {
        ("infinitebench", "passkey", ()): ("MaxJeblick/InfiniteBench", "passkey", "test"),
        ("longbench_v2", "cot", ()): ("Xnhyacinth/LongBench-v2", "cot", "test"),
        ("ruler", "vt", ()): ("simonjegou/ruler", "4096", "test"),
        ("ruler", "vt", (("context_length", 8192),)): ("simonjegou/ruler", "8192", "test"),
        ("ruler16k", "vt", ()): ("xAlg-AI/att-hub-ruler-16k", "vt", "vt"),
        ("ruler32k", "qa_1", ()): ("xAlg-AI/att-hub-ruler-32k", "qa_1", "qa_1"),
        ("zeroscrolls", "quality", ()): ("simonjegou/zero_scrolls", None, "test"),
        ("loogle", "longdep_qa", ()): ("simonjegou/loogle", "longdep_qa", "test"),
        ("loft_rag", "quest_128k", (("split", "test"),)): (
            "f20180301/loft-rag-quest-128k",
            None,
            "test",
        ),
        ("aime2024", "aime2024", ()): ("xAlg-AI/att-hub-aime2024", None, "test"),
        ("aime2025", "aime2025", ()): ("xAlg-AI/att-hub-aime2025", "aime2025", "test"),
    }
    for (name, subset, options), location in expected.items():
        calls.clear()
        get_benchmark(name, **dict(options)).hub_records(subset)
        assert calls == [location], name
    with pytest.raises(ValueError, match="Chinese task"):
        get_benchmark("longbench").load_rows("dureader")


def test_answers_become_lists_of_str_whatever_the_storage() -> None:
    import numpy as np

    from sah_bench.rows import as_answer_list

    assert as_answer_list(np.array(["a", "b"], dtype=object)) == ["a", "b"]
    assert as_answer_list(("x",)) == ["x"]
    assert as_answer_list(7) == ["7"]
    assert as_answer_list(None) == []
    # A list-repr string is parsed only where the schema says so (AIME 2025) ...
    assert as_answer_list("['4', '5']", list_repr=True) == ["4", "5"]
    assert as_answer_list("[4]", list_repr=True) == ["4"]
    assert as_answer_list("42", list_repr=True) == ["42"]
    assert as_answer_list("[not a literal", list_repr=True) == ["[not a literal"]
    # ... never by default: a reference may itself look like a list (a line of code).
    assert as_answer_list("['a', 'b']") == ["['a', 'b']"]


def test_pandas_records_with_numpy_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows as ``.to_pandas()`` gives them: list columns are numpy object arrays."""
    import numpy as np

    def fake_load_dataset(path: str, name: Any = None, split: Any = None) -> list[dict]:
        return [
            _longbench_record(
                "trec",
                answers=np.array(["Location"], dtype=object),
                all_classes=np.array(["Location", "Number"], dtype=object),
            )
        ]

    fake = types.ModuleType("datasets")
    fake.load_dataset = fake_load_dataset  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    row = get_benchmark("longbench").load_rows("trec")[0]
    assert row["answers"] == ["Location"] and row["all_classes"] == ["Location", "Number"]
    assert type(row["all_classes"]) is list

"""ZeroSCROLLS: the official metrics (values worked out by hand from the official definitions),
the loader on local data with references, and the leaderboard submission file."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pandas as pd
import pytest
import snapshot_fixtures as fx

from sah_bench import get_benchmark
from sah_bench.benchmarks.zeroscrolls import (
    SUBMISSION_COLUMNS,
    SUBMISSION_FILE,
    SUBMISSION_TASKS,
    ZEROSCROLLS_TASKS,
    write_zeroscrolls_submission,
)
from sah_bench.executor import BenchmarkExecutor, BenchmarkSpec
from sah_bench.scorers.zeroscrolls import (
    concordance_index,
    zeroscrolls_accuracy_score,
    zeroscrolls_concordance_score,
    zeroscrolls_exp_similarity_score,
    zeroscrolls_f1_score,
    zeroscrolls_rouge_aggregate,
    zeroscrolls_rouge_row,
    zeroscrolls_rouge_score,
)


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("The Cat sat!", ["cat sat"], 1.0),  # case, punctuation, article
        ("Café au lait", ["cafe au lait"], 1.0),  # unidecode (2/3 without it)
        ("a b c d", ["b c x"], 2 / 3),  # "a" is an article: "b c d" vs "b c x"
        ("the-end", ["end"], 0.0),  # punctuation goes before articles: "theend"
        ("«yes»", ["yes"], 0.0),  # « is no ASCII punctuation; unidecode makes it "<<"
        ("", ["anything"], 0.0),
        ("Paris", ["London", "paris, France"], 2 / 3),  # max over references
        ("Paris", [], 0.0),
    ],
)
def test_f1(prediction: str, answers: list[str], expected: float) -> None:
    assert zeroscrolls_f1_score(prediction, answers) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("(B) The man", "(B) The man", 1.0),
        ("A. I think it is B", "(B)", 0.0),  # the first standalone letter counts
        ("A man did it: (C)", "(C) a man", 0.0),  # quirk: the article "A" reads as choice A
        ("Answer: C", "C", 1.0),  # the "A" of "Answer" is no standalone letter
        ("b", "B", 0.0),  # capitals only
        ("", "(D)", 0.0),
    ],
)
def test_accuracy(prediction: str, reference: str, expected: float) -> None:
    assert zeroscrolls_accuracy_score(prediction, [reference]) == expected


def test_accuracy_reference_without_letter_is_an_error() -> None:
    with pytest.raises(ValueError, match="names no letter"):
        zeroscrolls_accuracy_score("A", ["none"])


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("About 60% positive", "50%", 0.5),  # 0.5 ** (10 / 10)
        ("55.5%", "50.5%", 0.5**0.5),
        ("75% and then 80%", "75%", 1.0),  # the first percentage
        ("3.%", "3%", 1.0),  # "\d+\.?\d*%" takes "3."
        ("60 percent", "60%", 0.0),  # no percentage in the prediction
        ("60%", "no number", 0.5**6),  # no percentage in the reference counts as 0 %
    ],
)
def test_exp_similarity(prediction: str, reference: str, expected: float) -> None:
    assert zeroscrolls_exp_similarity_score(prediction, [reference]) == pytest.approx(expected)


def _pairs_agreeing(gold: list[int], pred: list[int]) -> float:
    """Independent reference: the share of summary pairs both lists put in the same order."""
    pairs = list(itertools.combinations(gold, 2))
    same = sum((gold.index(a) < gold.index(b)) == (pred.index(a) < pred.index(b)) for a, b in pairs)
    return same / len(pairs)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("1, 2, 3, 4", "1, 2, 3, 4", 1.0),
        ("4, 3, 2, 1", "1, 2, 3, 4", 0.0),
        ("2, 1, 3, 4", "1, 2, 3, 4", 5 / 6),
        ("1, 3, 2", "3, 1, 2", 2 / 3),  # (3,1) flipped; (3,2) and (1,2) kept
        ("The order is: 2, 1, 3, 4.", "1, 2, 3, 4", 5 / 6),  # words and "." dropped
        ("1, 2, 3", "1, 2, 3, 4", 0.0),  # not the same summaries
        ("1-2-3-4", "1, 2, 3, 4", 0.0),  # "-" dropped: one number 1234
        ("1", "1", 0.0),  # no pair to compare (the official code raises)
    ],
)
def test_concordance(prediction: str, reference: str, expected: float) -> None:
    assert zeroscrolls_concordance_score(prediction, [reference]) == pytest.approx(expected)


def test_concordance_index_is_the_pair_agreement_on_permutations() -> None:
    rng = random.Random(0)
    for n in (2, 3, 5, 8):
        gold = list(range(1, n + 1))
        rng.shuffle(gold)
        pred = gold[:]
        rng.shuffle(pred)
        text = ", ".join(map(str, pred))
        got = zeroscrolls_concordance_score(text, [", ".join(map(str, gold))])
        assert got == pytest.approx(_pairs_agreeing(gold, pred))
    assert concordance_index([1, 2, 3], [1, 1, 2]) == pytest.approx((0.5 + 1 + 1) / 3)  # a tie


def test_rouge_rows_worked_by_hand() -> None:
    # 6 tokens each; unigram overlap 5, bigram overlap 3 of 5, LCS 5.
    row = zeroscrolls_rouge_row("The cat sat on the mat", ["the cat sat on a mat"])
    assert row == pytest.approx({"rouge1": 500 / 6, "rouge2": 60.0, "rougeL": 500 / 6})
    assert zeroscrolls_rouge_score("The cat sat on the mat", ["the cat sat on a mat"]) == (
        pytest.approx(((500 / 6) ** 2 * 60) ** (1 / 3) / 100)
    )
    assert zeroscrolls_rouge_row("Hello, World!", ["hello world"]) == pytest.approx(
        {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}
    )
    # No stemming: "cats"/"cat" and "running"/"run" differ.
    assert zeroscrolls_rouge_row("cats running", ["cat run"])["rouge1"] == 0.0
    # Each key is its own maximum over the references.
    best = zeroscrolls_rouge_row("a b c", ["a b", "c b a"])
    assert best == pytest.approx({"rouge1": 100.0, "rouge2": 200 / 3, "rougeL": 80.0})
    assert zeroscrolls_rouge_row("", ["a b"])["rouge1"] == 0.0


def test_rouge_subset_number_is_the_geometric_mean_of_averages() -> None:
    # Row 1: R1 100, R2 0 ("a b" vs "b a"), RL 50; row 2 perfect.
    out = zeroscrolls_rouge_aggregate([("a b", ["b a"]), ("a b", ["a b"])])
    assert out["rouge1"] == 100.0 and out["rouge2"] == 50.0 and out["rougeL"] == 75.0
    assert out["geometric_mean"] == round((100 * 50 * 75) ** (1 / 3), 4)  # 72.1125, not 50
    with pytest.raises(ValueError, match="no rows"):
        zeroscrolls_rouge_aggregate([])


def _validation_records() -> list[dict[str, object]]:
    """tau's source form: the same id once per reference, as its validation split has it."""
    text = "Story text. Question: who? Answer:"
    base = {
        "pid": "p",
        "input": text,
        "document_end_index": text.index("Question"),
        "query_start_index": text.index("Question"),
        "query_end_index": text.index(" Answer:"),
    }
    return [
        {**base, "id": "q1", "output": "the old king"},
        {**base, "id": "q1", "output": "a king"},
        {**base, "id": "q2", "output": "nobody"},
    ]


def test_local_references_are_merged_by_id_and_scored(tmp_path: Path) -> None:
    folder = tmp_path / "zs"
    folder.mkdir()
    with (folder / "narrative_qa.jsonl").open("w", encoding="utf-8") as fh:
        for record in _validation_records():
            fh.write(json.dumps(record) + "\n")
    bench = get_benchmark("zeroscrolls", data_path=folder)
    rows = bench.load_rows("narrative_qa")
    assert [(r["id"], r["answers"]) for r in rows] == [
        ("q1", ["the old king", "a king"]),
        ("q2", ["nobody"]),
    ]
    assert rows[0]["question"] == "Question: who?" and rows[0]["answer_prefix"] == "Answer:"
    assert bench.score("narrative_qa", " King ", ["the old king"]) == pytest.approx(2 / 3)
    assert bench.score("narrative_qa", " King ", rows[0]["answers"]) == 1.0  # "a king" -> "king"
    records = [
        {"prediction": "king", "answers": rows[0]["answers"], "score": 1.0, "task": "x"},
        {"prediction": "x", "answers": rows[1]["answers"], "score": 0.0, "task": "x"},
    ]
    official = bench.aggregate("narrative_qa", records)["official"]
    assert official == {"metric": "f1", "score": 50.0, "n": 2}
    with pytest.raises(ValueError, match="split 'dev' is not allowed"):
        get_benchmark("zeroscrolls", split="dev")


def test_test_split_scores_nan_and_reports_lengths(tmp_path: Path) -> None:
    bench = get_benchmark("zeroscrolls")
    assert math.isnan(bench.score("gov_report", "a summary", []))
    stats = bench.aggregate(
        "gov_report",
        [{"score": math.nan, "prediction": "two words", "answers": []}],
    )
    assert stats["score"] is None and stats["official"] is None
    assert stats["prediction_words_mean"] == 2.0


def test_submission_file_from_a_run(tmp_path: Path, fake_factory: str) -> None:
    root = tmp_path / "data"
    fx.build_zeroscrolls(root, {})
    executor = BenchmarkExecutor(
        tmp_path / "out",
        adapter_factory=fake_factory,
        progress=False,
        backend="inline",
    )
    spec = BenchmarkSpec("zeroscrolls", ZEROSCROLLS_TASKS, {"data_dir": str(root)})
    results = executor.run(["fake-constant"], {"dense": None}, [spec])
    assert {r.status for r in results} == {"done"}
    out = tmp_path / "submission"
    path = write_zeroscrolls_submission(
        tmp_path / "out", out, model="fake-constant", config="dense"
    )
    assert path == out / SUBMISSION_FILE
    # Read back as the official verify_submission.py reads it.
    frame = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=["!@#$%^&*()"])
    assert tuple(frame.columns) == SUBMISSION_COLUMNS
    assert list(dict.fromkeys(frame["Task"])) == list(SUBMISSION_TASKS)
    for task in SUBMISSION_TASKS:
        ids = frame.loc[frame["Task"] == task, "ID"].tolist()
        assert ids == [f"{task}-0", f"{task}-1"]
        per_task = json.loads((out / f"{task}.json").read_text(encoding="utf-8"))
        assert per_task == {f"{task}-0": "1874", f"{task}-1": "1874"}
    assert set(frame["Prediction"]) == {"1874"}
    with pytest.raises(ValueError, match="no results of model"):
        write_zeroscrolls_submission(tmp_path / "out", out, model="other", config="dense")


def test_partial_submission_needs_consent(tmp_path: Path, fake_factory: str) -> None:
    root = tmp_path / "data"
    fx.build_zeroscrolls(root, {})
    executor = BenchmarkExecutor(
        tmp_path / "out",
        adapter_factory=fake_factory,
        progress=False,
        backend="inline",
    )
    executor.run(
        ["fake-constant"],
        {"dense": None},
        [BenchmarkSpec("zeroscrolls", ("qasper",), {"data_dir": str(root)})],
    )
    with pytest.raises(ValueError, match="needs all ten tasks"):
        write_zeroscrolls_submission(
            tmp_path / "out", tmp_path / "s", model="fake-constant", config="dense"
        )
    path = write_zeroscrolls_submission(
        tmp_path / "out", tmp_path / "s", model="fake-constant", config="dense", allow_partial=True
    )
    assert pd.read_csv(path)["Task"].unique().tolist() == ["qasper"]

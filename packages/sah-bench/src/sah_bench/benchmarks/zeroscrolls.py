"""ZeroSCROLLS (Shaham et al., 2023, "ZeroSCROLLS: A Zero-Shot Benchmark for Long Text
Understanding"): ten tasks whose test answers are private.

What is official and what is not:

* **Test split (the hub copy):** no references (``output`` is null, ``answer`` is ""), so every
  row scores NaN and the subset reports the length statistics of the predictions (words,
  characters, empty answers), as the original project does. The official number comes only
  from the ZeroSCROLLS leaderboard: :func:`write_zeroscrolls_submission` turns a run's results
  into the file its ``submission/prepare_submission.py`` writes (``zero_scrolls_predictions.csv``,
  columns ``Task, ID, Prediction``) plus one ``{id: prediction}`` JSON per task (that script's
  input).
* **Local data with references** (e.g. a snapshot of tau's small ``validation`` split, with
  ``split="validation"``): each task is scored with its official metric
  (:mod:`sah_bench.scorers.zeroscrolls`: ROUGE geometric mean, F1, accuracy, exponential
  similarity, concordance index), reported × 100 under ``official``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.rows import as_answer_list
from sah_bench.scorers.zeroscrolls import ZEROSCROLLS_METRICS, zeroscrolls_rouge_aggregate

ZEROSCROLLS_TASKS: tuple[str, ...] = (
    "gov_report",
    "summ_screen_fd",
    "qmsum",
    "qasper",
    "narrative_qa",
    "quality",
    "musique",
    "squality",
    "space_digest",
    "book_sum_sort",
)

#: Task order of the official ``prepare_submission.py`` (its ``TASKS_MAPPING``).
SUBMISSION_TASKS: tuple[str, ...] = (
    "gov_report",
    "summ_screen_fd",
    "qmsum",
    "squality",
    "qasper",
    "narrative_qa",
    "quality",
    "musique",
    "space_digest",
    "book_sum_sort",
)
SUBMISSION_FILE = "zero_scrolls_predictions.csv"
SUBMISSION_COLUMNS: tuple[str, str, str] = ("Task", "ID", "Prediction")

#: Official generation budgets (ZeroSCROLLS' own; the hub copy carries the same values).
ZEROSCROLLS_MAX_NEW_TOKENS: dict[str, int] = {
    "gov_report": 1024,
    "summ_screen_fd": 512,
    "qmsum": 512,
    "squality": 512,
    "qasper": 128,
    "narrative_qa": 64,
    "quality": 10,
    "musique": 32,
    "space_digest": 36,
    "book_sum_sort": 256,
}

ZEROSCROLLS_SPLITS: tuple[str, ...] = ("test", "validation")


def no_public_answers(prediction: str, answers: Sequence[str], **_: object) -> float:
    """ZeroSCROLLS has no public test answers: every prediction scores NaN."""
    return math.nan


class ZeroScrolls(Benchmark):
    """ZeroSCROLLS from ``simonjegou/zero_scrolls``: one ``default`` config, split ``test``,
    the ten tasks concatenated and told apart by ``task`` (filtered here, before anything could
    overwrite it).

    (``tau/zero_scrolls`` is a loading-script repo that ``datasets`` >= 4 refuses.) The copy's
    ``context`` / ``question`` / ``answer_prefix`` are passed through; a record in tau's source
    form (``input`` + indices) is sliced the same way the copy was built: the document up to
    ``document_end_index``, the query up to ``query_end_index``, the rest (stripped) as prefix.
    Records sharing an ``id`` (tau's data repeats an example once per reference) become one row
    whose references are all their ``output`` values, as the official evaluator's
    ``drop_duplicates_in_input`` does. ``split`` picks the snapshot split (the hub copy holds
    only ``test``).
    """

    name: ClassVar[str] = "zeroscrolls"
    hub_id: ClassVar[str] = "simonjegou/zero_scrolls"
    all_subsets: ClassVar[tuple[str, ...]] = ZEROSCROLLS_TASKS

    def __init__(self, data_path: Any = None, data_dir: Any = None, split: str = "test") -> None:
        super().__init__(data_path, data_dir)
        if split not in ZEROSCROLLS_SPLITS:
            raise ValueError(
                f"zeroscrolls: split {split!r} is not allowed; use one of {ZEROSCROLLS_SPLITS}"
            )
        self.split = split

    def hub_location(self, subset: str) -> tuple[str | None, str]:
        return None, self.split

    def select_records(self, subset: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if str(r.get("task")) == subset]

    def raw_records(self, subset: str) -> list[dict[str, Any]]:
        return _merge_duplicate_ids(super().raw_records(subset))

    def to_rows(self, subset: str, record: dict[str, Any]) -> list[dict[str, Any]]:
        if "context" in record and "question" in record:
            context, question = str(record["context"]), str(record["question"])
            prefix = str(record.get("answer_prefix") or "")
        else:
            context, question, prefix = _slice_source(subset, record)
        return [
            {
                "context": context,
                "question": question,
                "answer_prefix": prefix,
                "answers": _references(record),
                "task": subset,
                "max_new_tokens": ZEROSCROLLS_MAX_NEW_TOKENS[subset],
                "id": str(record.get("id", "")),
            }
        ]

    def scorer(self, subset: str) -> Scorer:
        metric = ZEROSCROLLS_METRICS[subset][1]

        def score(prediction: str, answers: Sequence[str], **extras: Any) -> float:
            if not answers:  # the test split: references are private
                return math.nan
            return float(metric(prediction, answers, **extras))

        score.__doc__ = f"{metric.__name__} where the row has references, else NaN."
        return score

    def aggregate(self, subset: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        words = [len(str(r.get("prediction", "")).split()) for r in records]
        chars = [len(str(r.get("prediction", ""))) for r in records]
        out = super().aggregate(subset, records)
        out.update(
            {
                "prediction_words_mean": statistics.fmean(words) if words else 0.0,
                "prediction_words_median": statistics.median(words) if words else 0.0,
                "prediction_chars_mean": statistics.fmean(chars) if chars else 0.0,
                "empty_predictions": sum(w == 0 for w in words),
                "official": _official(subset, records),
            }
        )
        return out


def _official(subset: str, records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The official metric (× 100, 4 decimals) over the rows that carry references."""
    scored = [r for r in records if r.get("answers")]
    if not scored:
        return None  # test split: only the leaderboard can score it
    name = ZEROSCROLLS_METRICS[subset][0]
    if name.startswith("rouge"):
        rouge = zeroscrolls_rouge_aggregate(
            [(str(r.get("prediction", "")), list(r["answers"])) for r in scored]
        )
        return {
            "metric": name,
            "score": rouge["geometric_mean"],
            **{f"rouge/{k}": v for k, v in rouge.items()},
            "n": len(scored),
        }
    mean = sum(float(r["score"]) for r in scored) / len(scored)
    return {"metric": name, "score": round(100.0 * mean, 4), "n": len(scored)}


def _first_reference(record: dict[str, Any]) -> list[str]:
    """``output``, else ``answer``, when not empty (the test split stores null / "")."""
    for value in (record.get("output"), record.get("answer")):
        texts = [t for t in as_answer_list(value) if t]
        if texts:
            return texts
    return []


def _references(record: dict[str, Any]) -> list[str]:
    """The record's references: every output of its id (see :func:`_merge_duplicate_ids`)."""
    if "_outputs" in record:
        return [str(o) for o in record["_outputs"]]
    return _first_reference(record)


def _merge_duplicate_ids(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per ``id`` (first occurrence kept) holding the outputs of every record of
    that id, in order."""
    if not records or "id" not in records[0]:
        return records
    first: dict[str, dict[str, Any]] = {}
    for record in records:
        kept = first.setdefault(str(record.get("id")), {**record, "_outputs": []})
        kept["_outputs"].extend(_first_reference(record))
    return list(first.values())


def _slice_source(subset: str, record: dict[str, Any]) -> tuple[str, str, str]:
    """(context, question, answer prefix) of a record in tau's source form."""
    try:
        text = str(record["input"])
        doc_end = int(record["document_end_index"])
        query_end = int(record["query_end_index"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            f"zeroscrolls/{subset}: record needs context/question/answer_prefix or "
            f"input/document_end_index/query_end_index, got keys {sorted(record)}"
        ) from None
    return text[:doc_end], text[doc_end:query_end], text[query_end:].strip()


# -- leaderboard submission -------------------------------------------------------------------
def zeroscrolls_predictions(
    results_dir: str | Path, model: str, config: str
) -> dict[str, dict[str, str]]:
    """``{task: {id: prediction}}`` of the finished ZeroSCROLLS cells of one model and config
    in a results folder (tasks without a finished cell are left out)."""
    import pandas as pd

    from sah_bench.executor.cell import safe_name

    base = Path(results_dir) / safe_name(model) / safe_name(config)
    if not base.is_dir():
        raise ValueError(f"no results of model {model!r} with config {config!r} under {base}")
    out: dict[str, dict[str, str]] = {}
    for task in SUBMISSION_TASKS:
        path = base / safe_name(f"zeroscrolls_{task}") / "raw_results.parquet"
        if not path.is_file():
            continue
        frame = pd.read_parquet(path)
        preds: dict[str, str] = {}
        for prediction, extra in zip(frame["prediction"], frame["extra"], strict=True):
            row_id = json.loads(extra).get("id")
            if not row_id:
                raise ValueError(f"{path}: a row has no ZeroSCROLLS id; rerun with this version")
            preds[str(row_id)] = str(prediction)
        out[task] = preds
    return out


def write_zeroscrolls_submission(
    results_dir: str | Path,
    out_dir: str | Path,
    *,
    model: str,
    config: str,
    allow_partial: bool = False,
) -> Path:
    """Write the leaderboard submission of one (model, config) and return the CSV's path.

    ``out_dir`` gets ``<task>.json`` (``{id: prediction}``, the input format of the official
    ``prepare_submission.py``) for each task and ``zero_scrolls_predictions.csv`` (what that
    script writes: columns ``Task, ID, Prediction``, tasks in its order, no index), which the
    official ``verify_submission.py`` checks and the leaderboard scores. The leaderboard needs
    every test example of all ten tasks; a run missing tasks is a ValueError unless
    ``allow_partial`` (then the CSV holds what there is, for a local check).
    """
    import pandas as pd

    predictions = zeroscrolls_predictions(results_dir, model, config)
    missing = [t for t in SUBMISSION_TASKS if t not in predictions]
    if missing and not allow_partial:
        raise ValueError(
            f"ZeroSCROLLS submission needs all ten tasks; no finished results for {missing} "
            f"(model {model!r}, config {config!r}); pass allow_partial=True for a partial file"
        )
    if not predictions:
        raise ValueError(f"no finished ZeroSCROLLS results for model {model!r}, config {config!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str]] = []
    for task in SUBMISSION_TASKS:
        if task not in predictions:
            continue
        (out / f"{task}.json").write_text(
            json.dumps(predictions[task], ensure_ascii=False, indent=2), encoding="utf-8"
        )
        rows.extend((task, row_id, pred) for row_id, pred in predictions[task].items())
    frame = pd.DataFrame(rows, columns=list(SUBMISSION_COLUMNS))
    path = out / SUBMISSION_FILE
    frame.to_csv(path, index=False)
    # The official check: the file reads back (as strings, no NaN) exactly as written.
    back = pd.read_csv(path, dtype=object, keep_default_na=False, na_values=["!@#$%^&*()"])
    if back.values.tolist() != frame.values.tolist():
        raise ValueError(f"{path} does not read back as written (check the predictions' text)")
    return path

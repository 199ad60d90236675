"""``Benchmark.postprocess`` never changes an official score.

The base class strips surrounding whitespace before scoring. That is only right where the
official code strips too (RULER's ``postprocess_pred``) or where its metric cannot see surrounding
whitespace (regex extraction, whitespace tokenisation, rouge-score's alphanumeric tokens). For
every benchmark that keeps the default, scoring a whitespace-padded prediction through
``Benchmark.score`` must give what the subset's scorer gives on the raw text. LongBench applies
its own official clean-up (first line for four tasks, tested with the LongBench scorers) and
LooGLE's evaluator scores the raw text: there a trailing space after a "." is an extra empty
sentence for the ``rouge`` package, so LooGLE keeps the prediction as generated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import snapshot_fixtures as fx

from sah_bench import get_benchmark
from sah_bench.rows import row_extras

#: Benchmarks that keep the default strip (LongBench has its own official postprocess).
STRIPPING = (
    "longbench_v2",
    "infinitebench",
    "ruler",
    "zeroscrolls",
    "loft_rag",
    "aime2024",
    "aime2025",
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    fx.build_snapshots(root)
    return root


def _padded(answer: str) -> list[str]:
    return [
        f" {answer} ",
        f"\n{answer}\n\n",
        f"{answer}. ",
        f"\t{answer}.\n",
        f"  wrong answer {answer[:3]}  ",
        "  ",
        "",
    ]


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("name", STRIPPING)
def test_default_strip_is_neutral_for_the_official_metric(name: str, hub: Path) -> None:
    bench = get_benchmark(name, data_dir=hub)
    checked = 0
    for subset in bench.subsets:
        for row in bench.load_rows(subset, max_rows=2):
            answers: list[Any] = row["answers"]
            extras = row_extras(row)
            scorer = bench.scorer(subset)
            for prediction in _padded(str(answers[0]) if answers else "text"):
                raw = float(scorer(prediction, answers, **extras))
                through = bench.score(subset, prediction, answers, **extras)
                assert _same(raw, through), (subset, prediction, answers, raw, through)
                checked += 1
    assert checked > 0


def test_loogle_scores_the_prediction_as_generated(hub: Path) -> None:
    bench = get_benchmark("loogle", data_dir=hub)
    assert bench.postprocess("longdep_qa", " The cat sat. ") == " The cat sat. "
    # The rouge package splits at "."; "The cat sat. " has an empty last sentence, whose ""
    # word matches the reference's: recall 3/4 when the prediction is stripped, 1 as generated.
    assert bench.score("longdep_qa", "The cat sat. ", ["The cat sat. "]) == 1.0
    assert bench.score("longdep_qa", "The cat sat.", ["The cat sat. "]) == 0.75

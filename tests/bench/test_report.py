"""Report building blocks: Pareto front, leaderboard, markdown."""

from __future__ import annotations

import random
from pathlib import Path

from sah_bench.report import leaderboard, pareto_front, to_markdown


def brute_force_front(points: list[tuple[float, float]]) -> list[int]:
    keep = []
    for i, (d, s) in enumerate(points):
        beaten = False
        for j, (d2, s2) in enumerate(points):
            if j != i and d2 <= d and s2 >= s and (d2, s2) != (d, s):
                beaten = True
        if not beaten:
            keep.append(i)
    return keep


def test_pareto_front_matches_brute_force() -> None:
    rng = random.Random(0)
    for _ in range(50):
        points = [
            (rng.choice([0.1, 0.2, 0.5, 1.0]), rng.choice([0.0, 0.5, 1.0]))
            for _ in range(rng.randint(1, 8))
        ]
        assert pareto_front(points) == brute_force_front(points)
    # Dense (density 1, score 1) and a cheap config (0.1, 0.8) are both on the front;
    # (0.5, 0.7) is dominated by (0.1, 0.8).
    assert pareto_front([(1.0, 1.0), (0.1, 0.8), (0.5, 0.7)]) == [0, 1]


def test_leaderboard_means_and_markdown() -> None:
    cells = [
        {
            "model": "m",
            "config": "dense",
            "benchmark": "b",
            "subset": "x",
            "score": 1.0,
            "density": 1.0,
            "n_questions": 2,
        },
        {
            "model": "m",
            "config": "dense",
            "benchmark": "b",
            "subset": "y",
            "score": 0.5,
            "density": 1.0,
            "n_questions": 2,
        },
        {
            "model": "m",
            "config": "sparse",
            "benchmark": "b",
            "subset": "x",
            "score": 0.25,
            "density": 0.1,
            "n_questions": 2,
        },
    ]
    rows = leaderboard(cells)
    assert [r["config"] for r in rows] == ["dense", "sparse"]
    assert rows[0]["score"] == 0.75 and rows[0]["questions"] == 4 and rows[0]["b_y"] == 0.5
    table = to_markdown(rows)
    assert table.splitlines()[0].startswith("| model | config | score | density |")
    assert "| m | sparse | 0.250 | 0.100 | 1 | 2 | 0.250 | - |" in table


def _legacy_cell(root: Path, config: str, sparse: object, metrics: object) -> Path:
    """A cell as 0.1.0 wrote it: a marker without checksums."""
    import json

    import pandas as pd

    cell = root / "m" / config / "b_x"
    cell.mkdir(parents=True)
    pd.DataFrame({"score": [1.0]}).to_parquet(cell / "raw_results.parquet")
    (cell / "raw_results.csv").write_text("score\n1.0\n")
    (cell / "micro_metrics.jsonl").write_text("")
    (cell / "metrics.json").write_text(json.dumps(metrics))
    (cell / "config.json").write_text(json.dumps({"sparse_config": sparse}))
    (cell / ".complete").write_text(json.dumps({"fingerprint": "x"}))
    return cell


def test_a_sparse_config_named_dense_is_not_shown_as_dense(tmp_path: Path) -> None:
    from sah_bench.report import MISLABELLED_DENSE, scan_cells

    metrics = {"model": "m", "config": "dense", "benchmark": "b", "subset": "x", "score": 1.0}
    sparse = {"type": "ResearchAttentionConfig", "masker_configs": [{"type": "SinkMaskerConfig"}]}
    _legacy_cell(tmp_path / "a", "dense", sparse, metrics)
    _legacy_cell(tmp_path / "b", "dense", None, metrics)
    assert [c["config"] for c in scan_cells(tmp_path / "a").cells] == [MISLABELLED_DENSE]
    assert [c["config"] for c in scan_cells(tmp_path / "b").cells] == ["dense"]


def test_empty_metrics_is_named_not_a_traceback(tmp_path: Path) -> None:
    import pytest

    from sah_bench.report import scan_cells, write_report

    cell = _legacy_cell(tmp_path, "c", None, {})
    scan = scan_cells(tmp_path)
    assert scan.cells == [] and scan.unreadable[0][0] == str(cell)
    assert "metrics.json holds no cell metrics" in scan.unreadable[0][1]
    with pytest.raises(ValueError, match=r"no readable complete cell.*metrics\.json"):
        write_report(tmp_path)

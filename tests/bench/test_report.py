"""Report building blocks: Pareto front, leaderboard, markdown."""

from __future__ import annotations

import random

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

"""Accuracy-vs-density Pareto front per method, for runs of a search's best configs.

A config named ``<method>_<target>`` (as ``search`` writes them: ``quest_0.05``) belongs to
``<method>``; any other name is its own method. Per (model, method) the points are the
leaderboard rows (mean score, mean measured density); the front keeps the points no other
point of the same method dominates (density <= and score >=, one strictly), joined in order
of density. ``dense`` is drawn as one reference point.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sah_bench.report import _pyplot, finish_plot, pareto_front

_NAME = re.compile(r"^(?P<method>.+)_(?P<target>\d*\.?\d+)$")


def method_of(config: str) -> tuple[str, float | None]:
    """``"quest_0.05"`` -> ``("quest", 0.05)``; ``"dense"`` -> ``("dense", None)``."""
    match = _NAME.match(config)
    if match is None:
        return config, None
    return match["method"], float(match["target"])


def fronts(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(model, method) -> its Pareto-optimal rows, by increasing density."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("score") is None or row.get("density") is None:
            continue
        method, _ = method_of(str(row["config"]))
        groups.setdefault((str(row["model"]), method), []).append(row)
    out = {}
    for key, members in groups.items():
        points = [(float(r["density"]), float(r["score"])) for r in members]
        keep = pareto_front(points)
        out[key] = sorted((members[i] for i in keep), key=lambda r: float(r["density"]))
    return out


def plot_method_pareto(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Score vs measured density: every config a marker, each method's front a line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    models = sorted({str(r["model"]) for r in rows})
    by_method = fronts(rows)
    for i, ((model, method), front) in enumerate(sorted(by_method.items())):
        label = method if len(models) == 1 else f"{model} / {method}"
        color = f"C{i % 10}"
        members = [
            r
            for r in rows
            if str(r["model"]) == model
            and method_of(str(r["config"]))[0] == method
            and r.get("score") is not None
            and r.get("density") is not None
        ]
        ax.scatter(
            [r["density"] for r in members], [r["score"] for r in members], color=color, alpha=0.5
        )
        ax.plot(
            [r["density"] for r in front],
            [r["score"] for r in front],
            marker="o",
            color=color,
            label=label,
        )
    return finish_plot(
        fig,
        ax,
        path,
        xlabel="measured attention density",
        ylabel="score (mean over cells)",
        title="Accuracy vs density: Pareto front per method",
        has_data=bool(by_method),
        empty_text="no scored config with a density",
    )

"""What a search leaves behind (no Ray needed to write or read it).

``<out>/trials.parquet``
    one row per trial of every (method, target): its point (``p:<role>.<field>`` columns),
    ``valid`` / ``reason`` (pruned points have ``valid=False`` and were never run),
    ``status`` (``ok``, ``pruned`` or ``error``), the measured density, output error, mass
    recall, accuracy and the score.
``<out>/best/<method>_<target>.json``
    the best valid trial's sparse config, an ordinary ``ResearchAttentionConfig.to_dict()``
    file (``run --configs-dir <out>/best`` runs them all); ``best/dense.json`` for ``dense``.
``<out>/best.json``
    per (method, target): file, score and what the best trial measured.
``<out>/error_vs_density.png``
    output error against measured density of every evaluated trial, per method.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sah_bench.executor.storage import atomic_write, atomic_write_json
from sah_bench.search.methods import DENSE, format_target

PARAM_PREFIX = "p:"
TRIALS_FILE = "trials.parquet"
BEST_DIR = "best"
PLOT_FILE = "error_vs_density.png"


def config_name(method: str, target: float) -> str:
    """``quest_0.05`` (``dense`` has no target)."""
    return DENSE if method == DENSE else f"{method}_{format_target(target)}"


def best_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lowest-score evaluated valid row of each (method, target)."""
    best: dict[tuple[str, float], dict[str, Any]] = {}
    for row in rows:
        if row.get("status") != "ok" or not row.get("valid") or row.get("sparse_config") is None:
            continue
        key = (str(row["method"]), float(row["target"]))
        score = float(row["score"])
        if math.isnan(score):
            continue
        if key not in best or score < float(best[key]["score"]):
            best[key] = row
    return [best[k] for k in sorted(best)]


def write_outputs(
    rows: Sequence[dict[str, Any]], out_dir: Path, methods: Sequence[str]
) -> dict[str, Path]:
    """Write the trials table, the best configs and the plot; return their paths."""
    import pandas as pd

    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    frame = pd.DataFrame(list(rows))
    table = out_dir / TRIALS_FILE
    atomic_write(table, lambda p: frame.to_parquet(p, index=False))
    paths["trials"] = table
    summary: list[dict[str, Any]] = []
    best_dir = out_dir / BEST_DIR
    best_dir.mkdir(parents=True, exist_ok=True)
    if DENSE in methods:
        path = best_dir / f"{DENSE}.json"
        atomic_write_json(path, {"type": "ResearchAttentionConfig", "masker_configs": []})
        summary.append({"method": DENSE, "target": None, "file": str(path), "density": 1.0})
    for row in best_rows(rows):
        name = config_name(str(row["method"]), float(row["target"]))
        path = best_dir / f"{name}.json"
        atomic_write_json(path, json.loads(str(row["sparse_config"])))
        summary.append(
            {
                "method": row["method"],
                "target": row["target"],
                "file": str(path),
                **{
                    k: row.get(k)
                    for k in ("score", "density", "output_error", "attention_mass_recall")
                },
                "accuracy": row.get("accuracy"),
                "trial_id": row.get("trial_id"),
                "params": {
                    k[len(PARAM_PREFIX) :]: v
                    for k, v in row.items()
                    if k.startswith(PARAM_PREFIX) and v is not None and v == v
                },
            }
        )
    atomic_write_json(out_dir / "best.json", summary)
    paths["best"] = best_dir
    paths["plot"] = plot_error_vs_density(rows, out_dir / PLOT_FILE)
    return paths


def read_trials(out_dir: Path) -> list[dict[str, Any]]:
    """The rows of ``<out>/trials.parquet`` (empty when there is none)."""
    import pandas as pd

    path = Path(out_dir) / TRIALS_FILE
    if not path.is_file():
        return []
    frame = pd.read_parquet(path)
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict(orient="records")
    ]


def plot_error_vs_density(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Output error against measured density of every evaluated trial, one colour per method;
    the best trial of each (method, target) is a star, targets are dotted lines."""
    from sah_bench.report import _pyplot, finish_plot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    evaluated = [
        r
        for r in rows
        if r.get("status") == "ok"
        and r.get("density") is not None
        and r.get("output_error") is not None
    ]
    best = {(r["method"], r["target"]) for r in best_rows(rows)}
    for i, method in enumerate(sorted({str(r["method"]) for r in evaluated})):
        color = f"C{i % 10}"
        mine = [r for r in evaluated if r["method"] == method]
        ax.scatter(
            [r["density"] for r in mine],
            [r["output_error"] for r in mine],
            color=color,
            alpha=0.5,
            label=method,
        )
        stars = [r for r in best_rows(mine) if (r["method"], r["target"]) in best]
        ax.scatter(
            [r["density"] for r in stars],
            [r["output_error"] for r in stars],
            color=color,
            marker="*",
            s=160,
            edgecolors="black",
        )
    for target in sorted({float(r["target"]) for r in rows if r.get("target") is not None}):
        ax.axvline(target, linestyle=":", color="grey", alpha=0.6)
    return finish_plot(
        fig,
        ax,
        path,
        xlabel="measured attention density",
        ylabel="relative output error vs dense",
        title="Search trials (star: best per method and target)",
        has_data=bool(evaluated),
        empty_text="no evaluated trial",
    )

"""Reports over a results folder: leaderboard (markdown / CSV), accuracy-vs-density Pareto plot
and per-layer density plot (PNG through matplotlib's Agg backend, so no display is needed).

Only complete cells (with their completion marker) are read; partial or failed cells are left
out, so a report of a run in progress never mixes in half-finished numbers. A cell whose marker
is there but whose files are damaged (checksum mismatch, unparsable or empty ``metrics.json``)
is never dropped silently: :func:`scan_cells` names it with the reason, the written report lists
it, and the CLI says so and exits 1. A cell named ``dense`` whose config holds maskers is shown
as ``dense (sparse config!)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sah_bench.executor.storage import (
    COMPLETE_MARKER,
    atomic_write,
    atomic_write_text,
    read_json,
    verify_cell,
)

logger = logging.getLogger(__name__)

#: What every cell's metrics.json holds; a file without them is reported, not read.
REQUIRED_METRICS = ("model", "config", "benchmark", "subset")
MISLABELLED_DENSE = "dense (sparse config!)"


@dataclass
class CellScan:
    """The complete cells of a results folder, and those that could not be read (why)."""

    cells: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def _read_cell(cell_dir: Path) -> dict[str, Any]:
    problem = verify_cell(cell_dir)
    if problem is not None:
        raise ValueError(problem)
    metrics = read_json(cell_dir / "metrics.json")
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics.json holds a {type(metrics).__name__}, not a JSON object")
    missing = [k for k in REQUIRED_METRICS if k not in metrics]
    if missing:
        raise ValueError(
            f"metrics.json lacks {missing} (it holds {sorted(metrics) or 'nothing'}); "
            "rerun the run to redo this cell"
        )
    if metrics["config"] == "dense":
        try:
            sparse = read_json(cell_dir / "config.json").get("sparse_config")
        except (OSError, ValueError, AttributeError):
            sparse = None
        if isinstance(sparse, dict) and sparse.get("masker_configs"):
            metrics["config"] = MISLABELLED_DENSE
    return metrics


def scan_cells(out_dir: str | Path) -> CellScan:
    """Every cell under ``out_dir`` with a completion marker: readable ones (metrics plus
    ``cell_dir``) and unreadable ones (folder, reason)."""
    root = Path(out_dir)
    if not root.is_dir():
        raise ValueError(f"results dir {str(root)!r} does not exist or is not a folder")
    scan = CellScan()
    for marker in sorted(root.rglob(COMPLETE_MARKER)):
        try:
            metrics = _read_cell(marker.parent)
        except (OSError, ValueError) as exc:
            scan.unreadable.append((str(marker.parent), str(exc)))
            logger.warning("cell %s cannot be read: %s", marker.parent, exc)
            continue
        metrics["cell_dir"] = str(marker.parent)
        scan.cells.append(metrics)
    return scan


def collect_cells(out_dir: str | Path) -> list[dict[str, Any]]:
    """The metrics of every readable complete cell under ``out_dir`` (unreadable ones are
    logged as warnings; use :func:`scan_cells` to get them)."""
    return scan_cells(out_dir).cells


def _number(value: Any) -> float:
    """A float, NaN for a missing value (pandas skips NaN in means)."""
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def _plain(value: Any) -> Any:
    """NaN -> None, numpy scalars -> Python numbers (rows stay JSON-friendly)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def leaderboard(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, config): mean score and density over its cells (missing values
    skipped), best score first within a model (no score last).

    Per-cell scores appear as extra columns named ``<benchmark>_<subset>``, in sorted order;
    a row without that cell holds None. Built with a pandas group-by and pivot.
    """
    import pandas as pd

    if not cells:
        return []
    frame = pd.DataFrame(
        {
            "model": [str(c["model"]) for c in cells],
            "config": [str(c["config"]) for c in cells],
            "column": [f"{c['benchmark']}_{c['subset']}" for c in cells],
            "score": [_number(c.get("score")) for c in cells],
            "density": [_number(c.get("density")) for c in cells],
            "questions": [int(c.get("n_questions", 0)) for c in cells],
        }
    )
    keys = ["model", "config"]
    table = frame.groupby(keys, sort=False).agg(
        score=("score", "mean"),
        density=("density", "mean"),
        cells=("score", "size"),
        questions=("questions", "sum"),
    )
    per_cell = frame.pivot_table(
        index=keys, columns="column", values="score", aggfunc="last", dropna=False
    )
    per_cell = per_cell.reindex(index=table.index, columns=sorted(per_cell.columns))
    table = table.join(per_cell).reset_index()
    table = table.sort_values(
        ["model", "score"], ascending=[True, False], na_position="last", kind="stable"
    )
    return [
        {column: _plain(value) for column, value in row.items()}
        for row in table.to_dict(orient="records")
    ]


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return columns


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table (missing values as ``-``, floats to 3 places)."""
    import pandas as pd

    cols = list(columns or _columns(rows))
    shown = pd.DataFrame(list(rows), columns=cols).astype(object).map(_fmt)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(values) + " |" for values in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV through pandas (missing values empty)."""
    import pandas as pd

    frame = pd.DataFrame(list(rows), columns=_columns(rows))
    return str(frame.to_csv(index=False, lineterminator="\n"))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (density, score) not dominated by another point.

    A point is dominated when another has density <= and score >= with at least one strict.
    """
    front = []
    for i, (d_i, s_i) in enumerate(points):
        dominated = any(
            d_j <= d_i and s_j >= s_i and (d_j < d_i or s_j > s_i)
            for j, (d_j, s_j) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def finish_plot(
    fig: Any,
    ax: Any,
    path: Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    has_data: bool,
    empty_text: str | None = None,
    legend_fontsize: int = 8,
) -> Path:
    """Label, legend (or ``empty_text`` when nothing was drawn), then write the PNG atomically."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if has_data:
        ax.legend(fontsize=legend_fontsize)
    elif empty_text is not None:
        ax.text(0.5, 0.5, empty_text, ha="center", transform=ax.transAxes)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    _pyplot().close(fig)
    return path


def plot_pareto(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Accuracy vs measured density, one marker per (model, config), frontier joined."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for model in sorted({r["model"] for r in rows}):
        pts = [r for r in rows if r["model"] == model and r["score"] is not None]
        pts = [r for r in pts if r["density"] is not None]
        if not pts:
            continue
        xs, ys = [r["density"] for r in pts], [r["score"] for r in pts]
        ax.scatter(xs, ys, label=model)
        for r in pts:
            ax.annotate(
                r["config"],
                (r["density"], r["score"]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
        front = sorted(pareto_front(list(zip(xs, ys, strict=True))), key=lambda i: xs[i])
        ax.plot([xs[i] for i in front], [ys[i] for i in front], linestyle="--", alpha=0.6)
    return finish_plot(
        fig,
        ax,
        path,
        xlabel="measured attention density",
        ylabel="score (mean over cells)",
        title="Accuracy vs density",
        has_data=bool(ax.get_legend_handles_labels()[0]),
    )


def plot_per_layer_density(cells: Sequence[dict[str, Any]], path: Path) -> Path:
    """Mean density per layer for each (model, config), averaged over its cells."""
    plt = _pyplot()
    per_config: dict[str, dict[int, list[float]]] = {}
    for cell in cells:
        label = f"{cell['model']} / {cell['config']}"
        for layer, value in (cell.get("per_layer_density") or {}).items():
            per_config.setdefault(label, {}).setdefault(int(layer), []).append(float(value))
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, layers in sorted(per_config.items()):
        xs = sorted(layers)
        ax.plot(xs, [sum(layers[x]) / len(layers[x]) for x in xs], marker="o", label=label)
    return finish_plot(
        fig,
        ax,
        path,
        xlabel="layer",
        ylabel="density",
        title="Per-layer attention density",
        has_data=bool(per_config),
        empty_text="no per-layer density recorded",
        legend_fontsize=7,
    )


def write_report(out_dir: str | Path, report_dir: str | Path | None = None) -> dict[str, Path]:
    """Write leaderboard.md / .csv, pareto.png and per_layer_density.png; return their paths.

    Unreadable cells are listed under the leaderboard in leaderboard.md; a folder with none
    readable -> ValueError naming them.
    """
    scan = scan_cells(out_dir)
    cells = scan.cells
    if not cells:
        why = "".join(f"; {folder}: {reason}" for folder, reason in scan.unreadable[:3])
        raise ValueError(f"results dir {str(out_dir)!r} holds no readable complete cell{why}")
    target = Path(report_dir) if report_dir is not None else Path(out_dir) / "report"
    rows = leaderboard(cells)
    paths = {
        "markdown": target / "leaderboard.md",
        "csv": target / "leaderboard.csv",
        "pareto": target / "pareto.png",
        "per_layer_density": target / "per_layer_density.png",
    }
    markdown = to_markdown(rows)
    if scan.unreadable:
        markdown += "\nUnreadable cells (not in the table):\n\n" + "".join(
            f"- `{folder}`: {reason}\n" for folder, reason in scan.unreadable
        )
    atomic_write_text(paths["markdown"], markdown)
    atomic_write_text(paths["csv"], to_csv(rows))
    plot_pareto(rows, paths["pareto"])
    plot_per_layer_density(cells, paths["per_layer_density"])
    return paths

"""``sparse-attention-benchmark``: demo, run, list and report.

Bad input (unknown benchmark or masker, malformed config or run file, unwritable output folder, a
model that cannot be loaded) prints one ``error:`` line and exits with code 2; results already
written are never touched by such a failure.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from sah_bench.executor.cell import CellResult
from sah_bench.executor.factory import DEFAULT_ADAPTER_FACTORY

app = typer.Typer(
    name="sparse-attention-benchmark",
    help="Benchmark sparse-attention methods on long-context tasks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Lets tests (and custom deployments) swap the model adapter without a flag.
FACTORY_ENV_VAR = "SAH_ADAPTER_FACTORY"
BAD_INPUT_EXIT_CODE = 2
CELL_FAILURE_EXIT_CODE = 1


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=BAD_INPUT_EXIT_CODE)


def _factory(flag: str | None) -> str:
    return flag or os.environ.get(FACTORY_ENV_VAR) or DEFAULT_ADAPTER_FACTORY


def _check_results(results: list[CellResult]) -> None:
    """Exit 2 when a model could not be loaded, 1 when other cells failed."""
    failed = [r for r in results if r.status == "failed"]
    load_errors = sorted({r.error for r in failed if r.error and "ModelLoadError" in r.error})
    if load_errors:
        raise _fail(load_errors[0].removeprefix("ModelLoadError: "))
    if failed:
        for r in failed:
            typer.echo(f"failed: {r.key}: {r.error}", err=True)
        raise typer.Exit(code=CELL_FAILURE_EXIT_CODE)


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder.")] = Path(
        "sah_demo_results"
    ),
    requests: Annotated[
        int, typer.Option("--requests", "-n", min=1, help="Contexts per config (6 questions each).")
    ] = 1,
    target_tokens: Annotated[
        int, typer.Option("--target-tokens", min=64, help="Context length in model tokens.")
    ] = 2048,
    model: Annotated[str, typer.Option("--model", "-m", help="Model to run.")] = "smollm2-135m",
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Cap on generated tokens.")] = 8,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    adapter_factory: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Offline demo: smollm2-135m on the synthetic suite, dense vs four sparse configs."""
    from rich.console import Console
    from rich.table import Table

    from sah_bench.demo import run_demo
    from sah_bench.report import collect_cells, leaderboard, plot_pareto, plot_per_layer_density

    logging.basicConfig(level=logging.WARNING)
    try:
        rows, results, seconds = run_demo(
            out,
            model=model,
            requests_per_task=requests,
            target_tokens=target_tokens,
            max_new_tokens=max_new_tokens,
            adapter_factory=_factory(adapter_factory),
            progress=progress,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _check_results(results)
    table = Table(title=f"{model} on the synthetic suite (~{target_tokens} tokens)")
    for column in ("config", "accuracy", "density", "questions", "s/question"):
        table.add_column(column, justify="left" if column == "config" else "right")
    for row in rows:
        table.add_row(
            row.config,
            _fmt(row.accuracy),
            _fmt(row.density),
            str(row.questions),
            _fmt(row.seconds_per_question, "{:.2f}"),
        )
    console = Console()
    console.print(table)
    cells = collect_cells(out)
    plot = plot_pareto(leaderboard(cells), out / "report" / "pareto.png")
    plot_per_layer_density(cells, out / "report" / "per_layer_density.png")
    skipped = sum(r.status == "skipped" for r in results)
    note = f" ({skipped} cells reused from an earlier run)" if skipped else ""
    console.print(f"results: {out}  plot: {plot}  wall time: {seconds:.1f} s{note}")


@app.command("run")
def run_command(
    run_file: Annotated[
        Path | None, typer.Argument(help="YAML/JSON run file (flags override it).")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Model (repeatable).")
    ] = None,
    config: Annotated[
        list[str] | None,
        typer.Option("--config", "-c", help="Sparse config JSON file, or 'dense' (repeatable)."),
    ] = None,
    benchmark: Annotated[
        list[str] | None,
        typer.Option("--benchmark", "-b", help="NAME or NAME:SUB1,SUB2 (repeatable)."),
    ] = None,
    bench_option: Annotated[
        list[str] | None,
        typer.Option("--bench-option", help="KEY=VALUE passed to every benchmark (repeatable)."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Results folder.")] = None,
    max_requests: Annotated[
        int | None, typer.Option("--max-requests", "-n", min=1, help="Requests per cell.")
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option("--device", "-d", help="GPU id or 'cpu': one worker each (repeatable)."),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="inline, local (worker per device) or ray.")
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(min=1, help="Cap on generated tokens per answer.")
    ] = None,
    gpus_per_cell: Annotated[float | None, typer.Option(help="Ray: GPUs per cell.")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Ray: cluster address.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    adapter_factory: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run models x sparse configs x benchmarks; resumes complete cells, redoes partial ones."""
    from sah_bench.executor.executor import BenchmarkExecutor
    from sah_bench.run_config import (
        load_run_file,
        parse_benchmarks,
        parse_configs,
        parse_option,
    )

    logging.basicConfig(level=logging.WARNING)
    try:
        settings: dict[str, Any] = {}
        base = None
        if run_file is not None:
            settings = load_run_file(run_file)
            base = run_file.parent
        options = dict(parse_option(o) for o in bench_option or [])
        models = list(model or settings.get("models") or ["smollm2-135m"])
        configs = parse_configs(config or settings.get("configs") or ["dense"], base)
        benchmarks = parse_benchmarks(
            benchmark or settings.get("benchmarks") or ["synthetic"], options
        )
        generation_kwargs = dict(settings.get("generation_kwargs") or {})
        if max_new_tokens is not None:
            generation_kwargs["max_new_tokens"] = max_new_tokens
        devices = [str(d) for d in (device or settings.get("devices") or ["cpu"])]
        executor = BenchmarkExecutor(
            out or Path(settings.get("out") or "sah_results"),
            adapter_factory=_factory(adapter_factory),
            backend=backend or settings.get("backend") or "local",
            devices=devices,
            max_requests=max_requests or settings.get("max_requests"),
            generation_kwargs=generation_kwargs,
            progress=progress,
            gpus_per_cell=float(gpus_per_cell or settings.get("gpus_per_cell") or 0.0),
            ray_address=ray_address or settings.get("ray_address"),
        )
        cells = executor.plan(models, configs, benchmarks)
        results = executor.run_cells(cells)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    typer.echo(
        f"{len(results)} cells: {counts['done']} done, {counts['skipped']} skipped (already "
        f"complete), {counts['failed']} failed; results in {executor.out_dir}"
    )
    if any(r.status == "interrupted" for r in results):
        typer.echo("interrupted: rerun the same command to finish", err=True)
        raise typer.Exit(code=130)
    _check_results(results)


@app.command("list")
def list_command(
    what: Annotated[str, typer.Argument(help="benchmarks, maskers, models or all.")] = "all",
) -> None:
    """List benchmarks (with subsets), maskers and built-in models."""
    allowed = ("all", "benchmarks", "maskers", "models")
    if what not in allowed:
        raise _fail(f"cannot list {what!r}; allowed: {list(allowed)}")
    if what in ("all", "benchmarks"):
        from sah_bench.registry import get_benchmark, list_benchmarks

        typer.echo("benchmarks:")
        for name in list_benchmarks():
            subsets = list(get_benchmark(name).subsets)
            shown = ", ".join(subsets[:6]) + (", ..." if len(subsets) > 6 else "")
            typer.echo(f"  {name} ({len(subsets)} subsets): {shown}")
    if what in ("all", "maskers"):
        from importlib.metadata import entry_points

        from sah_protocol import MASKERS_ENTRY_POINT_GROUP

        typer.echo("maskers:")
        for ep in sorted(entry_points(group=MASKERS_ENTRY_POINT_GROUP), key=lambda e: e.name):
            typer.echo(f"  {ep.name}: {ep.value}")
    if what in ("all", "models"):
        from sah_adapters.builtin_models import BUILTIN_MODELS

        typer.echo("built-in models:")
        for name, spec in sorted(BUILTIN_MODELS.items()):
            typer.echo(f"  {name}: {spec.description}")


@app.command()
def report(
    results_dir: Annotated[Path, typer.Argument(help="Results folder of a run.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Report folder (default: <dir>/report).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Printed table: markdown or csv.")] = (
        "markdown"
    ),
) -> None:
    """Leaderboard (markdown + CSV), accuracy-vs-density Pareto plot, per-layer density plot."""
    from sah_bench.report import collect_cells, leaderboard, to_csv, to_markdown, write_report

    if fmt not in ("markdown", "csv"):
        raise _fail(f"--format {fmt!r} is not allowed; use 'markdown' or 'csv'")
    try:
        paths = write_report(results_dir, out)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    rows = leaderboard(collect_cells(results_dir))
    typer.echo(to_markdown(rows) if fmt == "markdown" else to_csv(rows), nl=False)
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")


if __name__ == "__main__":
    app()

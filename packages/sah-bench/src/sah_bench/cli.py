"""``sparse-attention-benchmark``: demo, run, list and report.

Bad input (unknown benchmark, option or masker, malformed config or run file, a device this
machine lacks, unwritable output folder, colliding names) is found in one validation pass before
any model loads, prints one ``error:`` line and exits with code 2. Cells that fail later are
categorised (config, model_load, data, run): the first three are bad input too (exit 2, with the
path and reason), run errors exit 1. Results already written are never touched by a failure.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from sah_bench.chat import chat_command
from sah_bench.convert_hat import convert_hat_command
from sah_bench.executor.cell import CellResult
from sah_bench.executor.factory import DEFAULT_ADAPTER_FACTORY
from sah_bench.lm_eval_command import lm_eval_command
from sah_bench.profile import profile_command
from sah_bench.search.command import search_command

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


@app.callback()
def main(
    models: Annotated[
        list[Path] | None,
        typer.Option(
            "--models",
            help="Model registry file (TOML/YAML) merged after the shipped one and SAH_MODELS "
            "(repeatable; give it before the command).",
        ),
    ] = None,
) -> None:
    """Benchmark sparse-attention methods on long-context tasks."""
    if models:
        from sah_adapters.model_registry import add_model_files

        try:
            add_model_files(models)  # exported through SAH_MODELS to worker processes too
        except ValueError as exc:
            raise _fail(str(exc)) from None


def _factory(flag: str | None) -> str:
    return flag or os.environ.get(FACTORY_ENV_VAR) or DEFAULT_ADAPTER_FACTORY


def _check_results(results: list[CellResult]) -> None:
    """Name every failed cell with its category; exit 2 when any failure is bad input (config,
    model load, data), 1 when only run errors remain."""
    from sah_bench.executor.errors import BAD_INPUT_CATEGORIES

    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        typer.echo(f"failed ({r.category or 'run'} error): {r.key}: {r.error}", err=True)
    bad_input = sorted({r.error or "" for r in failed if r.category in BAD_INPUT_CATEGORIES})
    if bad_input:
        first = next(r for r in failed if r.category in BAD_INPUT_CATEGORIES)
        message = (first.error or "").split(": ", 1)[-1]
        more = f" (+{len(bad_input) - 1} more, above)" if len(bad_input) > 1 else ""
        raise _fail(f"{first.category} error in {first.key}: {message}{more}")
    if failed:
        raise typer.Exit(code=CELL_FAILURE_EXIT_CODE)


def _report_redone(results: list[CellResult]) -> None:
    for r in results:
        if r.redone:
            typer.echo(f"redone (earlier result was damaged: {r.redone}): {r.key}", err=True)


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
    family: Annotated[
        str | None,
        typer.Option(
            "--family",
            help="Methods to show: selection, eviction or prefill. Default: the quick tour "
            "(the selection family without TidalDecode).",
        ),
    ] = None,
) -> None:
    """Offline demo: smollm2-135m on the synthetic suite, dense vs sparse configs of a family."""
    from rich.console import Console
    from rich.table import Table

    from sah_bench.demo import FAMILIES, run_demo
    from sah_bench.report import collect_cells, leaderboard, plot_pareto, plot_per_layer_density

    logging.basicConfig(level=logging.WARNING)
    if family is not None and family not in FAMILIES:
        raise _fail(f"--family={family!r} is not allowed: use one of {list(FAMILIES)}")
    try:
        rows, results, seconds = run_demo(
            out,
            model=model,
            requests_per_task=requests,
            target_tokens=target_tokens,
            max_new_tokens=max_new_tokens,
            adapter_factory=_factory(adapter_factory),
            progress=progress,
            family=family,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _check_results(results)
    shown = family or "selection (quick tour)"
    table = Table(title=f"{model} on the synthetic suite (~{target_tokens} tokens), {shown}")
    for column in ("config", "accuracy", "density", "KV MiB", "questions", "s/question"):
        table.add_column(column, justify="left" if column == "config" else "right")
    for row in rows:
        table.add_row(
            row.config,
            _fmt(row.accuracy),
            _fmt(row.density),
            _fmt(row.kv_mib, "{:.1f}"),
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
    configs_dir: Annotated[
        Path | None,
        typer.Option(
            "--configs-dir", help="Run every *.json sparse config of this folder (e.g. best/)."
        ),
    ] = None,
    benchmark: Annotated[
        list[str] | None,
        typer.Option("--benchmark", "-b", help="NAME or NAME:SUB1,SUB2 (repeatable)."),
    ] = None,
    bench_option: Annotated[
        list[str] | None,
        typer.Option(
            "--bench-option",
            help="KEY=VALUE for every benchmark that takes KEY, or NAME.KEY=VALUE for one "
            "(repeatable).",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Offline hub snapshots: DIR/<owner>/<name> for each benchmark."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Results folder.")] = None,
    max_requests: Annotated[
        int | None, typer.Option("--max-requests", "-n", min=1, help="Requests per cell.")
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option(
            "--device",
            "-d",
            help="cuda:N (or N), cuda, cpu or auto; the local backend runs one worker per "
            "entry, pinned to its GPU (repeatable).",
        ),
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="Weights dtype: bfloat16, float16, float32 or auto.")
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric", help="density, output_error, mass_recall (repeatable; default density)."
        ),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="inline, local (worker per device) or ray.")
    ] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(min=1, help="Cap on generated tokens per answer.")
    ] = None,
    gpus_per_cell: Annotated[float | None, typer.Option(help="Ray: GPUs per cell.")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Ray: cluster address.")] = None,
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle",
            help="Load pickle (.bin/.pt) checkpoints too; by default only safetensors, since "
            "unpickling can run arbitrary code.",
        ),
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    adapter_factory: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run models x sparse configs x benchmarks; resumes complete cells, redoes partial ones."""
    from sah_bench.executor.executor import BenchmarkExecutor
    from sah_bench.run_checks import check_adapter_kwargs, model_kwargs_with_dtype, resolve_devices
    from sah_bench.run_config import (
        RunFile,
        apply_options,
        configs_in_dir,
        load_run_file,
        parse_benchmarks,
        parse_configs,
    )

    logging.basicConfig(level=logging.WARNING)
    factory = _factory(adapter_factory)
    try:
        # One validation pass over everything before any model loads.
        settings, base = RunFile(), None
        if run_file is not None:
            settings, base = load_run_file(run_file), run_file.parent
        models = list(model or settings.models or ["smollm2-135m"])
        from_dir = [] if configs_dir is None else configs_in_dir(configs_dir)
        configs = parse_configs([*(config or []), *from_dir] or settings.configs or ["dense"], base)
        specs = parse_benchmarks(list(benchmark or []) or settings.benchmarks or ["synthetic"])
        data_root = data_dir if data_dir is not None else settings.data_dir
        specs = apply_options(
            specs, list(bench_option or []), None if data_root is None else str(data_root)
        )
        generation_kwargs = dict(settings.generation_kwargs or {})
        if max_new_tokens is not None:
            generation_kwargs["max_new_tokens"] = max_new_tokens
        request_kwargs = dict(settings.request_kwargs or {})
        check_adapter_kwargs(factory, generation_kwargs, request_kwargs)
        model_kwargs = model_kwargs_with_dtype(dict(settings.model_kwargs or {}), dtype)
        devices = resolve_devices(list(device or settings.devices or ["cpu"]))
        executor = BenchmarkExecutor(
            out or Path(settings.out or "sah_results"),
            adapter_factory=factory,
            backend=backend or settings.backend or "local",
            devices=devices,
            max_requests=max_requests or settings.max_requests,
            generation_kwargs=generation_kwargs,
            request_kwargs=request_kwargs,
            model_kwargs=model_kwargs,
            micro_metrics=list(metric or settings.metrics or ["density"]),
            progress=progress,
            gpus_per_cell=float(gpus_per_cell or settings.gpus_per_cell or 0.0),
            ray_address=ray_address or settings.ray_address,
            safetensors_only=not allow_pickle,
        )
        cells = executor.plan(models, configs, specs)
        results = executor.run_cells(cells)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    typer.echo(
        f"{len(results)} cells: {counts['done']} done, {counts['skipped']} skipped (already "
        f"complete), {counts['failed']} failed; results in {executor.out_dir}"
    )
    _report_redone(results)
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
        from sah_adapters.model_registry import active_registry

        try:
            registry = active_registry()
        except ValueError as exc:
            raise _fail(str(exc)) from None
        typer.echo("models (registry; built-in models load offline):")
        for name in registry.names():
            entry = registry.entries[name]
            where = "built-in" if entry.builtin else entry.source
            typer.echo(f"  {name}: {entry.description or entry.source} [{where}]")


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
    from sah_bench.report import leaderboard, scan_cells, to_csv, to_markdown, write_report

    if fmt not in ("markdown", "csv"):
        raise _fail(f"--format {fmt!r} is not allowed; use 'markdown' or 'csv'")
    try:
        paths = write_report(results_dir, out)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    scan = scan_cells(results_dir)
    rows = leaderboard(scan.cells)
    from sah_bench.pareto import plot_method_pareto

    report_dir = out if out is not None else results_dir / "report"
    paths["pareto_by_method"] = plot_method_pareto(rows, report_dir / "pareto_by_method.png")
    typer.echo(to_markdown(rows) if fmt == "markdown" else to_csv(rows), nl=False)
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")
    for folder, reason in scan.unreadable:
        typer.echo(f"unreadable cell (left out): {folder}: {reason}", err=True)
    if scan.unreadable:
        raise typer.Exit(code=CELL_FAILURE_EXIT_CODE)


app.command("profile")(profile_command)
app.command("convert-hat")(convert_hat_command)
app.command("lm-eval")(lm_eval_command)
app.command("chat")(chat_command)
app.command("search")(search_command)


if __name__ == "__main__":
    app()

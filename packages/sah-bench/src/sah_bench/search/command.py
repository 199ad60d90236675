"""``sparse-attention-benchmark search``: the best config of each method at each density.

Bad input (unknown method, field or benchmark, a malformed value, a target outside (0, 1))
prints one ``error:`` line and exits 2 before Ray starts; an interrupted search (Ctrl-C)
exits 130 and the same command resumes it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_FACTORY_ENV = "SAH_ADAPTER_FACTORY"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _pairs(items: list[str] | None, flag: str) -> dict[str, Any]:
    from sah_bench.run_config import parse_option

    out: dict[str, Any] = {}
    for text in items or []:
        try:
            key, value = parse_option(text)
        except ValueError:
            raise ValueError(f"{flag} {text!r} is not allowed: use ROLE.FIELD=VALUE") from None
        out[key] = value
    return out


def search_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Model to tune on.")] = (
        "smollm2-135m"
    ),
    method: Annotated[
        list[str] | None,
        typer.Option("--method", help="Method (repeatable); see --list-methods."),
    ] = None,
    target: Annotated[
        list[float] | None,
        typer.Option("--target", "-t", help="Target density in (0, 1) (repeatable)."),
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="Trials per method and target.")] = 16,
    calibration: Annotated[
        str,
        typer.Option(help="Calibration benchmark NAME[:SUB1,SUB2] (synthetic or any other)."),
    ] = "synthetic:niah_multikey",
    calibration_option: Annotated[
        list[str] | None,
        typer.Option(
            "--calibration-option",
            help="KEY=VALUE option of the calibration benchmark, e.g. target_tokens=1024.",
        ),
    ] = None,
    requests: Annotated[
        int, typer.Option("--requests", "-n", min=1, help="Calibration requests per subset.")
    ] = 2,
    out: Annotated[Path, typer.Option("--out", "-o", help="Search folder.")] = Path("sah_search"),
    fixed: Annotated[
        list[str] | None,
        typer.Option("--set", help="Pin ROLE.FIELD=VALUE, e.g. sink.sink_size=128 (repeatable)."),
    ] = None,
    space: Annotated[
        list[str] | None,
        typer.Option(
            "--space",
            help='Replace a domain: ROLE.FIELD=[8,16] or ROLE.FIELD={"low":1,"high":9,"log":true}.',
        ),
    ] = None,
    objective: Annotated[
        str, typer.Option(help="error (output error), recall (mass recall) or accuracy.")
    ] = "error",
    density_penalty: Annotated[
        float, typer.Option(min=0.0, help="Score penalty per unit of density over the target.")
    ] = 10.0,
    error_weight: Annotated[float | None, typer.Option(min=0.0)] = None,
    recall_weight: Annotated[float | None, typer.Option(min=0.0)] = None,
    accuracy_weight: Annotated[float | None, typer.Option(min=0.0)] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Tokens generated per answer.")] = 4,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or cuda:N in each worker.")] = None,
    dtype: Annotated[str | None, typer.Option(help="bfloat16, float16, float32 or auto.")] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: a local Ray).")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="ray (Ray Tune) or optuna (same TPE, this process, no Ray).")
    ] = "ray",
    num_cpus: Annotated[int | None, typer.Option(min=1, help="CPUs of the local Ray.")] = None,
    cpus_per_trial: Annotated[float, typer.Option(min=0.0)] = 1.0,
    gpus_per_trial: Annotated[float, typer.Option(min=0.0)] = 0.0,
    concurrent: Annotated[int, typer.Option(min=1, help="Trials running at once.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the search algorithm and the trials.")] = 0,
    list_methods: Annotated[bool, typer.Option("--list-methods", help="List methods.")] = False,
    adapter_factory: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Search each method's hyperparameters at each target density (Ray Tune + Optuna TPE);
    writes <out>/best/<method>_<target>.json, <out>/trials.parquet, <out>/error_vs_density.png."""
    import os

    from sah_bench.executor.executor import BenchmarkSpec
    from sah_bench.executor.factory import DEFAULT_ADAPTER_FACTORY
    from sah_bench.run_checks import model_kwargs_with_dtype
    from sah_bench.run_config import apply_options
    from sah_bench.search.methods import METHODS, build_method, parse_domain
    from sah_bench.search.objective import Objective
    from sah_bench.search.runner import SearchSettings
    from sah_bench.search.trial import Calibration

    if list_methods:
        for name in METHODS:
            params = ", ".join(build_method(name, _hat_stub(name)).searched) or "-"
            typer.echo(f"{name}: {params}")
        return
    logging.basicConfig(level=logging.WARNING)
    try:
        spec = BenchmarkSpec.parse(calibration)
        option_texts = [f"{spec.name}.{t}" for t in calibration_option or []]
        (spec,) = apply_options([spec], option_texts)
        base = Objective.for_kind(objective, density_penalty)
        weights = {
            "error_weight": base.error_weight if error_weight is None else error_weight,
            "recall_weight": base.recall_weight if recall_weight is None else recall_weight,
            "accuracy_weight": base.accuracy_weight if accuracy_weight is None else accuracy_weight,
        }
        settings = SearchSettings(
            model=model,
            methods=list(method or []),
            targets=list(target or []),
            out_dir=out,
            trials=trials,
            calibration=Calibration(
                spec.name, spec.subsets, dict(spec.options), max_requests=requests
            ),
            objective=Objective(density_penalty=density_penalty, **weights),
            fixed=_pairs(fixed, "--set"),
            spaces={k: parse_domain(k, v) for k, v in _pairs(space, "--space").items()},
            adapter_factory=(
                adapter_factory or os.environ.get(DEFAULT_FACTORY_ENV) or DEFAULT_ADAPTER_FACTORY
            ),
            model_kwargs=model_kwargs_with_dtype({}, dtype),
            device=device,
            generation_kwargs={"max_new_tokens": max_new_tokens},
            address=address,
            num_cpus=num_cpus,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            max_concurrent=concurrent,
            seed=seed,
            backend=backend,
        )
        settings.build_methods()  # every check before Ray starts
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        from sah_bench.search.runner import run_search

        result = run_search(settings)
    except KeyboardInterrupt:
        typer.echo("interrupted: rerun the same command to resume the search", err=True)
        raise typer.Exit(code=130) from None
    except ImportError as exc:
        raise _fail(
            f"the search needs the ray extra (pip install 'sah-bench[ray]'): {exc}"
        ) from None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    _print_best(out)
    for kind, path in result.paths.items():
        typer.echo(f"{kind}: {path}")
    if result.interrupted:
        typer.echo("interrupted: rerun the same command to resume the search", err=True)
        raise typer.Exit(code=130)


def _hat_stub(name: str) -> dict[str, Any]:
    return (
        {"hash_attention.hat_weight_file": "weights_{hat_bits}.safetensors"}
        if ("hash_attention" in name)
        else {}
    )


def _print_best(out: Path) -> None:
    try:
        summary = json.loads((out / "best.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    typer.echo("| config | score | density | output error | file |")
    typer.echo("|---|---|---|---|---|")
    for entry in summary:

        def fmt(key: str, entry: dict[str, Any] = entry) -> str:
            value = entry.get(key)
            return "-" if value is None else f"{value:.4f}"

        name = Path(entry["file"]).stem
        typer.echo(
            f"| {name} | {fmt('score')} | {fmt('density')} | {fmt('output_error')} | "
            f"{entry['file']} |"
        )

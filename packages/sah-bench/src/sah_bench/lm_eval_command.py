"""The ``sparse-attention-benchmark lm-eval`` command (lm-eval is imported only when it runs)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer

FACTORY_ENV_VAR = "SAH_ADAPTER_FACTORY"
QUESTION_FEEDS = ("block", "token")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _split(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def lm_eval_command(
    tasks: Annotated[
        list[str],
        typer.Option("--tasks", "-t", help="lm-eval task names (repeatable or comma-separated)."),
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="Model to run.")] = "smollm2-135m",
    sparse_config: Annotated[
        str, typer.Option("--sparse-config", "-c", help="Sparse config JSON file, or 'dense'.")
    ] = "dense",
    include_path: Annotated[
        list[Path] | None,
        typer.Option("--include-path", help="Folder of extra task YAMLs (repeatable)."),
    ] = None,
    builtin_tasks: Annotated[
        bool, typer.Option(help="Also index lm-eval's built-in tasks (slower start).")
    ] = True,
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder.")] = Path("sah_results"),
    limit: Annotated[
        float | None, typer.Option(help="Documents per task (a fraction when < 1).")
    ] = None,
    num_fewshot: Annotated[int | None, typer.Option(min=0, help="Few-shot examples.")] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Continuations / answers of one context run together.")
    ] = 1,
    question_tokens: Annotated[
        int,
        typer.Option(min=0, help="Last N prompt tokens run in the 'question' phase (default 0)."),
    ] = 0,
    question_feed: Annotated[
        str, typer.Option(help="block (one forward) or token (one token per forward).")
    ] = "block",
    device: Annotated[str | None, typer.Option("--device", "-d", help="cpu, cuda, cuda:N.")] = None,
    dtype: Annotated[
        str | None, typer.Option(help="Weights dtype: bfloat16, float16, float32 or auto.")
    ] = None,
    chat_template: Annotated[
        bool, typer.Option(help="Apply the tokenizer's chat template to lm-eval's prompts.")
    ] = False,
    allow_pickle: Annotated[
        bool, typer.Option("--allow-pickle", help="Load pickle checkpoints too.")
    ] = False,
    adapter_factory: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """lm-evaluation-harness tasks with a sparse config: lm-eval's scores next to our density."""
    from sah_bench.run_checks import model_kwargs_with_dtype
    from sah_bench.run_config import load_sparse_config

    logging.basicConfig(level=logging.WARNING)
    names = _split(tasks)
    if not names:
        raise _fail("--tasks is empty: name at least one lm-eval task")
    if question_feed not in QUESTION_FEEDS:
        raise _fail(
            f"--question-feed {question_feed!r} is not allowed; use one of {QUESTION_FEEDS}"
        )
    for folder in include_path or []:
        if not folder.is_dir():
            raise _fail(f"--include-path {str(folder)!r} is not a folder")
    try:
        config_name, config = load_sparse_config(sparse_config)
        model_kwargs = model_kwargs_with_dtype({}, dtype)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        from sah_bench.lm_eval.runner import run_lm_eval, task_scores
    except ImportError as exc:
        raise _fail(f"{exc}") from None
    try:
        results, cells = run_lm_eval(
            model,
            names,
            out,
            config_name=config_name,
            sparse_config=config,
            include_path=list(include_path or []),
            include_builtin_tasks=builtin_tasks,
            limit=limit,
            num_fewshot=num_fewshot,
            batch_size=batch_size,
            question_tokens=question_tokens,
            question_feed=question_feed,
            device=device,
            model_kwargs=model_kwargs or None,
            adapter_factory=adapter_factory or os.environ.get(FACTORY_ENV_VAR),
            safetensors_only=not allow_pickle,
            apply_chat_template=chat_template,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    from rich.console import Console
    from rich.table import Table

    from sah_bench.executor.storage import read_json

    table = Table(title=f"{model} | {config_name} | lm-eval")
    for column in ("task", "metric", "value", "density"):
        table.add_column(column, justify="left" if column in ("task", "metric") else "right")
    for cell in cells:
        metrics = read_json(cell / "metrics.json")
        density = metrics.get("density")
        for key, value in task_scores(results["results"][metrics["subset"]]).items():
            shown = "-" if density is None else f"{density:.3f}"
            table.add_row(metrics["subset"], key, f"{value:.4f}", shown)
    console = Console()
    console.print(table)
    for cell in cells:
        console.print(f"results: {cell}")

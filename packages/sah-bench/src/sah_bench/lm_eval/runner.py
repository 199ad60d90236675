"""``sparse-attention-benchmark lm-eval``: lm-eval tasks with a sparse config, as result cells.

``run_lm_eval`` builds the adapter (through the same adapter factory as ``run``), wraps it in
:class:`~sah_bench.lm_eval.model.SahLM`, calls ``lm_eval.simple_evaluate`` and writes one
result cell per task, in the layout of our own benchmarks, so ``sparse-attention-benchmark
report`` lists lm-eval scores next to ours::

    OUT/<model>/<config>/lm_eval_<task>/
        metrics.json          model, config, benchmark "lm_eval", subset <task>, score (the
                              task's first metric), every lm-eval metric, density (mean and
                              per layer, from our micro metrics of that task's requests)
        raw_results.parquet   one row per lm-eval sample (doc id, target, responses, metrics)
        raw_results.csv       the same as CSV
        micro_metrics.jsonl   per-layer density of every sparse attention call of the task
        lm_eval_results.json  lm-eval's own results of the task (config, versions, n-shot ...)
        .complete             checksums of the files above (written last)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BENCHMARK_NAME = "lm_eval"


def _metric_name(key: str) -> tuple[str, str]:
    """``"acc,none"`` -> ``("acc", "none")``."""
    name, _, filter_name = key.partition(",")
    return name, filter_name


def task_scores(task_results: dict[str, Any]) -> dict[str, float]:
    """The metrics (``"<metric>,<filter>"`` keys) of one task's lm-eval results, without their
    standard errors."""
    scores = {}
    for key, value in task_results.items():
        name, _ = _metric_name(key)
        if "," not in key or name.endswith("_stderr") or isinstance(value, bool):
            continue  # "alias", "sample_len", "<metric>_stderr,<filter>"
        if isinstance(value, int | float) and math.isfinite(float(value)):
            scores[key] = float(value)
    return scores


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _sample_rows(samples: list[dict[str, Any]], metric_keys: list[str]) -> list[dict[str, Any]]:
    rows = []
    for sample in samples:
        row: dict[str, Any] = {
            "doc_id": sample.get("doc_id"),
            "target": json.dumps(_jsonable(sample.get("target"))),
            "filtered_resps": json.dumps(_jsonable(sample.get("filtered_resps"))),
        }
        for key in metric_keys:
            name, _ = _metric_name(key)
            value = sample.get(name)
            row[name] = float(value) if isinstance(value, int | float) else None
        rows.append(row)
    return rows


def write_task_cell(
    out_dir: Path,
    model: str,
    config_name: str,
    sparse_config: dict[str, Any] | None,
    task: str,
    results: dict[str, Any],
    micro: list[dict[str, Any]],
) -> Path:
    """Write one task's result cell (see the module docstring); returns its folder."""
    import pandas as pd

    from sah_bench.executor.cell import safe_name
    from sah_bench.executor.micro_metrics import summarize_micro_metrics
    from sah_bench.executor.storage import (
        atomic_write,
        atomic_write_json,
        atomic_write_text,
        write_complete_marker,
    )

    cell_dir = Path(out_dir) / safe_name(model) / safe_name(config_name)
    cell_dir = cell_dir / safe_name(f"{BENCHMARK_NAME}_{task}")
    (cell_dir / ".complete").unlink(missing_ok=True)
    task_results = results["results"][task]
    scores = task_scores(task_results)
    samples = list((results.get("samples") or {}).get(task, []))
    frame = pd.DataFrame(_sample_rows(samples, list(scores)))
    atomic_write(cell_dir / "raw_results.parquet", lambda p: frame.to_parquet(p, index=False))
    atomic_write(cell_dir / "raw_results.csv", lambda p: frame.to_csv(p, index=False))
    atomic_write_text(
        cell_dir / "micro_metrics.jsonl", "".join(json.dumps(m) + "\n" for m in micro)
    )
    own = {
        key: _jsonable(value.get(task))
        for key, value in results.items()
        if isinstance(value, dict) and key != "samples" and task in value
    }
    atomic_write_json(cell_dir / "lm_eval_results.json", own)
    n_samples = (results.get("n-samples") or {}).get(task, {})
    metrics: dict[str, Any] = {
        "model": model,
        "config": config_name,
        "benchmark": BENCHMARK_NAME,
        "subset": task,
        "score": next(iter(scores.values()), None),
        "score_metric": next(iter(scores), None),
        "lm_eval": scores,
        "n_requests": len(samples),
        "n_questions": int(n_samples.get("effective", len(samples)) or len(samples)),
        **summarize_micro_metrics(micro, dense=sparse_config is None),
    }
    atomic_write_json(cell_dir / "metrics.json", metrics)
    atomic_write_json(
        cell_dir / "config.json", {"sparse_config": sparse_config, "task": task, "model": model}
    )
    fingerprint = hashlib.sha256(
        json.dumps([model, config_name, sparse_config, task], default=str).encode()
    ).hexdigest()[:16]
    write_complete_marker(cell_dir, fingerprint)
    return cell_dir


def run_lm_eval(
    model: str,
    tasks: Sequence[str],
    out_dir: Path,
    *,
    config_name: str = "dense",
    sparse_config: dict[str, Any] | None = None,
    include_path: Sequence[Path] = (),
    include_builtin_tasks: bool = True,
    limit: float | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 1,
    question_tokens: int = 0,
    question_feed: str = "block",
    device: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    adapter_factory: str | None = None,
    safetensors_only: bool = True,
    apply_chat_template: bool = False,
    bootstrap_iters: int = 0,
    seed: int = 1234,
) -> tuple[dict[str, Any], list[Path]]:
    """Run ``tasks`` and write their cells; returns lm-eval's results and the cell folders."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from sah_adapters import ModelAdapterHF
    from sah_bench.executor.factory import (
        DEFAULT_ADAPTER_FACTORY,
        call_factory,
        resolve_factory,
    )
    from sah_bench.lm_eval.model import SahLM

    if not tasks:
        raise ValueError("tasks is empty: name at least one lm-eval task")
    manager = TaskManager(
        include_path=[str(p) for p in include_path] or None,
        include_defaults=include_builtin_tasks,
    )
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        where = f" (searched {[str(p) for p in include_path]})" if include_path else ""
        raise ValueError(
            f"unknown lm-eval task(s) {unknown}{where}; give --include-path for local task YAMLs"
        )
    factory = resolve_factory(adapter_factory or DEFAULT_ADAPTER_FACTORY)
    adapter = call_factory(
        factory,
        model,
        sparse_config,
        model_kwargs=model_kwargs,
        device=device,
        safetensors_only=safetensors_only,
    )
    try:
        if not isinstance(adapter, ModelAdapterHF):
            raise ValueError(
                f"the adapter factory returned {type(adapter).__name__}; the lm-eval backend "
                "needs a sah_adapters.ModelAdapterHF"
            )
        lm = SahLM(
            adapter=adapter,
            batch_size=batch_size,
            question_tokens=question_tokens,
            question_feed=question_feed,
        )
        scratch = Path(tempfile.mkdtemp(prefix="sah-lm-eval-"))
        try:
            with lm.recording(scratch):
                results = lm_eval.simple_evaluate(
                    model=lm,
                    tasks=list(tasks),
                    task_manager=manager,
                    limit=limit,
                    num_fewshot=num_fewshot,
                    log_samples=True,
                    bootstrap_iters=bootstrap_iters,
                    apply_chat_template=apply_chat_template,
                    random_seed=seed,
                    numpy_random_seed=seed,
                    torch_random_seed=seed,
                    fewshot_random_seed=seed,
                )
            micro = _read_records(scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        adapter.close()
    if results is None:
        raise RuntimeError("lm_eval.simple_evaluate returned no results")
    cells = []
    for task in results["results"]:
        if task not in (results.get("samples") or {}):
            continue  # a group's aggregate, not a task
        task_micro = [m for m in micro if m.get("task") == task]
        cells.append(
            write_task_cell(out_dir, model, config_name, sparse_config, task, results, task_micro)
        )
    return results, cells


def _read_records(folder: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            records.extend(json.loads(line) for line in fh if line.strip())
    return records

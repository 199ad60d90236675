"""One cell of the benchmark matrix: (model, sparse config, benchmark, subset).

Running a cell answers its requests one at a time, appending each answered request to a
progress log (so a killed run resumes where it stopped without answering anything twice), then
writes the cell's result files atomically and its completion marker last.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sah_bench.executor.errors import DataError, category_of
from sah_bench.executor.micro_metrics import (
    DEFAULT_MICRO_METRICS,
    MicroMetricsCapture,
    summarize_micro_metrics,
)
from sah_bench.executor.storage import (
    COMPLETE_MARKER,
    ERROR_FILE,
    PROGRESS_LOG,
    append_progress,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    is_complete,
    read_json,
    read_progress,
    verify_cell,
    write_complete_marker,
)
from sah_bench.registry import get_benchmark, get_benchmark_class
from sah_bench.rows import group_rows, row_extras
from sah_protocol import ModelAdapter, ResultRecord

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


def safe_name(name: str) -> str:
    """A folder-safe form of a model / config name (``org/model`` -> ``org__model``).

    Different names can map to one folder (``a b`` / ``a_b``); the executor refuses such pairs
    before any work (see :func:`check_unique_dirs`).
    """
    return _UNSAFE.sub("_", name.replace("/", "__")).strip("._") or "unnamed"


#: Fields added after 0.1.0: left out of the fingerprint at their default so results written
#: before they existed are still recognised as complete.
_NEW_FIELDS_DEFAULTS: dict[str, Any] = {"model_kwargs": {}}


@dataclass(frozen=True)
class CellSpec:
    """Everything that determines a cell's results (its fingerprint covers all of it).

    The device a cell runs on is not part of it: a cell resumed on another GPU is the same cell.
    """

    model: str
    config_name: str
    sparse_config: dict[str, Any] | None
    benchmark: str
    subset: str
    benchmark_options: dict[str, Any] = field(default_factory=dict)
    max_requests: int | None = None
    generation_kwargs: dict[str, Any] = field(default_factory=dict)
    micro_metrics: tuple[str, ...] = DEFAULT_MICRO_METRICS
    request_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.model} | {self.config_name} | {self.benchmark}_{self.subset}"

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What names the cell's folder: (model, config, benchmark, subset)."""
        return (self.model, self.config_name, self.benchmark, self.subset)

    @property
    def group_key(self) -> str:
        """Cells with one group key differ only in their sparse config: they can share the
        model, the benchmark rows and (when the adapter offers it) each context's prefill."""
        data = asdict(self)
        for name in ("config_name", "sparse_config", "micro_metrics"):
            data.pop(name)
        return json.dumps(data, sort_keys=True, default=str)

    def cell_dir(self, out_dir: Path) -> Path:
        return (
            Path(out_dir)
            / safe_name(self.model)
            / safe_name(self.config_name)
            / safe_name(f"{self.benchmark}_{self.subset}")
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fingerprint(self) -> str:
        data = self.to_dict()
        for name, default in _NEW_FIELDS_DEFAULTS.items():
            if data.get(name) == default:
                data.pop(name)
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def check_unique_dirs(cells: list[CellSpec], out_dir: Path) -> None:
    """Refuse two different (model, config, benchmark, subset) that share one result folder."""
    owners: dict[Path, tuple[str, str, str, str]] = {}
    for cell in cells:
        folder = cell.cell_dir(out_dir)
        other = owners.setdefault(folder, cell.identity)
        if other != cell.identity:
            fields = ("model", "config", "benchmark", "subset")
            clash = [
                f"{f} {a!r} vs {b!r}"
                for f, a, b in zip(fields, other, cell.identity, strict=True)
                if a != b
            ]
            raise ValueError(
                f"two cells would share the result folder {str(folder)!r} ({'; '.join(clash)}): "
                "folder names keep only letters, digits and ._+=- (and '/' becomes '__'); "
                "rename one of them"
            )


@dataclass
class CellResult:
    """What happened to one cell."""

    key: str
    cell_dir: str
    status: str  # "done" | "skipped" | "failed" | "interrupted"
    error: str | None = None
    metrics: dict[str, Any] | None = None
    seconds: float = 0.0
    category: str | None = None  # of a failure: config | model_load | data | run
    redone: str | None = None  # why an earlier "complete" result was not trusted


#: Builds an adapter: ``factory(model_name, sparse_config_dict_or_None) -> ModelAdapter``.
AdapterFactory = Callable[[str, dict[str, Any] | None], ModelAdapter]


def _benchmark_for(spec: CellSpec, adapter: ModelAdapter) -> Any:
    options = dict(spec.benchmark_options)
    use_model_tokenizer = bool(options.pop("measure_with_model_tokenizer", True))
    cls = get_benchmark_class(spec.benchmark)
    # Synthetic lengths are measured with the model's own tokenizer when the adapter has one.
    tokenizer = getattr(adapter, "tokenizer", None)
    if (
        use_model_tokenizer
        and tokenizer is not None
        and "token_counter" in inspect.signature(cls.__init__).parameters
    ):
        from sah_bench.synthetic.length import tokenizer_token_counter

        options["token_counter"] = tokenizer_token_counter(tokenizer)
    return get_benchmark(spec.benchmark, **options)


def load_groups(spec: CellSpec, adapter: ModelAdapter) -> tuple[Any, list[Any]]:
    """The benchmark and the request groups of the cell; any failure -> :class:`DataError`."""
    try:
        bench = _benchmark_for(spec, adapter)
        groups = group_rows(bench.load_rows(spec.subset))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"benchmark {spec.benchmark!r} subset {spec.subset!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if spec.max_requests is not None:
        groups = groups[: spec.max_requests]
    return bench, groups


def _timings(adapter: ModelAdapter, wall: float, n_questions: int) -> dict[str, float]:
    """Per-question timings: the adapter's own split when it reports one, else wall time.

    ``last_request_stats`` may be an object (``sah_adapters.RequestStats``) or a dict.
    """
    stats = getattr(adapter, "last_request_stats", None)
    out = {"prefill_seconds": 0.0, "decode_seconds": 0.0, "total_seconds": wall / n_questions}
    for key in ("prefill_seconds", "decode_seconds"):
        value = stats.get(key) if isinstance(stats, dict) else getattr(stats, key, None)
        if isinstance(value, int | float):
            out[key] = float(value) / n_questions
    return out


def _sharing_extras(adapter: ModelAdapter, n_questions: int) -> dict[str, Any]:
    """Whether the context prefill came from another config's run (``sah_adapters``' shared
    store), and the context / question prefill split of the prefill time (per question), when
    the adapter reports them."""
    stats = getattr(adapter, "last_request_stats", None)
    out: dict[str, Any] = {}
    hit = getattr(stats, "context_cache_hit", None)
    if isinstance(hit, bool):
        out["context_cache_hit"] = hit
    for key in ("context_prefill_seconds", "question_prefill_seconds"):
        value = getattr(stats, key, None)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = float(value) / n_questions
    # KV bytes the context held after its prefill (and any eviction), per request
    for key in ("context_kv_bytes", "context_kv_bytes_before_eviction"):
        value = getattr(stats, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out[key] = value
    return out


def record_failure(
    spec: CellSpec, out_dir: Path, exc: BaseException, stage: str, seconds: float = 0.0
) -> CellResult:
    """Write ``error.json`` (category, message, traceback) and return the failed result."""
    cell_dir = spec.cell_dir(out_dir)
    category = category_of(exc, stage)
    message = f"{type(exc).__name__}: {exc}"
    logger.error("cell %s failed (%s error): %s", spec.key, category, message)
    try:
        atomic_write_json(
            cell_dir / ERROR_FILE,
            {
                "category": category,
                "error": message,
                "traceback": traceback.format_exc(),
                "spec": spec.to_dict(),
            },
        )
    except OSError:
        logger.exception("could not record the error of cell %s", spec.key)
    return CellResult(
        spec.key, str(cell_dir), "failed", error=message, seconds=seconds, category=category
    )


class CellRun:
    """One cell being answered: prepared once, then fed its request groups, then finished.

    Several runs of one group key are fed request-major by :mod:`.group` so consecutive
    requests through different sparse configs share one context.
    """

    def __init__(
        self, spec: CellSpec, out_dir: Path, adapter: ModelAdapter, bench: Any, groups: list[Any]
    ) -> None:
        self.spec = spec
        self.cell_dir = spec.cell_dir(out_dir)
        self.fingerprint = spec.fingerprint()
        self.adapter = adapter
        self.bench = bench
        self.groups = groups
        self.cell_dir.mkdir(parents=True, exist_ok=True)
        (self.cell_dir / COMPLETE_MARKER).unlink(missing_ok=True)  # stale marker
        (self.cell_dir / ERROR_FILE).unlink(missing_ok=True)
        atomic_write_json(
            self.cell_dir / "config.json", {"fingerprint": self.fingerprint, **spec.to_dict()}
        )
        self.done = {e["request_id"]: e for e in read_progress(self.cell_dir, self.fingerprint)}
        self.capture = MicroMetricsCapture(adapter, tuple(spec.micro_metrics))

    def pending(self, group: Any) -> bool:
        return group.request_id not in self.done

    def answer(self, group: Any) -> None:
        entry = _answer_group(
            self.spec, self.bench, self.adapter, group, self.fingerprint, self.capture
        )
        append_progress(self.cell_dir, entry)
        self.done[group.request_id] = entry

    def finish(self) -> dict[str, Any]:
        self.capture.close()
        ordered = [self.done[g.request_id] for g in self.groups]
        return _finalize(self.spec, self.bench, self.cell_dir, self.fingerprint, ordered)

    def close(self) -> None:
        self.capture.close()


def run_cell(
    spec: CellSpec,
    out_dir: Path,
    adapter: ModelAdapter,
    *,
    progress: bool = True,
    on_request_done: Callable[[str], None] | None = None,
) -> CellResult:
    """Run (or resume, or skip) one cell; never raises for a failure inside the cell."""
    started = time.perf_counter()
    skipped = skip_if_complete(spec, out_dir)
    if skipped is not None:
        return skipped
    redone = why_redone(spec, out_dir)
    stage = "data"
    try:
        bench, groups = load_groups(spec, adapter)
        stage = "run"
        run = CellRun(spec, out_dir, adapter, bench, groups)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(groups), desc=spec.key, unit="req", leave=False)
        try:
            for group in groups:
                if run.pending(group):
                    run.answer(group)
                    if on_request_done is not None:
                        on_request_done(group.request_id)
                if bar is not None:
                    bar.update(1)
        finally:
            run.close()
            if bar is not None:
                bar.close()
        metrics = run.finish()
    except KeyboardInterrupt:
        return CellResult(spec.key, str(spec.cell_dir(out_dir)), "interrupted")
    except Exception as exc:
        return record_failure(spec, out_dir, exc, stage, time.perf_counter() - started)
    return CellResult(
        spec.key,
        str(spec.cell_dir(out_dir)),
        "done",
        metrics=metrics,
        seconds=time.perf_counter() - started,
        redone=redone,
    )


def skip_if_complete(spec: CellSpec, out_dir: Path) -> CellResult | None:
    """The "skipped" result of a cell already complete with these settings, else None."""
    cell_dir = spec.cell_dir(out_dir)
    if is_complete(cell_dir, spec.fingerprint()):
        # A run killed between the marker and the log's removal left the log behind.
        (cell_dir / PROGRESS_LOG).unlink(missing_ok=True)
        return CellResult(spec.key, str(cell_dir), "skipped", metrics=_read_metrics(cell_dir))
    return None


def why_redone(spec: CellSpec, out_dir: Path) -> str | None:
    """Why a cell whose marker matches its settings is not trusted (a damaged result file), or
    None when there was no such marker (a new or partial cell)."""
    cell_dir = spec.cell_dir(out_dir)
    try:
        marked = read_json(cell_dir / COMPLETE_MARKER).get("fingerprint") == spec.fingerprint()
    except (OSError, ValueError, AttributeError):
        return None
    return verify_cell(cell_dir, spec.fingerprint()) if marked else None


def _read_metrics(cell_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((cell_dir / "metrics.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def request_seed(spec: CellSpec, request_id: str) -> int:
    """The RNG seed of one request: from its id and the run's ``generation_kwargs['seed']``
    (0 when not given), the same for every sparse config (common random numbers)."""
    base = spec.generation_kwargs.get("seed", 0)
    digest = hashlib.sha256(f"{base}/{request_id}".encode()).hexdigest()
    return int(digest[:15], 16)


@contextmanager
def request_rng(seed: int) -> Iterator[None]:
    """Answer one request from ``torch.manual_seed(seed)``, the caller's RNG state kept.

    Sampling maskers (AdaptiveSampling, random sampling) draw from torch's global RNG, so
    without this a request's answers would depend on everything the process ran before it:
    the other configs, an earlier matrix, whether its context prefill was shared, a resume.
    """
    torch = sys.modules.get("torch")  # an adapter without torch draws nothing from it
    if torch is None:
        yield
        return
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    devices = list(range(torch.cuda.device_count())) if cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _answer_group(
    spec: CellSpec,
    bench: Any,
    adapter: ModelAdapter,
    group: Any,
    fingerprint: str,
    capture: MicroMetricsCapture,
) -> dict[str, Any]:
    request = group.to_request()
    generation_kwargs = dict(spec.generation_kwargs)
    # A max_new_tokens given for the run caps each row's own budget rather than replacing it.
    cap = generation_kwargs.pop("max_new_tokens", None)
    budget = group.max_new_tokens if cap is None else min(int(cap), group.max_new_tokens)
    generation_kwargs["max_new_tokens"] = budget
    capture.start()
    t0 = time.perf_counter()
    with request_rng(request_seed(spec, group.request_id)):
        response = adapter.process_request(request, generation_kwargs, dict(spec.request_kwargs))
    wall = time.perf_counter() - t0
    micro = capture.stop()
    predictions = response.response_list
    if len(predictions) != len(group.rows):
        raise ValueError(
            f"adapter returned {len(predictions)} answer(s) for {len(group.rows)} question(s) "
            f"of request {group.request_id}"
        )
    timings = _timings(adapter, wall, len(group.rows))
    # Whether the context prefill came from another config's run (sah_adapters' store).
    shared = _sharing_extras(adapter, len(group.rows))
    records = []
    for i, (row, prediction) in enumerate(zip(group.rows, predictions, strict=True)):
        extras = row_extras(row)
        score = bench.score(spec.subset, prediction, row["answers"], **extras)
        record = ResultRecord(
            model=spec.model,
            config=spec.config_name,
            benchmark=spec.benchmark,
            subset=spec.subset,
            request_id=f"{group.request_id}/{i}",
            question=row["question"],
            prediction=prediction,
            answers=list(row["answers"]),
            score=float(score),
            **timings,
            extra={
                "task": row["task"],
                **{k: v for k, v in extras.items() if _jsonable(v)},
                **shared,
            },
        )
        records.append(record.to_dict())
    return {
        "fingerprint": fingerprint,
        "request_id": group.request_id,
        "records": records,
        "micro_metrics": micro,
    }


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _finalize(
    spec: CellSpec,
    bench: Any,
    cell_dir: Path,
    fingerprint: str,
    entries: list[dict[str, Any]],
) -> dict[str, Any]:
    import pandas as pd  # lazy: keeps `import sah_bench` light

    records = [r for e in entries for r in e["records"]]
    micro = [m for e in entries for m in e["micro_metrics"]]
    flat = []
    for r in records:
        row = {k: v for k, v in r.items() if k != "extra"}
        row["task"] = r["extra"].get("task", spec.subset)
        row["extra"] = json.dumps(r["extra"], sort_keys=True, default=str)
        flat.append(row)
    columns = [*ResultRecord.field_names(), "task"]
    frame = pd.DataFrame(flat, columns=columns)
    atomic_write(cell_dir / "raw_results.parquet", lambda p: frame.to_parquet(p, index=False))
    csv_frame = frame.assign(answers=frame["answers"].map(json.dumps))
    atomic_write(cell_dir / "raw_results.csv", lambda p: csv_frame.to_csv(p, index=False))
    atomic_write_text(
        cell_dir / "micro_metrics.jsonl", "".join(json.dumps(m) + "\n" for m in micro)
    )
    scored = [{"score": r["score"], "task": r["extra"].get("task"), **r} for r in records]
    metrics: dict[str, Any] = {
        "model": spec.model,
        "config": spec.config_name,
        "benchmark": spec.benchmark,
        "subset": spec.subset,
        "n_requests": len(entries),
        **bench.aggregate(spec.subset, scored),
        **summarize_micro_metrics(micro, dense=spec.sparse_config is None),
        "mean_total_seconds": (
            sum(r["total_seconds"] for r in records) / len(records) if records else 0.0
        ),
    }
    for key in ("context_kv_bytes", "context_kv_bytes_before_eviction"):
        held = [r["extra"][key] for r in records if isinstance(r["extra"].get(key), int)]
        if held:
            metrics[f"mean_{key}"] = sum(held) / len(held)
    atomic_write_json(cell_dir / "metrics.json", metrics)
    # The marker goes last: only now is every file of the cell in place.
    write_complete_marker(cell_dir, fingerprint)
    (cell_dir / PROGRESS_LOG).unlink(missing_ok=True)
    return metrics

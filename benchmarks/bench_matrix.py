"""Matrix cost: the demo's matrix (SmolLM2-135M, 5 configs) with vs without a shared context
prefill, measured in the same run.

The executor runs the configs of one model over one benchmark subset request-major; with
sharing on, the adapters of that model get one ``sah_adapters.ContextCacheStore``, so each
context is prefilled (dense) once for all five configs instead of five times. Both variants
answer exactly the same requests; the script checks the predictions are identical and counts
the requests whose prefill came from the store. Target: sharing <= 0.5x the time.

Usage: ``uv run python benchmarks/bench_matrix.py [--repeats 5] [--target-tokens 2048]
[--requests 1] [--warmup-tokens 256] [--device cpu] [--count-ops] [--json out.json]``. The
model is loaded once before timing (both variants reuse it) and both variants run once, untimed,
on a short context (one-time costs would otherwise fall on the variant that runs first); each
variant's time is the best of ``--repeats`` runs, alternated, so other load on the machine
disturbs both alike (each repeat's own shared/separate ratio is printed too: the spread as
the machine's speed drifts; five repeats take ~5 minutes on the 2-core CPU). Each run's
share of CPU time stolen by the hypervisor (``/proc/stat``'s ``steal``, Linux) is printed
with it: a run with steal did not have an idle machine.

Besides the ratio it prints where the time goes (adapter-reported, summed over the matrix): the
context prefill (once per context with sharing, once per config without), and per config the
question prefill, the decode and the rest (adapter set-up, data, scoring, result files).
``--count-ops`` adds one more run of each variant counting the aten operators dispatched,
split the same way: a load-independent view of the work (the counter slows the run down, so
those runs are not timed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from sah_bench.demo import DEMO_MODEL, DEMO_QUESTIONS_PER_CONTEXT, DEMO_TASKS, demo_configs
from sah_bench.executor import BenchmarkExecutor, BenchmarkSpec, build_hf_adapter


def run_matrix(
    out: Path, *, share: bool, requests: int, target_tokens: int, device: str, dtype: str | None
) -> tuple[float, pd.DataFrame]:
    executor = BenchmarkExecutor(
        out,
        backend="inline",
        devices=[device],
        max_requests=requests,
        generation_kwargs={"max_new_tokens": 8},
        request_kwargs={"batch_size": DEMO_QUESTIONS_PER_CONTEXT},
        model_kwargs={"dtype": dtype} if dtype else None,
        progress=False,
        share_context=share,
    )
    bench = BenchmarkSpec(
        "synthetic",
        DEMO_TASKS,
        {
            "target_tokens": target_tokens,
            "num_samples": requests,
            "seed": 0,
            "questions_per_context": DEMO_QUESTIONS_PER_CONTEXT,
        },
    )
    started = time.perf_counter()
    results = executor.run([DEMO_MODEL], demo_configs(), [bench])
    seconds = time.perf_counter() - started
    failed = [r for r in results if r.status != "done"]
    if failed:
        raise SystemExit(f"cells did not finish: {[(r.key, r.status, r.error) for r in failed]}")
    frames = [pd.read_parquet(p) for p in sorted(out.rglob("raw_results.parquet"))]
    return seconds, pd.concat(frames, ignore_index=True)


def cpu_counters() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from ``/proc/stat`` (None where there is none)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    numbers = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (numbers[7], sum(numbers)) if len(numbers) == 8 else None


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Fraction of the CPU time between two :func:`cpu_counters` readings that was stolen."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def breakdown(frame: pd.DataFrame, seconds: float) -> dict[str, Any]:
    """Adapter-reported seconds of one run: context prefill, and per config question prefill
    and decode (each column of the results is per question, so sums are per matrix)."""
    extra = frame["extra"].map(json.loads)
    context = extra.map(lambda e: float(e.get("context_prefill_seconds", 0.0)))
    question = extra.map(lambda e: float(e.get("question_prefill_seconds", 0.0)))
    per_config = {}
    for name, rows in frame.assign(q=question, c=context).groupby("config", sort=False):
        per_config[str(name)] = {
            "question_prefill_seconds": float(rows["q"].sum()),
            "decode_seconds": float(rows["decode_seconds"].sum()),
        }
    model = float(context.sum() + question.sum() + frame["decode_seconds"].sum())
    return {
        "context_prefill_seconds": float(context.sum()),
        "question_prefill_seconds": float(question.sum()),
        "decode_seconds": float(frame["decode_seconds"].sum()),
        "other_seconds": max(seconds - model, 0.0),
        "per_config": per_config,
    }


class _OpCounter:
    """Counts the aten operators dispatched, under the label set by :meth:`label`."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.current = "other"

    @contextlib.contextmanager
    def label(self, name: str) -> Iterator[None]:
        previous, self.current = self.current, name
        try:
            yield
        finally:
            self.current = previous


@contextlib.contextmanager
def counting_ops() -> Iterator[_OpCounter]:
    """Count aten ops per phase: the context prefill, each config's answering, the rest.

    Wraps (for this script only) ``CellRun.answer`` to label ops with the cell's config and
    ``ModelAdapterHF._prefill_context`` to label the context prefill.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    from sah_adapters import ModelAdapterHF
    from sah_bench.executor.cell import CellRun

    counter = _OpCounter()

    class Mode(TorchDispatchMode):  # type: ignore[no-untyped-call]
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            counter.counts[counter.current] += 1
            return func(*args, **(kwargs or {}))

    answer, prefill = CellRun.answer, ModelAdapterHF._prefill_context

    def labelled_answer(run: Any, group: Any) -> None:
        with counter.label(run.spec.config_name):
            answer(run, group)

    def labelled_prefill(adapter: Any, *args: Any, **kwargs: Any) -> Any:
        with counter.label("context prefill"):
            return prefill(adapter, *args, **kwargs)

    CellRun.answer = labelled_answer  # type: ignore[method-assign,assignment]
    ModelAdapterHF._prefill_context = labelled_prefill  # type: ignore[method-assign,assignment]
    try:
        with Mode():  # type: ignore[no-untyped-call]
            yield counter
    finally:
        CellRun.answer = answer  # type: ignore[method-assign]
        ModelAdapterHF._prefill_context = prefill  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target-tokens", type=int, default=2048)
    parser.add_argument("--requests", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument(
        "--warmup-tokens",
        type=int,
        default=256,
        help="run both variants once, untimed, on a context this long first (0: no warm-up)",
    )
    parser.add_argument("--count-ops", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    # Load (and, the first time, convert) the model before any timing; both variants reuse it.
    kwargs: dict[str, Any] = {"dtype": args.dtype} if args.dtype else {}
    build_hf_adapter(DEMO_MODEL, None, model_kwargs=kwargs, device=args.device).close()
    times: dict[str, list[float]] = {"separate": [], "shared": []}
    steal: dict[str, list[float | None]] = {"separate": [], "shared": []}
    predictions: dict[str, list[str]] = {}
    keys: dict[str, list[str]] = {}
    # Adapter-reported seconds of each variant's best run: what sharing saves, apart from the
    # noise of other load on the machine.
    split: dict[str, dict[str, Any]] = {}
    hits = 0
    common = {
        "requests": args.requests,
        "target_tokens": args.target_tokens,
        "device": args.device,
        "dtype": args.dtype,
    }
    # First calls pay one-time costs (lazy imports, kernel set-up, allocator growth); untimed
    # here, they would fall on the variant that runs first.
    if args.warmup_tokens > 0:
        for share in (False, True):
            with tempfile.TemporaryDirectory(prefix="bench-matrix-warmup-") as tmp:
                run_matrix(
                    Path(tmp), share=share, **{**common, "target_tokens": args.warmup_tokens}
                )
    for _ in range(args.repeats):
        for name, share in (("separate", False), ("shared", True)):
            with tempfile.TemporaryDirectory(prefix=f"bench-matrix-{name}-") as tmp:
                before = cpu_counters()
                seconds, frame = run_matrix(Path(tmp), share=share, **common)
                steal[name].append(steal_share(before, cpu_counters()))
            times[name].append(seconds)
            if seconds <= min(times[name]):
                split[name] = breakdown(frame, seconds)
            frame = frame.sort_values(["config", "subset", "request_id"])
            predictions[name] = frame["prediction"].tolist()
            keys[name] = (frame["config"] + "/" + frame["request_id"].astype(str)).tolist()
            if share:
                hits = int(
                    frame["extra"]
                    .map(lambda e: json.loads(e).get("context_cache_hit") is True)
                    .sum()
                )
    best = {name: min(values) for name, values in times.items()}
    ratio = best["shared"] / best["separate"]
    same = predictions["separate"] == predictions["shared"]
    questions = len(predictions["shared"])
    configs = list(split["shared"]["per_config"])
    print(f"machine: {platform.processor() or platform.machine()}, device {args.device}")
    print(
        f"matrix: {DEMO_MODEL}, {len(configs)} configs x {args.requests} request(s) x "
        f"{DEMO_QUESTIONS_PER_CONTEXT} questions, ~{args.target_tokens} context tokens"
    )
    for name, label in (("separate", "separate prefills:"), ("shared", "shared prefill:   ")):
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        stolen = ", ".join("n/a" if x is None else f"{100 * x:.1f}%" for x in steal[name])
        print(f"{label} {best[name]:.2f} s (runs: {runs}; steal: {stolen})")
    print(f"ratio shared/separate: {ratio:.3f}x (target <= 0.5x)")
    # each repeat's shared run over the separate run just before it: the spread of the ratio
    # as the machine's speed drifts (the best-of-repeats ratio above is the headline)
    paired = [s / t for s, t in zip(times["shared"], times["separate"], strict=True)]
    paired_text = ", ".join(f"{x:.3f}" for x in paired)
    print(f"  per repeat: {paired_text} (median {statistics.median(paired):.3f}x)")
    for name in ("separate", "shared"):
        b = split[name]
        print(
            f"  {name}: context prefill {b['context_prefill_seconds']:.2f} s; per-config work "
            f"{b['question_prefill_seconds'] + b['decode_seconds']:.2f} s (question prefill "
            f"{b['question_prefill_seconds']:.2f} s + decode {b['decode_seconds']:.2f} s); "
            f"other {b['other_seconds']:.2f} s"
        )
    print("  per config (shared run): question prefill + decode seconds")
    for config, c in split["shared"]["per_config"].items():
        print(f"    {config:<20} {c['question_prefill_seconds']:7.2f} + {c['decode_seconds']:7.2f}")
    print(f"questions answered from a shared prefill: {hits} of {questions}")
    print(f"predictions identical: {same}", flush=True)
    for key, left, right in zip(
        keys["separate"], predictions["separate"], predictions["shared"], strict=True
    ):
        if left != right:
            print(f"  differs: {key}: separate {left!r} vs shared {right!r}")
    ops: dict[str, dict[str, int]] = {}
    if args.count_ops:
        for name, share in (("separate", False), ("shared", True)):
            folder = tempfile.TemporaryDirectory(prefix=f"bench-matrix-ops-{name}-")
            with folder as tmp, counting_ops() as counter:
                _, frame = run_matrix(Path(tmp), share=share, **common)
            ops[name] = dict(counter.counts)
            # Under a dispatch mode torch may pick other kernels (SDPA's math path), so a
            # greedy token can flip; the counts are what the run did either way.
            frame = frame.sort_values(["config", "subset", "request_id"])
            if frame["prediction"].tolist() != predictions[name]:
                print(f"note: {name} predictions differ under the op counter (other kernels)")
    if ops:
        print("aten ops dispatched (load-independent):")
        for name in ("separate", "shared"):
            total = sum(ops[name].values())
            context_ops, other_ops = ops[name].get("context prefill", 0), ops[name].get("other", 0)
            print(
                f"  {name}: {total:,} in all; context prefill {context_ops:,}; other {other_ops:,}"
            )
        op_ratio = sum(ops["shared"].values()) / sum(ops["separate"].values())
        print(f"  op ratio shared/separate: {op_ratio:.3f}x")
        for config in configs:
            print(
                f"    {config:<20} {ops['shared'].get(config, 0):>10,} ops answering (shared run)"
            )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "times": times,
                    "steal": steal,
                    "best": best,
                    "adapter_seconds": split,
                    "aten_ops": ops,
                    "ratio": ratio,
                    "paired_ratios": paired,
                    "shared_hits": hits,
                    "questions": questions,
                    "predictions_identical": same,
                    "target_tokens": args.target_tokens,
                    "requests": args.requests,
                    "device": args.device,
                },
                indent=2,
            )
        )
    if not same:
        raise SystemExit("predictions differ between shared and separate prefills")


if __name__ == "__main__":
    main()

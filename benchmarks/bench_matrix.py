"""Matrix cost: the demo's matrix (SmolLM2-135M, 5 configs) with vs without a shared context
prefill, measured in the same run.

The executor runs the configs of one model over one benchmark subset request-major; with
sharing on, the adapters of that model get one ``sah_adapters.ContextCacheStore``, so each
context is prefilled (dense) once for all five configs instead of five times. Both variants
answer exactly the same requests; the script checks the predictions are identical and counts
the requests whose prefill came from the store. Target: sharing <= 0.5x the time.

Usage: ``uv run python benchmarks/bench_matrix.py [--repeats 2] [--target-tokens 2048]
[--requests 1] [--device cpu] [--json out.json]``. The model is loaded once before timing
(both variants reuse it); each variant's time is the best of ``--repeats`` runs, alternated,
so other load on the machine disturbs both alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--target-tokens", type=int, default=2048)
    parser.add_argument("--requests", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    # Load (and, the first time, convert) the model before any timing; both variants reuse it.
    kwargs: dict[str, Any] = {"dtype": args.dtype} if args.dtype else {}
    build_hf_adapter(DEMO_MODEL, None, model_kwargs=kwargs, device=args.device).close()
    times: dict[str, list[float]] = {"separate": [], "shared": []}
    predictions: dict[str, list[str]] = {}
    # Adapter-reported seconds summed over the matrix (best run): what sharing saves, apart
    # from the noise of other load on the machine.
    split: dict[str, dict[str, float]] = {}
    hits = 0
    for _ in range(args.repeats):
        for name, share in (("separate", False), ("shared", True)):
            with tempfile.TemporaryDirectory(prefix=f"bench-matrix-{name}-") as tmp:
                seconds, frame = run_matrix(
                    Path(tmp),
                    share=share,
                    requests=args.requests,
                    target_tokens=args.target_tokens,
                    device=args.device,
                    dtype=args.dtype,
                )
            times[name].append(seconds)
            if seconds <= min(times[name]):
                split[name] = {
                    "prefill_seconds": float(frame["prefill_seconds"].sum()),
                    "decode_seconds": float(frame["decode_seconds"].sum()),
                }
            frame = frame.sort_values(["config", "subset", "request_id"])
            predictions[name] = frame["prediction"].tolist()
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
    print(f"machine: {platform.processor() or platform.machine()}, device {args.device}")
    print(
        f"matrix: {DEMO_MODEL}, 5 configs x {args.requests} request(s) x "
        f"{DEMO_QUESTIONS_PER_CONTEXT} questions, ~{args.target_tokens} context tokens"
    )
    print(f"separate prefills: {best['separate']:.2f} s (runs: {times['separate']})")
    print(f"shared prefill:    {best['shared']:.2f} s (runs: {times['shared']})")
    print(f"ratio shared/separate: {ratio:.3f}x (target <= 0.5x)")
    for name in ("separate", "shared"):
        print(
            f"  {name}: prefill (context + questions) {split[name]['prefill_seconds']:.2f} s, "
            f"decode {split[name]['decode_seconds']:.2f} s (adapter-reported, summed)"
        )
    print(f"questions answered from a shared prefill: {hits} of {questions}")
    print(f"predictions identical: {same}")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "times": times,
                    "best": best,
                    "adapter_seconds": split,
                    "ratio": ratio,
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

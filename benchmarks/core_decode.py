"""ResearchAttention speed vs dense SDPA, ratios measured in the same run.

Decode: B=1, Hq=32, Hkv=8, D=128, fp32, K in {4K, 16K, 32K}; stacks
[Sink(128), Local(128), OracleTopK(0.05)], [Sink(128), Local(128), Quest(0.05, page 16)] (when
``sah_core.maskers.QuestTopKMaskerConfig`` exists) and [Sink(128), Local(128),
AdaptiveSampling(0.05, eps 0.25, delta 0.25)] vs
``scaled_dot_product_attention(q, k, v, enable_gqa=True)``.
Prefill: Q=K=2048, B=1, H=8, D=64, causal, [Sink(128), OracleTopK(0.05)] vs causal SDPA.

Run: ``uv run python benchmarks/core_decode.py [--threads 2] [--repeats 7] [--quick]``;
``--ops`` prints the number of torch ops one layer call dispatches per stack (torch
profiler, top-level ``aten::`` ops: each is a kernel launch on a GPU) instead of timing.
To compare with an older checkout in the same session, run the script once more with
``PYTHONPATH=<old>/packages/sah-core/src`` (each run's ratios are against its own dense).
On a machine shared with other busy processes, prefix ``OMP_WAIT_POLICY=passive``: with the
default spin-waiting each small op of the sparse path waits for a descheduled second thread
and the ratios measure the contention instead of the code.
Times: dense and sparse alternate within each round; the table shows median times and the
median per-round ratio. Peak memory: peak RSS of one call in a fresh child process (inputs
resident), as a ratio to dense, plus the growth over the inputs (``--no-memory`` skips it).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from sah_core import (
    AdaptiveSamplingMaskerConfig,
    LocalMaskerConfig,
    OracleTopKConfig,
    ResearchAttention,
    ResearchAttentionConfig,
    SinkMaskerConfig,
)
from sah_core import maskers as core_maskers


def _paired_times(
    dense: Callable[[], Any], sparse: Callable[[], Any], rounds: int
) -> tuple[float, float, float]:
    """Median dense time, median sparse time and median per-round ratio (s).

    Dense and sparse alternate inside each round, so load changes on a shared machine hit
    both sides of a ratio alike.
    """
    dense()
    sparse()  # warm-up
    dense_times, sparse_times, ratios = [], [], []
    for _ in range(rounds):
        start = time.perf_counter()
        dense()
        mid = time.perf_counter()
        sparse()
        end = time.perf_counter()
        dense_times.append(mid - start)
        sparse_times.append(end - mid)
        ratios.append((end - mid) / (mid - start))
    return (
        statistics.median(dense_times),
        statistics.median(sparse_times),
        statistics.median(ratios),
    )


def decode_stacks() -> dict[str, ResearchAttentionConfig]:
    stacks = {
        "sink+local+oracle_topk": ResearchAttentionConfig(
            [SinkMaskerConfig(128), LocalMaskerConfig(128), OracleTopKConfig(0.05)]
        ),
        "sink+local+adaptive": ResearchAttentionConfig(
            [
                SinkMaskerConfig(128),
                LocalMaskerConfig(128),
                AdaptiveSamplingMaskerConfig(0.05, 0.25, 0.25, 128, 128),
            ]
        ),
    }
    quest = getattr(core_maskers, "QuestTopKMaskerConfig", None)
    if quest is not None:
        stacks["sink+local+quest"] = ResearchAttentionConfig(
            [
                SinkMaskerConfig(128),
                LocalMaskerConfig(128),
                quest(heavy_size=0.05, page_size=16, label_bits=16),
            ]
        )
    return stacks


def decode_inputs(key_len: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 32, 1, 128, generator=gen)
    k = torch.randn(1, 8, key_len, 128, generator=gen)
    v = torch.randn(1, 8, key_len, 128, generator=gen)
    return q, k, v


def prefill_inputs() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 8, 2048, 64, generator=gen)
    k = torch.randn(1, 8, 2048, 64, generator=gen)
    v = torch.randn(1, 8, 2048, 64, generator=gen)
    mask = torch.full((2048, 2048), float("-inf")).triu(1)[None, None]
    return q, k, v, mask


def make_case(case: str, key_len: int) -> Callable[[], Any]:
    """A zero-argument callable running one case (inputs built outside the timed part)."""
    if case == "dense_decode":
        q, k, v = decode_inputs(key_len)
        return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    if case.startswith("decode:"):
        q, k, v = decode_inputs(key_len)
        attention = ResearchAttention.create_from_config(decode_stacks()[case[len("decode:") :]])
        scale = 128**-0.5
        return lambda: attention.custom_attention(None, q, k, v, None, scale, 0.0, {}, layer_idx=0)
    q, k, v, mask = prefill_inputs()
    if case == "dense_prefill":
        return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    attention = ResearchAttention.create_from_config(
        ResearchAttentionConfig([SinkMaskerConfig(128), OracleTopKConfig(0.05)])
    )
    return lambda: attention.custom_attention(None, q, k, v, mask, 64**-0.5, 0.0, {}, layer_idx=0)


def op_count(fn: Callable[[], Any]) -> int:
    """Top-level torch ops one call dispatches (nested ops of a composite op not counted)."""
    from torch.profiler import ProfilerActivity, profile

    fn()  # warm-up (lazy imports, caches)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)


def print_op_counts() -> None:
    cases = [(f"decode:{name}", 32768) for name in decode_stacks()]
    cases += [("dense_decode", 32768), ("prefill", 0), ("dense_prefill", 0)]
    print("| case (decode K=32K, prefill Q=K=2048) | torch ops per layer call |")
    print("|---|---:|")
    for case, key_len in cases:
        print(f"| {case} | {op_count(make_case(case, key_len))} |")


def _status_kib(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_child(case: str, key_len: int, threads: int, queue: Any) -> None:
    torch.set_num_threads(threads)
    fn = make_case(case, key_len)  # inputs are built (and resident) before the baseline
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")
    base = _status_kib("VmRSS")
    fn()
    peak = _status_kib("VmHWM")
    queue.put((base / 1024.0, peak / 1024.0))  # MiB


def peak_mib(case: str, key_len: int, threads: int) -> tuple[float, float]:
    """(baseline RSS with inputs resident, peak RSS after one call) in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_child, args=(case, key_len, threads, queue))
    proc.start()
    base, peak = queue.get()
    proc.join()
    return float(base), float(peak)


def _memory(case: str, dense_case: str, key_len: int, threads: int) -> dict[str, float]:
    dense_base, dense_peak = peak_mib(dense_case, key_len, threads)
    base, peak = peak_mib(case, key_len, threads)
    return {
        "mem_ratio": peak / dense_peak,
        "dense_extra_mib": dense_peak - dense_base,
        "sparse_extra_mib": peak - base,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="paired rounds per case")
    parser.add_argument("--quick", action="store_true", help="only K=32K decode + prefill")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--json", action="store_true", help="print rows as JSON too")
    parser.add_argument("--ops", action="store_true", help="count torch ops per call only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.ops:
        print_op_counts()
        return
    rows: list[dict[str, Any]] = []
    lengths = [32768] if args.quick else [4096, 16384, 32768]
    for key_len in lengths:
        for name in decode_stacks():
            case = f"decode:{name}"
            dense_t, t, ratio = _paired_times(
                make_case("dense_decode", key_len), make_case(case, key_len), args.repeats
            )
            row: dict[str, Any] = {
                "case": f"decode K={key_len // 1024}K {name}",
                "dense_ms": dense_t * 1e3,
                "sparse_ms": t * 1e3,
                "ratio": ratio,
            }
            if not args.no_memory:
                row.update(_memory(case, "dense_decode", key_len, args.threads))
            rows.append(row)
    dense_t, t, ratio = _paired_times(
        make_case("dense_prefill", 0), make_case("prefill", 0), args.repeats
    )
    row = {
        "case": "prefill Q=K=2048 sink+oracle_topk",
        "dense_ms": dense_t * 1e3,
        "sparse_ms": t * 1e3,
        "ratio": ratio,
    }
    if not args.no_memory:
        row.update(_memory("prefill", "dense_prefill", 0, args.threads))
    rows.append(row)
    print(f"torch {torch.__version__}, threads={args.threads}, rounds={args.repeats} (medians)")
    print(f"| {'case':44s} | dense ms | sparse ms | time ratio | peak RSS ratio | extra MiB d/s |")
    print(f"|{'-' * 46}|---------:|----------:|-----------:|---------------:|--------------:|")
    for row in rows:
        mem = "n/a" if "mem_ratio" not in row else f"{row['mem_ratio']:.2f}x"
        extra = (
            "n/a"
            if "mem_ratio" not in row
            else f"{row['dense_extra_mib']:.0f}/{row['sparse_extra_mib']:.0f}"
        )
        print(
            f"| {row['case']:44s} | {row['dense_ms']:8.1f} | {row['sparse_ms']:9.1f} | "
            f"{row['ratio']:9.2f}x | {mem:>14s} | {extra:>13s} |"
        )
    if args.json:
        json.dump(rows, sys.stdout, indent=1)


if __name__ == "__main__":
    main()

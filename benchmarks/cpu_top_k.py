"""Row top-k on the CPU: ``sah_core.attention.cpu_top_k.row_top_k`` vs ``torch.topk``.

Shapes: a prefill chunk (8 heads x 256 query rows over 1920 and 896 free keys, k=102), a
K=32K decode step (32 heads, k=1638) and a SmolLM2 decode step (9 heads over 3287 keys,
k=177, fresh scores each call from a small matmul, as in a real layer call; the matmul's
own time is subtracted). Both sides run on the same tensors, alternated; min of ``--repeats``.
The script also checks that both give the same value set on every shape.

Run: ``OMP_WAIT_POLICY=passive uv run python benchmarks/cpu_top_k.py [--threads 2]
[--repeats 21]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch

from sah_core.attention.cpu_top_k import row_top_k


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, threads={args.threads}, min of {args.repeats}")
    print("| rows x row length, k | torch.topk | row_top_k | speed-up |")
    print("|---|---:|---:|---:|")
    for shape, k in [((8, 256, 1920), 102), ((8, 256, 896), 102), ((1, 32, 32512), 1638)]:
        scores = torch.randn(*shape, generator=gen)
        want = scores.topk(k, dim=-1).values.sort(-1).values
        assert torch.equal(row_top_k(scores, k)[0].sort(-1).values, want)
        base = best_time(lambda: scores.topk(k, dim=-1, sorted=False), args.repeats)  # noqa: B023
        ours = best_time(lambda: row_top_k(scores, k), args.repeats)  # noqa: B023
        rows = shape[0] * shape[1]
        label = f"{rows} x {shape[-1]}, {k}"
        print(f"| {label} | {base * 1e3:.2f} ms | {ours * 1e3:.2f} ms | {base / ours:.2f}x |")
    # a decode step: the scores are fresh (just computed) in every call
    keys = torch.randn(1, 3, 3287, 64, generator=gen)
    queries = torch.randn(1, 3, 3, 64, generator=gen)

    def fresh() -> torch.Tensor:
        return (queries @ keys.transpose(-1, -2)).view(1, 9, 3287)

    assert torch.equal(
        row_top_k(fresh(), 177)[0].sort(-1).values,
        fresh().topk(177, dim=-1).values.sort(-1).values,
    )
    matmul = best_time(fresh, args.repeats * 10)
    base = best_time(lambda: fresh().topk(177, dim=-1, sorted=False), args.repeats * 10) - matmul
    ours = best_time(lambda: row_top_k(fresh(), 177), args.repeats * 10) - matmul
    speedup = base / ours
    print(f"| 9 x 3287 fresh, 177 | {base * 1e6:.0f} us | {ours * 1e6:.0f} us | {speedup:.2f}x |")


if __name__ == "__main__":
    main()

"""Index attention of question-prefill-sized calls: the fused CPU kernel vs the torch dense
chunk, measured in the same run.

Without a masker's scores (Quest, hashing or quantised scores) a call the torch strategy runs
as a dense chunk computes ``q . k`` for every key and ``p @ V`` over all of them; the fused
kernel reads only the selected keys and values. Both are timed on random inputs per shape
and index width (the selected keys random, sorted), and their outputs compared; the last
column is what ``index_form`` picks (``FUSED_KEYS_MAX_DENSITY``).

Usage: ``uv run python benchmarks/index_attention_paths.py [--repeats 10]``.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import torch

from sah_core.attention import index_form
from sah_core.attention.fused_gather import fused_gather_applies

# (batch, query rows, keys): the demo's 6-question block, a longer question (its widths
# already take the gather: no row), a long context
SHAPES = ((6, 29, 2068), (1, 64, 4096), (4, 16, 8192))
WIDTHS = (256, 384, 512, 768, 1024)
LAYOUTS = ("random keys", "pages of 16")
HEADS, KV_HEADS, DIM = 9, 3, 64


def selected_keys(
    b: int, q: int, k: int, width: int, layout: str, gen: torch.Generator
) -> torch.Tensor:
    """Sorted ``[b, HEADS, q, width]`` key indices: random keys, or whole pages of 16
    consecutive keys (what Quest selects)."""
    if layout == "random keys":
        order = torch.rand(b, HEADS, q, k, generator=gen).argsort(-1)
        return order[..., :width].sort(-1).values
    pages = torch.rand(b, HEADS, q, k // 16, generator=gen).argsort(-1)[..., : width // 16]
    starts = pages.sort(-1).values * 16
    return (starts[..., None] + torch.arange(16)).flatten(-2)


def best_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    print(f"torch threads {torch.get_num_threads()}; best of {args.repeats}")
    print(
        "| batch, query rows, keys | selection | width (density) | dense chunk | fused | ratio "
        "| chosen |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    for b, q, k in SHAPES:
        queries = torch.randn(b, HEADS, q, DIM, generator=gen)
        keys = torch.randn(b, KV_HEADS, k, DIM, generator=gen)
        values = torch.randn(b, KV_HEADS, k, DIM, generator=gen)
        mask = torch.zeros(b, 1, q, k)
        for width in WIDTHS:
            for layout in LAYOUTS:
                indices = selected_keys(b, q, k, width, layout, gen)
                if not fused_gather_applies(queries, keys, values, indices, 0.0):
                    continue
                run = functools.partial(
                    index_form.index_attention_reference_named,
                    queries,
                    keys,
                    values,
                    indices,
                    None,
                    scaling=0.125,
                    attention_mask=mask,
                )
                chosen = run()[1]
                # the kernel forced on, then off (the torch strategy: a dense chunk here)
                applies, density = (
                    index_form.fused_gather_applies,
                    index_form.FUSED_KEYS_MAX_DENSITY,
                )
                index_form.FUSED_KEYS_MAX_DENSITY = 1.0
                try:
                    fused_out, fused_name = run()
                    fused_ms = best_ms(run, args.repeats)
                    index_form.fused_gather_applies = lambda *a, **kw: False  # type: ignore[assignment]
                    dense_out, dense_name = run()
                    dense_ms = best_ms(run, args.repeats)
                finally:
                    index_form.fused_gather_applies = applies  # type: ignore[assignment]
                    index_form.FUSED_KEYS_MAX_DENSITY = density
                if dense_name != "reference/dense-chunk":
                    continue  # the torch strategy is the gather here: the kernel ran already
                assert fused_name == "reference/gather-fused", fused_name
                diff = (fused_out - dense_out).abs().max().item()
                assert diff < 1e-4, diff
                print(
                    f"| {b}, {q}, {k} | {layout} | {width} ({width / k:.0%}) | {dense_ms:.2f} ms | "
                    f"{fused_ms:.2f} ms | {dense_ms / fused_ms:.2f}x | {chosen} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""ResearchAttention speed vs dense SDPA, ratios measured in the same run (issue 11).

Decode: B=1, Hq=32, Hkv=8, D=128, fp32, K in {4K, 16K, 32K}, every stack
Sink(128) + Local(128) + one of: OracleTopK(0.05), AdaptiveSampling(0.05, eps 0.25,
delta 0.25; vAttention), Quest(0.05, page 16, 16-bit bounds) from a cold and from a warm
page cache, HashAttention(0.05, 32 bits, random 3-layer MLPs), DoubleSparsity(0.05, 16 of 128
channels from a calibration file, 16-bit labels), PQCache(0.05, 2 sub-spaces, 64 centroids,
fitted on the first call), vs ``scaled_dot_product_attention(q, k, v, enable_gqa=True)``.
A warm stack keeps its request state (``sparse_meta_data``) across calls, as in decode.
Prefill: Q=K=2048, B=1, H=8, D=64, causal, [Sink(128), OracleTopK(0.05)] vs causal SDPA.
Each row also gives the issue's target and the torch ops of one layer call (torch profiler,
top-level ``aten::`` ops: each is a kernel launch on a GPU).

Run: ``uv run python benchmarks/core_decode.py [--threads 2] [--repeats 7] [--quick]``;
``--ops`` prints only the op counts (load-independent, seconds).
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
import os
import statistics
import sys
import tempfile
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
from sah_core.maskers import (
    DoubleSparsityTopKMaskerConfig,
    HashAttentionTopKMaskerConfig,
    PQCacheConfig,
    QuestTopKMaskerConfig,
)


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


#: Decode stacks: name -> (config factory, warm). A warm stack keeps its request state
#: (page summaries, key codes, labels, centroids) across calls, as in decode; a cold one
#: starts from an empty state every call (Quest's first decode step after a dense prefill).
def decode_stacks() -> dict[str, tuple[ResearchAttentionConfig, bool]]:
    def sink_local(*more: Any) -> ResearchAttentionConfig:
        return ResearchAttentionConfig([SinkMaskerConfig(128), LocalMaskerConfig(128), *more])

    def quest() -> Any:
        return QuestTopKMaskerConfig(heavy_size=0.05, page_size=16, label_bits=16)

    return {
        "sink+local+oracle_topk": (sink_local(OracleTopKConfig(0.05)), False),
        "sink+local+adaptive": (
            sink_local(AdaptiveSamplingMaskerConfig(0.05, 0.25, 0.25, 128, 128)),
            False,
        ),
        "sink+local+quest (cold)": (sink_local(quest()), False),
        "sink+local+quest (warm)": (sink_local(quest()), True),
        "sink+local+hash_attention": (sink_local(hash_attention_config()), True),
        "sink+local+double_sparsity": (sink_local(double_sparsity_config()), True),
        "sink+local+pq_cache": (
            sink_local(PQCacheConfig(heavy_size=0.05, pq_group_factor=2, init_offset=128)),
            True,
        ),
    }


def decode_target(name: str) -> float | None:
    """Issue 11's target ratio to dense GQA SDPA (None: no target, Quest from cold)."""
    if "cold" in name:
        return None
    return 1.0 if "adaptive" in name else 0.8


def hash_attention_config() -> Any:
    """HashAttention with random (untrained) MLP weights of the usual shape: 3 layers, 128
    hidden, 32 bits, 32 query / 8 key heads (speed does not depend on the weights)."""
    gen = torch.Generator().manual_seed(1)

    def mlp(heads: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        sizes = [(128, 128), (128, 128), (128, 32)]
        weights = [torch.randn(heads, i, o, generator=gen) / i**0.5 for i, o in sizes]
        return weights, [torch.zeros(heads, o) for _, o in sizes]

    qw, qb = mlp(32)
    kw, kb = mlp(8)
    weights = {0: {"query_matrix": qw, "query_bias": qb, "key_matrix": kw, "key_bias": kb}}
    return HashAttentionTopKMaskerConfig(
        heavy_size=0.05,
        hat_bits=32,
        hat_mlp_layers=3,
        hat_mlp_hidden_size=128,
        hat_weights=weights,
    )


def double_sparsity_config() -> Any:
    """Double Sparsity with a calibration file of random channel orders (16 of 128 channels,
    16-bit labels): the label cache is extended incrementally, as with real calibration."""
    gen = torch.Generator().manual_seed(2)
    channels = [torch.randperm(128, generator=gen).tolist() for _ in range(8)]
    path = os.path.join(tempfile.gettempdir(), "sah_core_decode_channels.json")
    with open(path, "w", encoding="ascii") as handle:
        json.dump({"model.layers.0.self_attn.qk_proj": channels}, handle)
    return DoubleSparsityTopKMaskerConfig(
        heavy_size=0.05, sorted_channel_file=path, group_factor=8, label_bits=16
    )


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
        config, warm = decode_stacks()[case[len("decode:") :]]
        attention = ResearchAttention.create_from_config(config)
        scale = 128**-0.5
        state: dict[Any, Any] = {}

        def run() -> Any:
            meta = state if warm else {}
            return attention.custom_attention(None, q, k, v, None, scale, 0.0, meta, layer_idx=0)

        return run
    q, k, v, mask = prefill_inputs()
    if case == "dense_prefill":
        return lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    attention = ResearchAttention.create_from_config(
        ResearchAttentionConfig([SinkMaskerConfig(128), OracleTopKConfig(0.05)])
    )
    return lambda: attention.custom_attention(None, q, k, v, mask, 64**-0.5, 0.0, {}, layer_idx=0)


def op_count(fn: Callable[[], Any]) -> int:
    """Top-level torch ops one call dispatches: ``aten::`` ops with no ``aten::`` op above
    them (nested ops of a composite op are not counted; the ``sah.*`` profiler ranges of
    ``ResearchAttention`` are looked through)."""
    from torch.profiler import ProfilerActivity, profile

    fn()  # warm-up (lazy imports, caches, a warm stack's state)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()

    def top_level(event: Any) -> bool:
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith("aten::"):
                return False
            parent = parent.cpu_parent
        return True

    return sum(1 for e in prof.events() if e.name.startswith("aten::") and top_level(e))


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
    if case.startswith("decode:") and decode_stacks()[case[len("decode:") :]][1]:
        fn()  # a warm stack: its request state is resident too
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
            row["ops"] = op_count(make_case(case, key_len))
            row["target"] = decode_target(name)
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
        "ops": op_count(make_case("prefill", 0)),
        "target": 3.0,
    }
    if not args.no_memory:
        row.update(_memory("prefill", "dense_prefill", 0, args.threads))
    rows.append(row)
    print(f"torch {torch.__version__}, threads={args.threads}, rounds={args.repeats} (medians)")
    print(
        f"| {'case':44s} | dense ms | sparse ms | time ratio | target | ops/call "
        "| peak RSS ratio | extra MiB d/s |"
    )
    print(
        f"|{'-' * 46}|---------:|----------:|-----------:|-------:|---------:"
        "|---------------:|--------------:|"
    )
    for row in rows:
        target = "-" if row["target"] is None else f"<={row['target']:.2g}x"
        mem = "n/a" if "mem_ratio" not in row else f"{row['mem_ratio']:.2f}x"
        extra = (
            "n/a"
            if "mem_ratio" not in row
            else f"{row['dense_extra_mib']:.0f}/{row['sparse_extra_mib']:.0f}"
        )
        print(
            f"| {row['case']:44s} | {row['dense_ms']:8.1f} | {row['sparse_ms']:9.1f} | "
            f"{row['ratio']:9.2f}x | {target:>6s} | {row['ops']:8d} | {mem:>14s} | {extra:>13s} |"
        )
    if args.json:
        json.dump(rows, sys.stdout, indent=1)


if __name__ == "__main__":
    main()

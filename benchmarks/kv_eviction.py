"""KV bytes held after the context prefill, and the request's peak memory, with KV eviction.

SmolLM2-135M (built-in offline model), a ~2K-token context, one question: dense vs SnapKV at a
25% budget (targets: KV bytes <= 0.3x dense, index overhead included; peak <= 0.6x dense),
beside PyramidKV, AdaKV (per-head layout: its padding and index are counted) and StreamingLLM
at the same budget. KV bytes are ``RequestStats.context_kv_bytes`` (what the cache tensors
hold right after the context prefill and its eviction).

Each case runs in its own process with ``MALLOC_MMAP_THRESHOLD_`` fixed (every large tensor
is its own mapping, returned to the OS when freed); the peak is the resident set's high-water
mark (``VmHWM``, reset through ``/proc/self/clear_refs`` just before the request) minus the
resident set then: the memory the request itself needed (the weights are not counted). On
CUDA it is ``torch.cuda.max_memory_allocated`` above the memory allocated before.

Usage: ``uv run python benchmarks/kv_eviction.py [--context-tokens 2000] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CASES = ("dense", "snapkv", "pyramidkv", "adakv", "streaming_llm")


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _config(case: str, budget: float) -> Any:
    from sah_core import ResearchAttentionConfig
    from sah_core.eviction import AdaKVConfig, PyramidKVConfig, SnapKVConfig, StreamingLLMConfig

    configs = {
        "snapkv": SnapKVConfig(budget=budget),
        "pyramidkv": PyramidKVConfig(budget=budget),
        "adakv": AdaKVConfig(budget=budget),
        "streaming_llm": StreamingLLMConfig(budget=budget),
    }
    return None if case == "dense" else ResearchAttentionConfig([configs[case]])


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    """One case in this process: load, warm up, then measure one request."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from adapter_requests import build_context

    from sah_adapters import ModelAdapterHF
    from sah_protocol import Request

    torch.set_num_threads(1)
    adapter = ModelAdapterHF(args.model, _config(args.case, args.budget), device=args.device)
    context, questions = build_context(adapter.tokenizer, args.context_tokens)
    request = Request(context, questions[:1])
    gen = {"max_new_tokens": args.new_tokens, "eos_token_id": []}
    adapter.process_request(Request(context[:2000], questions[:1]), gen)  # warm-up
    cuda = next(adapter.model.parameters()).device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _rss_kib("VmRSS") * 1024
    adapter.process_request(request, gen)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_kib("VmHWM") * 1024
    stats = adapter.last_request_stats
    assert stats is not None
    return {
        "case": args.case,
        "budget": None if args.case == "dense" else args.budget,
        "context_tokens": stats.context_tokens,
        "kv_bytes_before_eviction": stats.context_kv_bytes_before_eviction,
        "kv_bytes": stats.context_kv_bytes,
        "peak_above_start_bytes": peak - before,
        "answer": adapter.tokenizer.decode(stats.answer_token_ids[0]),
        "measure": "cuda max_memory_allocated" if cuda else "VmHWM (mmap threshold 64 KiB)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default=None)
    parser.add_argument("--context-tokens", type=int, default=2000)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--json", default=None)
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(args)))
        return
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    results = []
    for case in CASES:
        command = [sys.executable, __file__, "--case", case, "--model", args.model]
        command += ["--context-tokens", str(args.context_tokens), "--budget", str(args.budget)]
        command += ["--new-tokens", str(args.new_tokens)]
        if args.device:
            command += ["--device", args.device]
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    dense = results[0]
    print(f"context {dense['context_tokens']} tokens, budget {args.budget:.0%}, same run")
    for row in results:
        row["kv_ratio"] = row["kv_bytes"] / dense["kv_bytes"]
        row["peak_ratio"] = row["peak_above_start_bytes"] / dense["peak_above_start_bytes"]
        print(
            f"{row['case']:14s} KV {row['kv_bytes'] / 2**20:7.2f} MiB ({row['kv_ratio']:.3f}x)  "
            f"peak +{row['peak_above_start_bytes'] / 2**20:7.1f} MiB ({row['peak_ratio']:.3f}x)"
            f"  answer {row['answer']!r}"
        )
    print("targets: snapkv KV <= 0.3x dense, peak <= 0.6x dense")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

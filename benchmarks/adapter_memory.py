"""Peak memory of a 4-question request vs a 1-question one (SmolLM2-135M, ~3.5K context).

The adapter extends the context's KV cache for each question batch and rolls it back
afterwards, so answering 4 questions one after another should need no more memory than
answering 1 (target: <= 1.1x, measured as the request's peak above the memory held before it).

On CUDA the peak is ``torch.cuda.max_memory_allocated``. On the CPU each case runs in its own
process with ``MALLOC_MMAP_THRESHOLD_`` fixed, so every large tensor is its own mapping that is
returned to the OS when freed; the peak is then the resident set's high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs`` just before the request).

Usage: ``uv run python benchmarks/adapter_memory.py [--context-tokens 3500] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CASES = {
    "1 question": (1, 1),
    "4 questions, batch_size=1": (4, 1),
    "4 questions, batch_size=4": (4, 4),
}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    """One case in this process: load, warm up, then measure one request's peak."""
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from adapter_requests import build_context

    from sah_adapters import ModelAdapterHF
    from sah_protocol import Request

    torch.set_num_threads(1)
    questions, batch_size = CASES[args.case]
    adapter = ModelAdapterHF(args.model, device=args.device)
    context, all_questions = build_context(adapter.tokenizer, args.context_tokens)
    request = Request(context, all_questions[:questions])
    gen = {"max_new_tokens": args.new_tokens, "eos_token_id": []}
    options = {"batch_size": batch_size}
    cuda = next(adapter.model.parameters()).device.type == "cuda"
    adapter.process_request(Request(context[:2000], all_questions[:1]), gen)  # warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _rss_kib("VmRSS") * 1024
    adapter.process_request(request, gen, options)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_kib("VmHWM") * 1024
    stats = adapter.last_request_stats
    assert stats is not None
    config = adapter.model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = next(adapter.model.parameters()).element_size()
    # For scale: K and V of every layer for the context tokens.
    context_kv = (
        2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * element
    ) * stats.context_tokens
    return {
        "case": args.case,
        "context_tokens": stats.context_tokens,
        "questions": questions,
        "batch_size": batch_size,
        "peak_above_start_bytes": peak - before,
        "context_kv_bytes": context_kv,
        "measure": "cuda max_memory_allocated" if cuda else "VmHWM (mmap threshold 64 KiB)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default=None)
    parser.add_argument("--context-tokens", type=int, default=3500)
    parser.add_argument("--new-tokens", type=int, default=8)
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
        command += ["--context-tokens", str(args.context_tokens)]
        command += ["--new-tokens", str(args.new_tokens)]
        if args.device:
            command += ["--device", args.device]
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = results[0]["peak_above_start_bytes"]
    print(f"context {results[0]['context_tokens']} tokens, {args.new_tokens} new tokens each")
    for row in results:
        row["ratio_vs_one_question"] = row["peak_above_start_bytes"] / base
        print(
            f"{row['case']:28s} peak +{row['peak_above_start_bytes'] / 2**20:8.1f} MiB  "
            f"ratio {row['ratio_vs_one_question']:.3f}  "
            f"(context KV {row['context_kv_bytes'] / 2**20:.1f} MiB)"
        )
    print("target: '4 questions, batch_size=1' <= 1.1x '1 question'")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

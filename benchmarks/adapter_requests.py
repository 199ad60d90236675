"""ModelAdapterHF request throughput on SmolLM2-135M (built-in, offline).

Measures, in one run on the same machine:

1. one request with 8 questions vs 8 single-question requests (2K-token context, 16 new
   tokens per question; the context is prefilled once per request, so the single-question
   requests pay 8 prefills). Target: the one request takes <= 0.3x the time.
2. dense adapter tokens/s vs plain ``model.generate`` on the same prompt (same token ids,
   greedy). Target: >= 0.95x.

Usage: ``uv run python benchmarks/adapter_requests.py [--repeats 3] [--json out.json]``.
Each timing is the best of ``--repeats`` runs (the least disturbed by other load).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import torch

from sah_adapters import ModelAdapterHF
from sah_adapters.prompt_builder import (
    build_template,
    encode_context,
    encode_question,
    has_chat_template,
    question_text,
)
from sah_protocol import Request

NUM_QUESTIONS = 8
NEW_TOKENS = 16
CONTEXT_TOKENS = 2048
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black", "silver"]


def build_context(tokenizer: Any, target_tokens: int) -> tuple[str, list[str]]:
    """Deterministic filler facts about numbered boxes, cut at ~target_tokens tokens."""
    sentences: list[str] = []
    box = 0
    while True:
        sentence = (
            f"Box number {box} is painted {COLORS[box % len(COLORS)]} and holds "
            f"{(box * 37) % 101} marbles. "
        )
        if len(tokenizer("".join([*sentences, sentence]))["input_ids"]) > target_tokens:
            break
        sentences.append(sentence)
        box += 1
    questions = [
        f"\nHow many marbles does box number {b} hold?"
        for b in range(0, box, max(box // NUM_QUESTIONS, 1))
    ][:NUM_QUESTIONS]
    return "".join(sentences), questions


def interleaved_best(repeats: int, runs: dict[str, Callable[[], Any]]) -> dict[str, float]:
    """Best time of each run over ``repeats`` rounds; every round runs each once, in turn,
    so a burst of outside load hits all of them alike rather than one block."""
    best = dict.fromkeys(runs, float("inf"))
    for round_index in range(repeats):
        for label, run in runs.items():
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            print(f"  round {round_index + 1} {label}: {elapsed:.2f} s", flush=True)
            best[label] = min(best[label], elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared 2-core box, 2 threads oversubscribe "
        "and small decode matmuls stall on OpenMP barriers; 0 = torch's default)",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    adapter = ModelAdapterHF(args.model, device=args.device)
    tokenizer, model = adapter.tokenizer, adapter.model
    context, questions = build_context(tokenizer, CONTEXT_TOKENS)
    # eos_token_id=[] turns EOS off, so every answer has exactly NEW_TOKENS tokens.
    gen = {"max_new_tokens": NEW_TOKENS, "eos_token_id": []}

    adapter.process_request(Request(context, questions[:2]), gen)  # warm-up
    context_tokens = adapter.last_request_stats.context_tokens

    # Rebuild exactly the ids the adapter runs for question 0 (context part + question part),
    # for model.generate on the same prompt.
    template = build_template(tokenizer, context, has_chat_template(tokenizer))
    ids = encode_context(tokenizer, template) + encode_question(
        tokenizer, question_text(template, questions[0], "")
    )
    input_ids = torch.tensor([ids], device=next(model.parameters()).device)
    long_new = 64
    generated: dict[str, int] = {}

    def plain_generate() -> None:
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=long_new,
                min_new_tokens=long_new,  # same length as the adapter's run (EOS off there)
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id or 0,
            )
        generated["generate"] = out.shape[1] - input_ids.shape[1]

    def dense_adapter() -> None:
        adapter.process_request(
            Request(context, questions[0]), {"max_new_tokens": long_new, "eos_token_id": []}
        )
        generated["adapter"] = adapter.last_request_stats.generated_tokens[0]

    best = interleaved_best(
        args.repeats,
        {
            # 1. Many questions in one request vs one question per request.
            "8 single-question requests": lambda: [
                adapter.process_request(Request(context, q), gen) for q in questions
            ],
            "1 request, batch 8": lambda: adapter.process_request(
                Request(context, questions), gen, {"batch_size": NUM_QUESTIONS}
            ),
            "1 request, batch 1": lambda: adapter.process_request(Request(context, questions), gen),
            # 2. Dense adapter vs model.generate on the same prompt (greedy, same length).
            "dense adapter": dense_adapter,
            "model.generate": plain_generate,
        },
    )
    t_single, t_batched = best["8 single-question requests"], best["1 request, batch 8"]
    t_sequential = best["1 request, batch 1"]
    t_adapter, t_generate = best["dense adapter"], best["model.generate"]
    adapter_tokens, generate_tokens = generated["adapter"], generated["generate"]
    adapter_tps, generate_tps = adapter_tokens / t_adapter, generate_tokens / t_generate

    results = {
        "model": args.model,
        "device": str(next(model.parameters()).device),
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "context_tokens": context_tokens,
        "questions": len(questions),
        "new_tokens_per_question": NEW_TOKENS,
        "eight_single_requests_s": t_single,
        "one_request_batched_s": t_batched,
        "one_request_sequential_s": t_sequential,
        "ratio_batched_vs_single": t_batched / t_single,
        "ratio_sequential_vs_single": t_sequential / t_single,
        "adapter_tokens_per_s": adapter_tps,
        "generate_tokens_per_s": generate_tps,
        "ratio_adapter_vs_generate": adapter_tps / generate_tps,
        "prompt_tokens": len(ids),
        "tokens_generated": {"adapter": adapter_tokens, "generate": generate_tokens},
    }
    print(f"model {args.model} on {results['device']}, context {context_tokens} tokens")
    print(f"8 single-question requests        {t_single:8.2f} s")
    print(
        f"1 request, 8 questions, batch 8   {t_batched:8.2f} s  "
        f"ratio {t_batched / t_single:.3f} (target <= 0.3)"
    )
    print(
        f"1 request, 8 questions, batch 1   {t_sequential:8.2f} s  "
        f"ratio {t_sequential / t_single:.3f}"
    )
    print(
        f"dense adapter {adapter_tps:6.2f} tok/s vs model.generate {generate_tps:6.2f} tok/s: "
        f"ratio {adapter_tps / generate_tps:.3f} (target >= 0.95)"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    adapter.close()


if __name__ == "__main__":
    main()

"""Choosing the next token from logits: greedy, or temperature / top-k / top-p sampling.

Top-p is nucleus sampling (Holtzman et al., 2020, "The Curious Case of Neural Text
Degeneration"): keep the smallest set of most likely tokens whose probability reaches p.
"""

from __future__ import annotations

import torch

from sah_adapters.generation_settings import GenerationSettings


def select_next_tokens(
    logits: torch.Tensor, settings: GenerationSettings, generator: torch.Generator | None
) -> torch.Tensor:
    """logits [B, V] → token ids [B]."""
    if not settings.do_sample:
        return logits.argmax(dim=-1)
    scores = logits.float() / settings.temperature
    if 0 < settings.top_k < scores.shape[-1]:
        kth_best = torch.topk(scores, settings.top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth_best, float("-inf"))
    if settings.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        sorted_probs = torch.softmax(sorted_scores, dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p (the best one stays).
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = mass_before >= settings.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)

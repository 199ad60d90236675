"""The token loop of one question batch: choose, stop, feed back.

Token choice and stopping are transformers' own components, built as ``generate`` builds them
(``TemperatureLogitsWarper`` → ``TopKLogitsWarper`` → ``TopPLogitsWarper``, softmax +
multinomial or argmax over float32 scores; ``EosTokenCriteria``, ``StopStringCriteria``), so a
dense adapter equals ``model.generate`` token for token, sampling included. The loop itself is
ours because the adapter drives the KV cache and the attention mode of every forward pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from sah_adapters.generation_settings import GenerationSettings

#: ``step(tokens [B]) -> next logits [B, V]``: one forward pass of the chosen tokens.
StepFunction = Callable[[torch.Tensor], torch.Tensor]


def build_logits_processors(settings: GenerationSettings) -> Any:
    """The warpers ``generate`` applies for these settings (empty when greedy)."""
    from transformers import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    processors = LogitsProcessorList()
    if not settings.do_sample:
        return processors
    if settings.temperature != 1.0:
        processors.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_k != 0:
        processors.append(TopKLogitsWarper(top_k=settings.top_k))
    if settings.top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=settings.top_p))
    return processors


@functools.lru_cache(maxsize=16)
def _stop_string_criteria(tokenizer: Any, stop: tuple[str, ...]) -> Any:
    # Building it walks the whole vocabulary once per stop string: reuse it across requests.
    from transformers import StopStringCriteria

    return StopStringCriteria(tokenizer=tokenizer, stop_strings=list(stop))


def build_stopping_criteria(
    settings: GenerationSettings, tokenizer: Any, eos_token_ids: tuple[int, ...]
) -> Any:
    """EOS and stop-string criteria; they are called on the generated tokens only."""
    from transformers import EosTokenCriteria, StoppingCriteriaList

    criteria = StoppingCriteriaList()
    if eos_token_ids:
        criteria.append(EosTokenCriteria(eos_token_id=list(eos_token_ids)))
    if settings.stop:
        criteria.append(_stop_string_criteria(tokenizer, settings.stop))
    return criteria


class TokenDecoder:
    """Generates up to ``max_new_tokens`` per row from the logits after the question.

    A row stops at an EOS token (not part of its answer) or at the token that completes a stop
    string (kept; the text is cut at the stop string afterwards). Finished rows keep receiving
    ``pad_token_id`` until every row is done, as in ``generate``.
    """

    def __init__(
        self,
        settings: GenerationSettings,
        tokenizer: Any,
        eos_token_ids: tuple[int, ...],
        pad_token_id: int,
    ) -> None:
        self.settings = settings
        self.eos_token_ids = eos_token_ids
        self.pad_token_id = pad_token_id
        self.processors = build_logits_processors(settings)
        self.stopping = build_stopping_criteria(settings, tokenizer, eos_token_ids)

    def _choose(self, generated: torch.Tensor, logits: torch.Tensor, rng: Any) -> torch.Tensor:
        scores: torch.Tensor = self.processors(generated, logits.float())
        if not self.settings.do_sample:
            return scores.argmax(dim=-1)
        probs = torch.softmax(scores, dim=-1)
        return torch.multinomial(probs, num_samples=1, generator=rng).squeeze(1)

    def run(
        self,
        first_logits: torch.Tensor,
        step: StepFunction,
        generator: torch.Generator | None = None,
    ) -> list[list[int]]:
        """The answer token ids of each row (EOS excluded)."""
        batch = first_logits.shape[0]
        device = first_logits.device
        generated = torch.empty((batch, 0), dtype=torch.long, device=device)
        unfinished = torch.ones(batch, dtype=torch.bool, device=device)
        produced = torch.zeros(batch, dtype=torch.long, device=device)  # tokens while alive
        logits = first_logits
        for index in range(self.settings.max_new_tokens):
            tokens = self._choose(generated, logits, generator)
            tokens = torch.where(unfinished, tokens, self.pad_token_id)
            generated = torch.cat([generated, tokens[:, None]], dim=1)
            produced += unfinished
            if len(self.stopping):
                unfinished &= ~self.stopping(generated, None)
            last = index == self.settings.max_new_tokens - 1
            if last or not bool(unfinished.any()):
                break
            logits = step(tokens)
        answers = []
        eos = set(self.eos_token_ids)
        for row, count in zip(generated.tolist(), produced.tolist(), strict=True):
            kept = row[:count]
            if kept and kept[-1] in eos:
                kept = kept[:-1]
            answers.append(kept)
        return answers


def finish_text(tokenizer: Any, tokens: list[int], stop: tuple[str, ...]) -> str:
    """The answer text: decoded without special tokens, cut before the first stop string."""
    text: str = tokenizer.decode(tokens, skip_special_tokens=True)
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return text[:cut] if cut >= 0 else text

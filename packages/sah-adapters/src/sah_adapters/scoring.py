"""Log-likelihoods of continuations under a ``ModelAdapterHF``, sparse config applied.

What lm-eval-harness's ``loglikelihood`` asks of a model: ``log p(continuation | context)``
summed over the continuation tokens, and whether greedy decoding would have produced them.
The phases map onto the data flow of :meth:`ModelAdapterHF.process_request`:

- the context (minus its last ``question_tokens`` tokens) is the **prefill** phase: prefilled
  once per group of continuations that share it (dense unless the stack acts in
  ``"prefill"``), reused from the adapter's ``ContextCacheStore`` when it is dense;
- the last ``question_tokens`` context tokens (default 0) are the **question** phase;
- the continuation tokens are the **decode** phase (the tokens the model would generate),
  teacher-forced in one forward per batch (or one token per forward with
  ``question_feed="token"``).

Continuations of one context are batched like the adapter's questions: left-padded inside their
own segment ``[context | question | pads | continuation]``, pads masked out as keys and given no
position, so a row scores what it would alone. After each batch the context KV cache is rolled
back (no copy). The first continuation token is scored from the logits at the last position of
the context (prefill or question phase), every later one from the continuation's own positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sah_adapters.generation_settings import QUESTION_FEEDS, RequestSettings
from sah_adapters.request_stats import RequestStats


@dataclass(frozen=True)
class ContinuationScore:
    """``logprob``: sum of the continuation's token log-probabilities (natural log);
    ``is_greedy``: every continuation token was the argmax; ``token_logprobs``: per token."""

    logprob: float
    is_greedy: bool
    token_logprobs: tuple[float, ...]


def _check_ids(name: str, ids: Any, vocab: int) -> list[int]:
    if not isinstance(ids, Sequence) or isinstance(ids, str) or not ids:
        raise ValueError(f"{name}={ids!r:.80} must be a non-empty list of token ids")
    out = []
    for token in ids:
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab:
            raise ValueError(f"{name} holds {token!r}, not a token id in [0, {vocab})")
        out.append(int(token))
    return out


def score_continuations(
    adapter: Any,
    context_ids: Sequence[int],
    continuations: Sequence[Sequence[int]],
    *,
    batch_size: int = 1,
    question_tokens: int = 0,
    request_kwargs: dict[str, Any] | None = None,
) -> list[ContinuationScore]:
    """Score every continuation after ``context_ids`` (see the module docstring).

    ``adapter`` is an open :class:`~sah_adapters.ModelAdapterHF`. ``request_kwargs`` takes the
    adapter's ``question_feed`` (``"block"`` | ``"token"``) and ``sparse_prefill``; other keys
    of ``process_request`` have no meaning here and are refused. Timings land in
    ``adapter.last_request_stats``.
    """
    adapter._require_open()
    eviction = getattr(adapter, "_eviction", None)
    if eviction is not None:
        raise ValueError(
            f"the sparse config holds the KV eviction {type(eviction.config).__name__}, which "
            "log-likelihood scoring does not apply; score with a selection-only stack "
            "(evictions run in process_request / generation)"
        )
    vocab = int(adapter.model.get_output_embeddings().weight.shape[0])
    context = _check_ids("context_ids", context_ids, vocab)
    if isinstance(continuations, str) or not isinstance(continuations, Sequence):
        raise ValueError(f"continuations={continuations!r:.80} must be a list of token id lists")
    conts = [_check_ids(f"continuations[{i}]", c, vocab) for i, c in enumerate(continuations)]
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
    if (
        isinstance(question_tokens, bool)
        or not isinstance(question_tokens, int)
        or not 0 <= question_tokens < len(context)
    ):
        raise ValueError(
            f"question_tokens={question_tokens!r} must be an int in [0, {len(context) - 1}] "
            f"(the context has {len(context)} tokens; at least one is prefilled)"
        )
    kwargs = dict(request_kwargs or {})
    extra = sorted(set(kwargs) - {"question_feed", "sparse_prefill"})
    if extra:
        raise ValueError(
            f"request_kwargs keys {extra} are not allowed when scoring; allowed: "
            "['question_feed', 'sparse_prefill']"
        )
    options = RequestSettings.from_kwargs(kwargs)
    split = len(context) - question_tokens
    prefix, question = context[:split], context[split:]
    stats = RequestStats(context_tokens=len(prefix))
    stats.question_tokens = [len(question)] * len(conts)
    scores: list[ContinuationScore] = []
    adapter._request_phases = adapter._phases_for(options)
    try:
        with torch.no_grad():
            state = adapter._context_state(prefix, stats)
            batches = [conts[i : i + batch_size] for i in range(0, len(conts), batch_size)]
            for index, batch in enumerate(batches):
                more_follow = index + 1 < len(batches)
                cache = state.cache_for_batch(more_follow)
                try:
                    scores.extend(
                        _score_batch(adapter, cache, state, question, batch, options, stats)
                    )
                finally:
                    state.after_batch(cache, more_follow)
    finally:
        adapter._eviction_run = None
        adapter._phase = None
        adapter._request_phases = ()
    adapter.last_request_stats = stats
    return scores


def _forward_all(
    adapter: Any,
    cache: Any,
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    mask: torch.Tensor | None,
    seen_before: int,
    feed: str,
) -> torch.Tensor:
    """Logits ``[B, T, V]`` of every fed position (one forward, or one per token)."""
    width = input_ids.shape[1]
    steps = [(0, width)] if feed == "block" else [(t, t + 1) for t in range(width)]
    logits = []
    for start, end in steps:
        out = adapter.model(
            input_ids=input_ids[:, start:end],
            attention_mask=None if mask is None else mask[:, : seen_before + end],
            position_ids=positions[:, start:end],
            use_cache=True,
            **{adapter._cache_argument: cache},
        )
        logits.append(out.logits.float())
    return torch.cat(logits, dim=1) if len(logits) > 1 else logits[0]


def _score_batch(
    adapter: Any,
    cache: Any,
    state: Any,
    question: list[int],
    conts: list[list[int]],
    options: RequestSettings,
    stats: RequestStats,
) -> list[ContinuationScore]:
    import time

    device = adapter._model_device()
    feed = options.question_feed
    assert feed in QUESTION_FEEDS
    batch = len(conts)
    if batch > 1:
        cache.batch_repeat_interleave(batch)
    adapter._sparse_meta_data = {}  # per-batch sparse state: nothing leaks across batches
    start = state.length
    first_logits = state.logits
    t0 = time.perf_counter()
    if question:
        ids = torch.tensor([question] * batch, device=device)
        positions = start + torch.arange(len(question), device=device).expand(batch, -1)
        adapter._phase = "question"
        try:
            with adapter._mode_for("question"):
                logits = _forward_all(adapter, cache, ids, positions, None, start, feed)
        finally:
            adapter._phase = None
        first_logits = logits[:, -1, :]
        start += len(question)
    assert first_logits is not None  # the prefix is never empty (checked by the caller)
    first_logits = first_logits.float().expand(batch, -1)
    t1 = time.perf_counter()
    stats.question_prefill_seconds += t1 - t0

    fed = [c[:-1] for c in conts]
    longest = max(len(f) for f in fed)
    later: torch.Tensor | None = None
    if longest > 0:
        pad = adapter._pad_token_id()
        input_ids = torch.full((batch, longest), pad, dtype=torch.long)
        positions = torch.full((batch, longest), start, dtype=torch.long)
        padded = len({len(f) for f in fed}) > 1
        mask = torch.ones((batch, start + longest), dtype=torch.long) if padded else None
        for row, ids_row in enumerate(fed):
            if mask is not None:
                mask[row, start : start + longest - len(ids_row)] = 0
            if ids_row:
                input_ids[row, longest - len(ids_row) :] = torch.tensor(ids_row)
                positions[row, longest - len(ids_row) :] = start + torch.arange(len(ids_row))
        adapter._phase = "decode"
        try:
            with adapter._mode_for("decode"):
                later = _forward_all(
                    adapter,
                    cache,
                    input_ids.to(device),
                    positions.to(device),
                    None if mask is None else mask.to(device),
                    start,
                    feed,
                )
        finally:
            adapter._phase = None
    stats.decode_seconds += time.perf_counter() - t1

    results = []
    for row, cont in enumerate(conts):
        n = len(cont) - 1
        rows = [first_logits[row : row + 1]]
        if n > 0:
            assert later is not None
            rows.append(later[row, longest - n :])
        logits = torch.cat(rows, dim=0)  # [len(cont), V]: row i predicts cont[i]
        logprobs = torch.log_softmax(logits, dim=-1)
        target = torch.tensor(cont, device=logprobs.device)
        picked = logprobs.gather(1, target[:, None])[:, 0]
        greedy = bool((logits.argmax(dim=-1) == target).all())
        token_logprobs = tuple(float(x) for x in picked.tolist())
        results.append(ContinuationScore(float(picked.double().sum()), greedy, token_logprobs))
    return results

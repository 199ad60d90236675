"""Per-request timings and token counts, read by benchmark executors."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RequestStats:
    """What the last ``process_request`` call spent, in seconds and tokens."""

    context_tokens: int = 0
    question_tokens: list[int] = field(default_factory=list)
    generated_tokens: list[int] = field(default_factory=list)
    # The generated token ids of each answer (EOS excluded), in question order.
    answer_token_ids: list[list[int]] = field(default_factory=list)
    # The context KV came from a shared ContextCacheStore (no prefill ran in this request).
    context_cache_hit: bool = False
    # Bytes of the context's KV cache right after its prefill, before and after an eviction
    # (equal without one; per-head layouts include their index).
    context_kv_bytes_before_eviction: int = 0
    context_kv_bytes: int = 0
    context_prefill_seconds: float = 0.0  # dense prefill of the context (once per request)
    question_prefill_seconds: float = 0.0  # the question tokens of every batch, sparse mode
    decode_seconds: float = 0.0  # generated tokens after the first, sparse mode
    total_seconds: float = 0.0

    @property
    def prefill_seconds(self) -> float:
        return self.context_prefill_seconds + self.question_prefill_seconds

    @property
    def decode_tokens_per_second(self) -> float:
        steps = sum(max(n - 1, 0) for n in self.generated_tokens)
        return steps / self.decode_seconds if self.decode_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "context_tokens": self.context_tokens,
            "question_tokens": list(self.question_tokens),
            "generated_tokens": list(self.generated_tokens),
            "context_cache_hit": self.context_cache_hit,
            "context_kv_bytes_before_eviction": self.context_kv_bytes_before_eviction,
            "context_kv_bytes": self.context_kv_bytes,
            "context_prefill_seconds": self.context_prefill_seconds,
            "question_prefill_seconds": self.question_prefill_seconds,
            "prefill_seconds": self.prefill_seconds,
            "decode_seconds": self.decode_seconds,
            "total_seconds": self.total_seconds,
        }

"""Offline RULER-style synthetic tasks."""

from sah_bench.synthetic.length import (
    TokenCounter,
    tokenizer_token_counter,
    whitespace_token_count,
)
from sah_bench.synthetic.tasks import SYNTHETIC_TASKS, generate_row, generate_rows

__all__ = [
    "SYNTHETIC_TASKS",
    "TokenCounter",
    "generate_row",
    "generate_rows",
    "tokenizer_token_counter",
    "whitespace_token_count",
]

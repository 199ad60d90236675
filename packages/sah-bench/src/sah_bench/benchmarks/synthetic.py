"""The offline synthetic suite (the default benchmark): RULER-style tasks generated from a seed
at a target length, scored like RULER (``string_match_all``).

No download: every row is built by :mod:`sah_bench.synthetic.tasks`. Pass ``token_counter``
(e.g. :func:`~sah_bench.synthetic.tokenizer_token_counter` of the model's tokenizer) so the
target length is measured in the model's tokens; the default counts whitespace words.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sah_bench.benchmarks.base import Benchmark, Scorer
from sah_bench.scorers import string_match_all
from sah_bench.synthetic.length import TokenCounter, whitespace_token_count
from sah_bench.synthetic.tasks import SYNTHETIC_TASKS, generate_rows

MIN_TARGET_TOKENS = 64
MAX_TARGET_TOKENS = 131_072


class SyntheticBenchmark(Benchmark):
    name: ClassVar[str] = "synthetic"
    all_subsets: ClassVar[tuple[str, ...]] = SYNTHETIC_TASKS

    def __init__(
        self,
        data_path: Any = None,
        data_dir: Any = None,
        target_tokens: int = 2048,
        num_samples: int = 10,
        seed: int = 0,
        token_counter: TokenCounter | None = None,
        questions_per_context: int = 1,
    ) -> None:
        super().__init__(data_path)  # data_dir: accepted for the CLI's --data-dir, unused
        if not MIN_TARGET_TOKENS <= int(target_tokens) <= MAX_TARGET_TOKENS:
            raise ValueError(
                f"synthetic: target_tokens {target_tokens} is out of range; allowed: "
                f"{MIN_TARGET_TOKENS}..{MAX_TARGET_TOKENS}"
            )
        if int(num_samples) < 1:
            raise ValueError(f"synthetic: num_samples must be >= 1, got {num_samples}")
        self.target_tokens = int(target_tokens)
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.token_counter = token_counter or whitespace_token_count
        if int(questions_per_context) < 1:
            raise ValueError(
                f"synthetic: questions_per_context must be >= 1, got {questions_per_context}"
            )
        self.questions_per_context = int(questions_per_context)

    def load_rows(self, subset: str, max_rows: int | None = None) -> list[dict[str, Any]]:
        if self.data_path is not None:
            return super().load_rows(subset, max_rows)
        self.check_subset(subset)
        rows = []
        for i in range(self.num_samples):
            rows.extend(
                generate_rows(
                    subset,
                    i,
                    self.seed,
                    self.target_tokens,
                    self.token_counter,
                    self.questions_per_context,
                )
            )
            if max_rows is not None and len(rows) >= max_rows:
                return rows[:max_rows]
        return rows

    def scorer(self, subset: str) -> Scorer:
        return string_match_all

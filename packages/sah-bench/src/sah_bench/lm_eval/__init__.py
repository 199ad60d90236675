"""lm-evaluation-harness backend (extra ``sah-bench[lm-eval]``).

Importing this package registers :class:`SahLM` as lm-eval model ``sah``; ``run_lm_eval``
(``sparse-attention-benchmark lm-eval``) runs lm-eval tasks with a sparse config and writes
lm-eval's scores next to our density as result cells.
"""

from __future__ import annotations

try:
    import lm_eval  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "sah_bench.lm_eval needs lm-evaluation-harness: pip install 'sah-bench[lm-eval]'"
    ) from exc

from sah_bench.lm_eval.model import SahLM, load_sparse_config

__all__ = ["SahLM", "load_sparse_config"]

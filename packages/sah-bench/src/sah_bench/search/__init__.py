"""Sparsity-targeted config search: the best hyperparameters of each method at each density.

``sparse-attention-benchmark search`` (or :func:`run_search`) runs, per method and target
density, a Ray Tune experiment whose trials score points of the method's search space (the
config classes' ``search_space``, see :mod:`sah_core.search_space`) on a small calibration set
by their fidelity (:mod:`.objective`), and writes the best configs as ordinary sparse-config
files (:mod:`.outputs`). Ray is imported only when a search runs (extra ``sah-bench[ray]``).
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> submodule (imported on first use: importing the CLI stays light).
_WHERE = {
    "INVALID_SCORE": "objective",
    "METHODS": "methods",
    "Calibration": "trial",
    "Measurement": "objective",
    "Objective": "objective",
    "SearchMethod": "methods",
    "SearchResult": "runner",
    "SearchSettings": "runner",
    "TrialPayload": "trial",
    "best_rows": "outputs",
    "build_method": "methods",
    "evaluate_point": "trial",
    "parse_domain": "methods",
    "read_trials": "outputs",
    "run_search": "runner",
    "write_outputs": "outputs",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'sah_bench.search' has no attribute {name!r}")
    return getattr(importlib.import_module(f"sah_bench.search.{module}"), name)


__all__ = [
    "INVALID_SCORE",
    "METHODS",
    "Calibration",
    "Measurement",
    "Objective",
    "SearchMethod",
    "SearchResult",
    "SearchSettings",
    "TrialPayload",
    "best_rows",
    "build_method",
    "evaluate_point",
    "parse_domain",
    "read_trials",
    "run_search",
    "write_outputs",
]

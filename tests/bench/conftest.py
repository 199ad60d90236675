"""Shared fixtures of the sah_bench tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
# Importable through pytest's `pythonpath` (pyproject.toml); spawned workers inherit sys.path.

# Ray reads this when first imported (collecting any Ray test module imports it): under
# `uv run pytest` it would otherwise start its workers with `uv run` in a copy of the working
# dir, whose fresh environment lacks ray, and every trial waits minutes for a worker.
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

FAKE_FACTORY = "sah_bench_fakes:make_fake_adapter"


@pytest.fixture
def fake_factory() -> str:
    return FAKE_FACTORY


@pytest.fixture
def tests_dir() -> Path:
    return TESTS_DIR


# Files that take longest (mostly waiting on Ray Tune's trial loop) go first, so under
# pytest-xdist's per-file scheduling they overlap the rest instead of trailing it.
LONG_FILES_FIRST = ("test_search_ray.py", "test_lm_eval.py", "test_search_units.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_FILES_FIRST.index(name) if name in LONG_FILES_FIRST else len(LONG_FILES_FIRST)

    items.sort(key=rank)  # stable: the order within each file is kept

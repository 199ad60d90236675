"""Shared fixtures of the sah_bench tests."""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
# Importable through pytest's `pythonpath` (pyproject.toml); spawned workers inherit sys.path.

FAKE_FACTORY = "sah_bench_fakes:make_fake_adapter"


@pytest.fixture
def fake_factory() -> str:
    return FAKE_FACTORY


@pytest.fixture
def tests_dir() -> Path:
    return TESTS_DIR

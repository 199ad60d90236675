"""Shared fixtures of the sah_bench tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
# Worker processes (spawned) and subprocesses import the fake adapters from here.
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

FAKE_FACTORY = "sah_bench_fakes:make_fake_adapter"


@pytest.fixture
def fake_factory() -> str:
    return FAKE_FACTORY


@pytest.fixture
def tests_dir() -> Path:
    return TESTS_DIR

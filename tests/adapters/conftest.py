"""Fixtures of the adapter tests; helpers live in adapter_testkit.py next to this file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# pytest runs with --import-mode=importlib, so test folders are not importable by default.
sys.path.insert(0, str(Path(__file__).parent))

from adapter_testkit import build_tokenizer


@pytest.fixture(scope="session")
def plain_tokenizer() -> Any:
    return build_tokenizer(chat_template=False)


@pytest.fixture(scope="session")
def chat_tokenizer() -> Any:
    return build_tokenizer(chat_template=True)

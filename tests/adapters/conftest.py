"""Fixtures of the adapter tests; helpers live in adapter_testkit.py next to this file."""

from __future__ import annotations

from typing import Any

import pytest
from adapter_testkit import build_tokenizer


@pytest.fixture(scope="session")
def plain_tokenizer() -> Any:
    return build_tokenizer(chat_template=False)


@pytest.fixture(scope="session")
def chat_tokenizer() -> Any:
    return build_tokenizer(chat_template=True)

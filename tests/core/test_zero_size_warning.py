"""A size of 0 selects nothing, and a stack that selects nothing attends nothing (never
dense): say so in the log."""

from __future__ import annotations

import logging

import pytest

from sah_core import LocalMaskerConfig, OracleTopKConfig, QuestTopKMaskerConfig, SinkMaskerConfig


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: OracleTopKConfig(), "heavy_size"),
        (lambda: QuestTopKMaskerConfig(page_size=16), "heavy_size"),
        (lambda: SinkMaskerConfig(sink_size=0), "sink_size"),
        (lambda: LocalMaskerConfig(), "window_size"),
    ],
)
def test_zero_size_logs_a_warning_naming_the_field(
    make: object, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sah_core"):
        make()  # type: ignore[operator]
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{field}=0" in m and "attends nothing" in m for m in messages), messages


@pytest.mark.parametrize(
    "make",
    [
        lambda: OracleTopKConfig(heavy_size=0.1),
        lambda: SinkMaskerConfig(sink_size=4),
        lambda: LocalMaskerConfig(window_size=8),
    ],
)
def test_nonzero_size_is_quiet(make: object, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sah_core"):
        make()  # type: ignore[operator]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

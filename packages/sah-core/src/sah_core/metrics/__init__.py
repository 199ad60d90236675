"""Micro metrics: per-layer fidelity of sparse attention (density, output error, recall)."""

from sah_core.metrics.micro_metric_logger import (
    ALL_METRICS,
    METRICS_FILENAME,
    MicroMetricLogger,
    attention_mass_recall,
    relative_output_error,
)

__all__ = [
    "ALL_METRICS",
    "METRICS_FILENAME",
    "MicroMetricLogger",
    "attention_mass_recall",
    "relative_output_error",
]

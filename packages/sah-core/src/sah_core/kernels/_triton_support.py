"""Whether Triton can run here, decided once and cheaply (no Triton import at package import)."""

from __future__ import annotations

import importlib.util
import os

import torch

FORCE_REFERENCE_ENV = "SAH_FORCE_REFERENCE_KERNELS"
INTERPRET_ENV = "TRITON_INTERPRET"


def triton_installed() -> bool:
    """True when the ``triton`` package can be imported."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get(INTERPRET_ENV) == "1"


def reference_forced() -> bool:
    """True when ``SAH_FORCE_REFERENCE_KERNELS=1`` asks for the torch reference everywhere."""
    return os.environ.get(FORCE_REFERENCE_ENV, "").strip().lower() in ("1", "true", "yes")


def triton_can_run_on(device: torch.device) -> bool:
    """Triton runs on CUDA tensors, or on CPU tensors under the interpreter."""
    if not triton_installed():
        return False
    if interpreting():
        return device.type == "cpu"
    return device.type == "cuda"


def next_power_of_2(value: int) -> int:
    """Smallest power of two ``>= value`` (and ``>= 1``)."""
    return 1 if value <= 1 else 1 << (value - 1).bit_length()

"""Shared set-up for the kernel tests.

Without CUDA the Triton kernels run in Triton's CPU interpreter, so ``TRITON_INTERPRET=1`` is
set here before any kernel module (and so Triton's ``jit``) is imported; the kernel modules
are imported lazily by the dispatcher, so setting it at conftest time is early enough. With
CUDA the same tests run the compiled kernels on the GPU.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

TRITON_INSTALLED = importlib.util.find_spec("triton") is not None
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


@pytest.fixture
def triton_device() -> torch.device:
    """Where the Triton tests put their tensors: CPU under the interpreter, else CUDA."""
    if not TRITON_INSTALLED:
        pytest.skip("triton is not installed")
    if INTERPRETING:
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    pytest.skip("needs CUDA or TRITON_INTERPRET=1")


@pytest.fixture
def cuda_device() -> torch.device:
    """A CUDA device running compiled Triton kernels (GPU tests at real sizes)."""
    if not torch.cuda.is_available() or not TRITON_INSTALLED or INTERPRETING:
        pytest.skip("needs CUDA with compiled (not interpreted) Triton")
    return torch.device("cuda")


@pytest.fixture
def make_index_mask() -> Any:
    """The :func:`random_index_mask` helper."""
    return random_index_mask


@pytest.fixture
def make_qkv() -> Any:
    """The :func:`random_qkv` helper."""
    return random_qkv


@pytest.fixture
def tol() -> Any:
    """The :func:`tolerance` helper."""
    return tolerance


def random_index_mask(
    batch: int,
    heads: int,
    q_len: int,
    kv_len: int,
    list_len: int,
    *,
    generator: torch.Generator,
    min_selected: int = 0,
    unit_weights: bool = False,
    scattered_padding: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Duplicate-free random selections with ragged lengths and -1 padding.

    Each row selects between ``min_selected`` and ``list_len`` distinct keys; padding goes at
    the end of the row or, when ``scattered_padding``, at random slots of the row.
    """
    rows = batch * heads * q_len
    indices = torch.full((rows, list_len), -1, dtype=torch.int64)
    weights = torch.zeros((rows, list_len), dtype=torch.float32)
    for row in range(rows):
        count = int(torch.randint(min_selected, list_len + 1, (1,), generator=generator))
        chosen = torch.randperm(kv_len, generator=generator)[:count]
        if scattered_padding and row % 2 == 1:
            slots = torch.randperm(list_len, generator=generator)[: chosen.numel()]
        else:
            slots = torch.arange(chosen.numel())
        indices[row, slots] = chosen
        if unit_weights:
            weights[row, slots] = 1.0
        else:
            weights[row, slots] = 0.1 + 0.9 * torch.rand(chosen.numel(), generator=generator)
    shape = (batch, heads, q_len, list_len)
    return indices.view(shape), weights.view(shape)


def random_qkv(
    batch: int,
    num_q_heads: int,
    num_kv_heads: int,
    q_len: int,
    kv_len: int,
    head_dim: int,
    dtype: torch.dtype,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random queries ``[B, Hq, Q, D]`` and keys/values ``[B, Hkv, K, D]`` in ``dtype``."""

    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(dtype)

    return (
        draw(batch, num_q_heads, q_len, head_dim),
        draw(batch, num_kv_heads, kv_len, head_dim),
        draw(batch, num_kv_heads, kv_len, head_dim),
    )


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    """Comparison tolerance between two fp32-accumulating implementations for ``dtype``."""
    if dtype == torch.float32:
        return {"atol": 2e-5, "rtol": 2e-5}
    # Outputs are rounded to the half dtype once; the two sides may round apart by one ulp.
    return {"atol": 2e-2, "rtol": 2e-2}

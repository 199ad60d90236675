"""Backend choice per call, the environment switch, and import without Triton."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch

from sah_core.kernels import FORCE_REFERENCE_ENV, select_backend, sparse_decode_attention
from sah_core.kernels._triton_support import triton_installed


def test_auto_picks_triton_on_cuda_and_reference_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FORCE_REFERENCE_ENV, raising=False)
    assert select_backend(torch.device("cpu")) == "reference"
    expected = "triton" if triton_installed() else "reference"
    assert select_backend(torch.device("cuda", 0)) == expected


def test_environment_switch_forces_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FORCE_REFERENCE_ENV, "1")
    assert select_backend(torch.device("cuda", 0)) == "reference"
    # An explicit backend still wins over the switch.
    assert select_backend(torch.device("cpu"), "reference") == "reference"


def test_explicit_triton_on_cpu_needs_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        select_backend(torch.device("cpu"), "triton")


def test_unknown_backend_is_rejected() -> None:
    with pytest.raises(ValueError, match="backend is 'cuda'"):
        select_backend(torch.device("cpu"), "cuda")  # type: ignore[arg-type]


def test_auto_on_cpu_runs_the_reference(make_qkv: Any, make_index_mask: Any) -> None:
    generator = torch.Generator().manual_seed(0)
    queries, keys, values = make_qkv(1, 4, 2, 1, 12, 8, torch.float32, generator)
    indices, weights = make_index_mask(1, 4, 1, 12, 5, generator=generator)
    auto = sparse_decode_attention(queries, keys, values, indices, weights, 0.5)
    reference = sparse_decode_attention(
        queries, keys, values, indices, weights, 0.5, backend="reference"
    )
    assert torch.equal(auto, reference)


def test_package_imports_without_triton() -> None:
    """``import sah_core.kernels`` must neither need nor import Triton."""
    code = (
        "import sys\n"
        "import torch\n"
        "for name in [m for m in sys.modules if m == 'triton' or m.startswith('triton.')]:\n"
        "    del sys.modules[name]\n"
        "sys.modules['triton'] = None  # makes 'import triton' fail like a missing package\n"
        "import sah_core.kernels as k\n"
        "assert 'sah_core.kernels.triton_sparse_decode' not in sys.modules\n"
        "assert k.select_backend(torch.device('cuda', 0)) == 'reference'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr

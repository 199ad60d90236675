"""The compiled (non-interpreted) kernels build for an H100 (sm_90) target without a GPU.

The interpreter runs the kernels' semantics but not Triton's compiler: layouts, dot shapes,
constexpr branches and resource limits only show up when compiling. Triton ships ``ptxas``, so
the compilation to a cubin runs on this CPU. It runs in a subprocess without
``TRITON_INTERPRET`` because that variable turns every ``@triton.jit`` into an interpreted
function at import time.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from sah_core.kernels import triton_block_sparse_prefill as prefill
from sah_core.kernels import triton_sparse_decode as decode

TARGET = GPUTarget("cuda", 90, 32)
# Runtime specialisation marks pointers and 16-divisible ints like this; mirror it.
DIVISIBLE = {"Q", "K", "V", "IDX", "W", "PART_ACC", "PART_M", "PART_L", "LISTS", "COUNTS",
             "COLS", "COL_COUNTS",
             "OUT", "SINKS", "stride_qb", "stride_qh", "stride_qq", "stride_qm", "stride_kb",
             "stride_kh", "stride_kn", "stride_vb", "stride_vh", "stride_vn", "head_dim"}


def build(fn, types, constexprs, **options):
    names = fn.arg_names
    signature = {n: "constexpr" if n in constexprs else types.get(n, "i32") for n in names}
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in DIVISIBLE
             if n in names and n not in constexprs}
    source = ASTSource(fn, signature, {(names.index(k),): v for k, v in constexprs.items()},
                       attrs)
    compiled = triton.compile(source, target=TARGET, options=options)
    assert len(compiled.asm["cubin"]) > 0
    # Shared memory must fit an H100 (227 KiB per block).
    assert compiled.metadata.shared <= 227 * 1024, compiled.metadata.shared


# The smallest and largest autotune configs of both code paths, bf16; fp32 once per path.
configs = decode._gpu_configs()
for dtype, chosen in (("bf16", (configs[0], configs[-1])), ("fp32", (configs[-1],))):
    for block_h, use_dot in ((1, False), (16, True)):
        for config in chosen:
            types = {"Q": "*" + dtype, "K": "*" + dtype, "V": "*" + dtype, "IDX": "*i64",
                     "W": "*fp32", "PART_ACC": "*fp32", "PART_M": "*fp32", "PART_L": "*fp32",
                     "scale_log2": "fp32"}
            constexprs = dict(config.kwargs, BLOCK_H=block_h, BLOCK_D=128, USE_DOT=use_dot,
                              DOT_PRECISION="ieee" if dtype == "fp32" else "tf32")
            build(decode._sparse_decode_split_kernel, types, constexprs,
                  num_warps=config.num_warps, num_stages=config.num_stages)
build(decode._merge_splits_kernel,
      {"PART_ACC": "*fp32", "PART_M": "*fp32", "PART_L": "*fp32", "SINKS": "*fp32",
       "OUT": "*bf16"}, {"HAS_SINKS": True, "BLOCK_S": 64, "BLOCK_D": 128})
for dtype, block in (("bf16", 64), ("fp32", 64)):
    types = {n: "*" + dtype for n in ("Q", "K", "V", "OUT")}
    types.update({"LISTS": "*i32", "COUNTS": "*i32", "COLS": "*i32", "COL_COUNTS": "*i32",
                  "SINKS": "*fp32", "scale_log2": "fp32"})
    constexprs = {"CAUSAL": True, "HAS_SINKS": True, "HAS_COLS": True,
                  "NATIVE_DOT": dtype != "fp32",
                  "DOT_PRECISION": "ieee" if dtype == "fp32" else "tf32", "BLOCK": block,
                  "BLOCK_D": 128}
    build(prefill._block_sparse_prefill_kernel, types, constexprs,
          **prefill.launch_options(block, dtype == "fp32"))
print("compiled")
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_kernels_compile_for_sm90() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600
    )
    if "ptxas" in result.stderr and "not found" in result.stderr.lower():
        pytest.skip("Triton's bundled ptxas is missing")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "compiled" in result.stdout

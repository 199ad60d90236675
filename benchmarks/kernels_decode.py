"""Sparse decode and block-sparse prefill kernels vs dense attention, ratios from one run.

Decode: B=1, Hq=32, Hkv=8, D=128, bf16, K in {32K, 128K}, selected in {1%, 3%, 10%} of K, with
the selection per KV head (shared by the 4 query heads of a group: each row loaded once per
group) and per query head. Baseline: ``scaled_dot_product_attention(q, k, v,
enable_gqa=True)`` decode on the same tensors; also FlashAttention (``flash_attn``) and
FlashInfer decode when importable. Reported: time, speedup, and achieved bandwidth on the
bytes the sparse kernel reads (gathered K/V rows + index lists + weights) as a share of the
card's HBM peak.

Prefill: Q=K=32K, same heads, causal, 64x64 tiles at 10% of the causal tiles (sink column,
diagonal and random tiles) vs causal dense SDPA.

Run on a CUDA machine (<= 5 minutes on an H100):
    uv run python benchmarks/kernels_decode.py [--json out.json]
Without CUDA it exits with a message; ``--smoke`` instead runs tiny sizes on the CPU through
the torch reference path, to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from sah_core.kernels import (
    block_sparse_prefill_attention,
    causal_block_mask,
    sparse_decode_attention,
)

# HBM peak of common cards in bytes/s (vendor figures), matched on the device name.
HBM_PEAK = {
    "H200": 4.8e12,
    "H100 SXM": 3.35e12,
    "H100 NVL": 3.9e12,
    "H100 PCIe": 2.0e12,
    "H100": 3.35e12,
    "A100-SXM4-80GB": 2.04e12,
    "A100": 1.56e12,
    "L40S": 0.864e12,
}


def hbm_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in HBM_PEAK.items():
        if key in name:
            return value
    return None


def time_ms(fn: Callable[[], Any], device: torch.device) -> float:
    """Median milliseconds per call (``triton.testing.do_bench`` on CUDA)."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=100))
    fn()
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return sorted(samples)[1]


def random_selection(
    heads: int, kv_len: int, count: int, device: torch.device, seed: int
) -> torch.Tensor:
    """``[1, heads, 1, count]`` distinct random key indices per row, ascending."""
    generator = torch.Generator(device=device).manual_seed(seed)
    scores = torch.rand(1, heads, 1, kv_len, generator=generator, device=device)
    return scores.topk(count, dim=-1).indices.sort(dim=-1).values


def optional_baselines(
    queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scaling: float
) -> dict[str, Callable[[], Any]]:
    """FlashAttention / FlashInfer decode on the same data, when importable (layouts made once)."""
    found: dict[str, Callable[[], Any]] = {}
    try:
        from flash_attn import flash_attn_with_kvcache

        q_bshd = queries.transpose(1, 2).contiguous()
        k_bshd = keys.transpose(1, 2).contiguous()
        v_bshd = values.transpose(1, 2).contiguous()
        found["flash_attn"] = lambda: flash_attn_with_kvcache(
            q_bshd, k_bshd, v_bshd, softmax_scale=scaling
        )
    except Exception as error:  # not installed or no kernel for this card
        print(f"  (flash_attn unavailable: {type(error).__name__})")
    try:
        import flashinfer

        q_hd = queries[0, :, 0].contiguous()
        k_nhd = keys[0].transpose(0, 1).contiguous()
        v_nhd = values[0].transpose(0, 1).contiguous()
        found["flashinfer"] = lambda: flashinfer.single_decode_with_kv_cache(
            q_hd, k_nhd, v_nhd, sm_scale=scaling
        )
    except Exception as error:
        print(f"  (flashinfer unavailable: {type(error).__name__})")
    return found


def bench_decode(
    device: torch.device,
    backend: str,
    kv_lens: list[int],
    fractions: list[float],
    num_q_heads: int,
    num_kv_heads: int,
    head_dim: int,
    dtype: torch.dtype,
    extra_counts: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    peak = hbm_peak(device)
    scaling = head_dim**-0.5
    element = torch.finfo(dtype).bits // 8
    for kv_len in kv_lens:
        torch.manual_seed(kv_len)
        queries = torch.randn(1, num_q_heads, 1, head_dim, device=device, dtype=dtype)
        keys = torch.randn(1, num_kv_heads, kv_len, head_dim, device=device, dtype=dtype)
        values = torch.randn_like(keys)
        dense_ms = time_ms(
            lambda q=queries, k=keys, v=values: F.scaled_dot_product_attention(
                q, k, v, scale=scaling, enable_gqa=True
            ),
            device,
        )
        dense_bytes = 2 * num_kv_heads * kv_len * head_dim * element
        print(
            f"K={kv_len}: dense SDPA {dense_ms:.3f} ms "
            f"({dense_bytes / dense_ms / 1e6:.3g} GB/s on the whole cache)"
        )
        others = {
            name: time_ms(fn, device)
            for name, fn in optional_baselines(queries, keys, values, scaling).items()
        }
        for name, ms in others.items():
            print(f"  {name} dense decode {ms:.3f} ms")
        counts = {max(1, round(fraction * kv_len)) for fraction in fractions}
        counts.update(c for c in extra_counts if c <= kv_len)
        for count in sorted(counts):
            fraction = count / kv_len
            for mode, heads in (("per-kv-head", num_kv_heads), ("per-q-head", num_q_heads)):
                indices = random_selection(heads, kv_len, count, device, seed=count + heads)
                weights = torch.ones(indices.shape, device=device)

                sparse_ms = time_ms(
                    lambda q=queries, k=keys, v=values, i=indices, w=weights: (
                        sparse_decode_attention(q, k, v, i, w, scaling, backend=backend)
                    ),
                    device,
                )
                gathered = heads * count * (2 * head_dim * element + 8 + 4)
                bandwidth = gathered / (sparse_ms * 1e-3)
                row = {
                    "kv_len": kv_len,
                    "selected": count,
                    "fraction": fraction,
                    "mode": mode,
                    "sparse_ms": sparse_ms,
                    "dense_sdpa_ms": dense_ms,
                    "speedup_vs_sdpa": dense_ms / sparse_ms,
                    "gathered_bytes": gathered,
                    "bandwidth_gb_s": bandwidth / 1e9,
                    "hbm_share": None if peak is None else bandwidth / peak,
                }
                for name, ms in others.items():
                    row[f"speedup_vs_{name}"] = ms / sparse_ms
                rows.append(row)
                share = "" if peak is None else f", {100 * bandwidth / peak:.0f}% of HBM peak"
                print(
                    f"  {fraction:>5.1%} ({count:>6} keys, {mode:<11}): {sparse_ms:.3f} ms, "
                    f"{dense_ms / sparse_ms:5.1f}x vs SDPA, {bandwidth / 1e9:.3g} GB/s{share}"
                )
    return rows


def prefill_block_mask(
    length: int, block: int, density: float, device: torch.device, num_heads: int
) -> torch.Tensor:
    """Sink column + diagonal + random causal tiles, ``density`` of the causal tiles per head."""
    causal = causal_block_mask(length, length, block, device)[0, 0]
    tiles = causal.shape[0]
    generator = torch.Generator(device=device).manual_seed(0)
    target = density * int(causal.sum())
    forced = torch.eye(tiles, dtype=torch.bool, device=device)
    forced[:, 0] = True
    extra = max(0.0, target - float(forced.sum())) / max(1.0, float((causal & ~forced).sum()))
    noise = torch.rand(num_heads, tiles, tiles, generator=generator, device=device) < extra
    return ((noise | forced) & causal)[None]


def bench_prefill(
    device: torch.device,
    backend: str,
    length: int,
    block: int,
    density: float,
    num_q_heads: int,
    num_kv_heads: int,
    head_dim: int,
    dtype: torch.dtype,
) -> dict[str, Any]:
    torch.manual_seed(1)
    queries = torch.randn(1, num_q_heads, length, head_dim, device=device, dtype=dtype)
    keys = torch.randn(1, num_kv_heads, length, head_dim, device=device, dtype=dtype)
    values = torch.randn_like(keys)
    scaling = head_dim**-0.5
    mask = prefill_block_mask(length, block, density, device, num_q_heads)
    causal_tiles = int(causal_block_mask(length, length, block, device).sum())
    actual = float(mask.sum()) / (num_q_heads * causal_tiles)
    # KV repeated once, outside the timing: prefill is compute-bound, and this keeps SDPA on
    # its flash backend whatever its GQA support (a math fallback at 32K would need ~128 GiB).
    group = num_q_heads // num_kv_heads
    keys_rep = keys.repeat_interleave(group, dim=1)
    values_rep = values.repeat_interleave(group, dim=1)
    dense_ms = time_ms(
        lambda: F.scaled_dot_product_attention(
            queries, keys_rep, values_rep, is_causal=True, scale=scaling
        ),
        device,
    )
    sparse_ms = time_ms(
        lambda: block_sparse_prefill_attention(
            queries, keys, values, mask, scaling, block, backend=backend
        ),
        device,
    )
    print(
        f"prefill Q=K={length}, {block}x{block} tiles, {actual:.1%} of causal tiles: "
        f"block-sparse {sparse_ms:.2f} ms vs causal SDPA {dense_ms:.2f} ms "
        f"-> {dense_ms / sparse_ms:.1f}x"
    )
    return {
        "length": length,
        "block": block,
        "density": actual,
        "sparse_ms": sparse_ms,
        "dense_sdpa_ms": dense_ms,
        "speedup_vs_sdpa": dense_ms / sparse_ms,
    }


def check_correctness(device: torch.device, backend: str, dtype: torch.dtype) -> float:
    """Max |kernel - reference| on one mid-size decode case (guards against timing garbage)."""
    torch.manual_seed(2)
    queries = torch.randn(1, 32, 1, 128, device=device, dtype=dtype)
    keys = torch.randn(1, 8, 4096, 128, device=device, dtype=dtype)
    values = torch.randn_like(keys)
    indices = random_selection(32, 4096, 300, device, seed=3)
    weights = torch.rand(indices.shape, device=device) * 0.9 + 0.1
    got = sparse_decode_attention(queries, keys, values, indices, weights, 0.088, backend=backend)
    want = sparse_decode_attention(
        queries, keys, values, indices, weights, 0.088, backend="reference"
    )
    return float((got.float() - want.float()).abs().max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes on the CPU via the torch reference (checks the script)",
    )
    parser.add_argument("--skip-prefill", action="store_true")
    parser.add_argument("--json", help="also write the measurements to this file")
    args = parser.parse_args()

    if args.smoke:
        device, backend, dtype = torch.device("cpu"), "reference", torch.float32
        kv_lens, heads, head_dim, prefill_len, block = [512, 2048], (4, 2), 16, 128, 16
        extra_counts: tuple[int, ...] = (64,)
    elif not torch.cuda.is_available():
        print(
            "kernels_decode.py needs a CUDA GPU (the Triton kernels are what it measures); "
            "none was found. Use --smoke to check the script on the CPU.",
            file=sys.stderr,
        )
        return 2
    else:
        device, backend, dtype = torch.device("cuda"), "triton", torch.bfloat16
        kv_lens, heads, head_dim, prefill_len, block = [32768, 131072], (32, 8), 128, 32768, 64
        extra_counts = (4096,)  # the target: 4096 selected at 128K
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")

    error = check_correctness(device, backend, dtype)
    print(f"kernel vs reference max |diff| = {error:.2e}")
    if error > 5e-2:
        print(
            "kernel output disagrees with the reference; timings would be meaningless",
            file=sys.stderr,
        )
        return 1
    results: dict[str, Any] = {
        "device": str(torch.cuda.get_device_name(device)) if device.type == "cuda" else "cpu",
        "dtype": str(dtype),
        "backend": backend,
        "decode": bench_decode(
            device,
            backend,
            kv_lens,
            [0.01, 0.03, 0.10],
            heads[0],
            heads[1],
            head_dim,
            dtype,
            extra_counts,
        ),
    }
    if not args.skip_prefill:
        results["prefill"] = bench_prefill(
            device, backend, prefill_len, block, 0.10, heads[0], heads[1], head_dim, dtype
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
    best = [
        r for r in results["decode"] if r["kv_len"] == max(kv_lens) and r["mode"] == "per-kv-head"
    ]
    if best:
        target = extra_counts[0]
        closest = min(best, key=lambda r: abs(math.log(r["selected"] / target)))
        print(
            f"K={closest['kv_len']}, {closest['selected']} selected per KV head: "
            f"{closest['speedup_vs_sdpa']:.1f}x vs SDPA"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

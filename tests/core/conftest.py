"""Shared helpers for sah_core tests: random inputs and naive row-loop references."""

from __future__ import annotations

import math

import pytest
import torch


def make_qkv(
    b: int = 1, hq: int = 4, hkv: int = 2, q: int = 5, k: int = 24, d: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, hq, q, d, generator=gen),
        torch.randn(b, hkv, k, d, generator=gen),
        torch.randn(b, hkv, k, d, generator=gen),
    )


def causal_additive(b: int, q: int, k: int) -> torch.Tensor:
    """[B, 1, Q, K] additive causal mask, queries = the last Q keys (HF convention: finfo.min)."""
    allowed = torch.arange(k) <= (torch.arange(q) + k - q).unsqueeze(-1)
    mask = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
    return mask.expand(b, 1, q, k).clone()


def naive_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    weight_mask: torch.Tensor | None,
    scaling: float,
    attention_mask: torch.Tensor | None = None,
    s_aux: torch.Tensor | None = None,
) -> torch.Tensor:
    """Row-by-row float64 reference of importance-weighted attention -> [B, Hq, Q, D].

    weight_mask [B, Hq, Q, K] (None = all ones): key j attended iff w_j > 0, exp-score / w_j.
    """
    b, hq, q, _ = queries.shape
    hkv, k = keys.shape[1], keys.shape[2]
    group = hq // hkv
    out = torch.zeros(b, hq, q, values.shape[-1], dtype=torch.float64)
    for bi in range(b):
        for h in range(hq):
            for qi in range(q):
                logits = []
                rows = []
                for j in range(k):
                    w = 1.0 if weight_mask is None else float(weight_mask[bi, h, qi, j])
                    if w <= 0:
                        continue
                    bias = 0.0
                    if attention_mask is not None:
                        bias = float(attention_mask[bi, 0, qi, j])
                        if bias <= torch.finfo(torch.float32).min / 2:
                            continue
                    s = float(queries[bi, h, qi].double() @ keys[bi, h // group, j].double())
                    logits.append(s * scaling + bias - math.log(w))
                    rows.append(j)
                extra = [] if s_aux is None else [float(s_aux[h])]
                if not logits:
                    continue
                m = max(logits + extra)
                exps = [math.exp(x - m) for x in logits]
                denom = sum(exps) + sum(math.exp(x - m) for x in extra)
                for e, j in zip(exps, rows, strict=True):
                    out[bi, h, qi] += (e / denom) * values[bi, h // group, j].double()
    return out


@pytest.fixture
def qkv() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return make_qkv()


class _Helpers:
    make_qkv = staticmethod(make_qkv)
    causal_additive = staticmethod(causal_additive)
    naive_attention = staticmethod(naive_attention)


@pytest.fixture(scope="session")
def helpers() -> type[_Helpers]:
    """Access to the helpers above (test modules cannot import conftest in importlib mode)."""
    return _Helpers

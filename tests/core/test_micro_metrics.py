"""MicroMetricLogger: off by default, records density / output error / recall when on."""

from __future__ import annotations

import json
import math
import threading

import pytest
import torch

from sah_core import (
    LocalMaskerConfig,
    Mask,
    MicroMetricLogger,
    OracleTopKConfig,
    ResearchAttention,
    ResearchAttentionConfig,
    SinkMaskerConfig,
)

SCALE = 8**-0.5


def attention(stack) -> ResearchAttention:
    return ResearchAttention.create_from_config(ResearchAttentionConfig(stack))


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_off_by_default(helpers, tmp_path) -> None:
    assert MicroMetricLogger.active() is None
    q, k, v = helpers.make_qkv()
    attention([OracleTopKConfig(3)]).custom_attention(None, q, k, v, None, SCALE, layer_idx=0)
    assert not list(tmp_path.iterdir())


def test_records_match_independent_computation(helpers, tmp_path) -> None:
    b, hq, nq, nk = 1, 4, 3, 20
    q, k, v = helpers.make_qkv(b=b, hq=hq, hkv=2, q=nq, k=nk)
    am = helpers.causal_additive(b, nq, nk)
    research = attention([SinkMaskerConfig(2), LocalMaskerConfig(2), OracleTopKConfig(3)])
    with MicroMetricLogger(tmp_path, extra={"cell": "a"}) as logger:
        assert MicroMetricLogger.active() is logger
        out, _ = research.custom_attention(None, q, k, v, am, SCALE, 0.0, {}, layer_idx=3)
        research.custom_attention(None, q, k, v, am, SCALE, 0.0, {}, layer_idx=3)
    assert MicroMetricLogger.active() is None
    records = read(tmp_path / "micro_metrics.jsonl")
    assert [r["call"] for r in records] == [0, 1]
    rec = records[0]
    assert rec["layer_idx"] == 3 and rec["cell"] == "a" and rec["shape"] == [b, hq, nq, nk]

    mask = research.compute_mask(q, k, v, am, SCALE, {}, 3).get_dense_mask()
    assert rec["density_qk"] == pytest.approx(float((mask > 0).float().mean()))
    dense = helpers.naive_attention(q, k, v, None, SCALE, am)
    err = float(torch.linalg.vector_norm(out.transpose(1, 2).double() - dense))
    assert rec["output_error"] == pytest.approx(
        err / float(torch.linalg.vector_norm(dense)), rel=1e-4
    )
    # recall: dense softmax mass on attended keys, averaged over rows
    total = 0.0
    for h in range(hq):
        for qi in range(nq):
            logits = (q[0, h, qi] @ k[0, h // 2].T) * SCALE + am[0, 0, qi]
            probs = torch.softmax(logits, -1)
            total += float(probs[mask[0, h, qi] > 0].sum())
    assert rec["attention_mass_recall"] == pytest.approx(total / (hq * nq), rel=1e-5)


def test_full_mask_is_exact(helpers, tmp_path) -> None:
    q, k, v = helpers.make_qkv(k=12)
    with MicroMetricLogger(tmp_path):
        attention([OracleTopKConfig(12)]).custom_attention(None, q, k, v, None, SCALE, layer_idx=0)
    (rec,) = read(tmp_path / "micro_metrics.jsonl")
    assert rec["density"] == 1.0 and rec["attention_mass_recall"] == 1.0
    assert rec["output_error"] <= 1e-6


def test_caps_and_sampling(helpers, tmp_path) -> None:
    q, k, v = helpers.make_qkv()
    research = attention([OracleTopKConfig(3)])
    with MicroMetricLogger(tmp_path / "capped", max_records=2):
        for layer in range(5):
            research.custom_attention(None, q, k, v, None, SCALE, layer_idx=layer)
    assert len(read(tmp_path / "capped" / "micro_metrics.jsonl")) == 2
    with MicroMetricLogger(
        tmp_path / "sampled", sampling_factor=0.3, seed=1, metrics=("density",)
    ) as logger:
        for layer in range(200):
            research.custom_attention(None, q, k, v, None, SCALE, layer_idx=layer)
    records = read(tmp_path / "sampled" / "micro_metrics.jsonl")
    assert 30 <= len(records) <= 90 and logger.records_written == len(records)
    assert "output_error" not in records[0] and "density" in records[0]


def test_process_wide_enable_disable(helpers, tmp_path) -> None:
    q, k, v = helpers.make_qkv()
    logger = MicroMetricLogger.enable(tmp_path)
    try:
        assert MicroMetricLogger.is_enabled()
        attention([OracleTopKConfig(3)]).custom_attention(None, q, k, v, None, SCALE, layer_idx=0)
        # a context logger wins over the process-wide one, and only in its own thread
        seen = []
        with MicroMetricLogger(tmp_path / "inner") as inner:
            assert MicroMetricLogger.active() is inner
            thread = threading.Thread(target=lambda: seen.append(MicroMetricLogger.active()))
            thread.start()
            thread.join()
        assert seen == [logger]
    finally:
        MicroMetricLogger.disable()
    assert MicroMetricLogger.active() is None
    assert len(read(tmp_path / "micro_metrics.jsonl")) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_records": -1}, "max_records"),
        ({"sampling_factor": 0.0}, "sampling_factor"),
        ({"sampling_factor": 1.5}, "sampling_factor"),
        ({"metrics": ("density", "speed")}, "speed"),
    ],
)
def test_invalid_options(tmp_path, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        MicroMetricLogger(tmp_path, **kwargs)


def test_no_maskers_means_dense_and_backend_is_recorded(helpers, tmp_path) -> None:
    q, k, v = helpers.make_qkv()
    with MicroMetricLogger(tmp_path):
        attention([]).custom_attention(None, q, k, v, None, SCALE, layer_idx=0)
    (rec,) = read(tmp_path / "micro_metrics.jsonl")
    assert rec["mask"] == "full" and rec["density"] == 1.0
    assert rec["backend"] == "reference/dense"
    assert math.isclose(rec["attention_mass_recall"], 1.0) and rec["output_error"] < 1e-6


def test_stack_that_selects_nothing_attends_nothing(helpers, tmp_path) -> None:
    q, k, v = helpers.make_qkv()
    with MicroMetricLogger(tmp_path):
        out, _ = attention([SinkMaskerConfig(0)]).custom_attention(
            None, q, k, v, None, SCALE, layer_idx=0
        )
    assert torch.count_nonzero(out) == 0  # never silently dense
    (rec,) = read(tmp_path / "micro_metrics.jsonl")
    assert rec["mask"] == "empty" and rec["density"] == 0.0
    assert rec["attention_mass_recall"] == 0.0 and rec["backend"] == "reference/empty"
    assert math.isclose(rec["output_error"], 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("with_weights", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "float", "bool"])
def test_index_mask_densities_count_pairs_by_hand(with_weights: bool, mask_kind: str) -> None:
    """``density`` / ``density_qk`` of an index mask (the CPU kernels for a float or no
    attention mask, torch for a bool one) against a loop over the entries: -1 padding and
    weight-0 entries are not attended, pairs the attention mask forbids are not counted."""
    from sah_core.metrics.micro_metric_logger import densities

    gen = torch.Generator().manual_seed(3)
    b, h, q, k, width = 2, 3, 4, 11, 5
    indices = torch.stack(
        [torch.randperm(k, generator=gen)[:width] for _ in range(b * h * q)]
    ).view(b, h, q, width)
    indices[torch.rand(b, h, q, width, generator=gen) < 0.2] = -1
    weights = None
    if with_weights:
        weights = torch.rand(b, h, q, width, generator=gen)
        weights[weights < 0.3] = 0.0
    mask = Mask.from_index(indices, weights, (b, h, q, k))
    allowed = torch.rand(b, 1, q, k + 2, generator=gen) < 0.7  # longer than K, as a cache's
    attention_mask = {
        "none": None,
        "float": torch.where(allowed, 0.0, torch.finfo(torch.float32).min),
        "bool": allowed,
    }[mask_kind]
    attended = hits = 0
    for bi in range(b):
        for hi in range(h):
            for qi in range(q):
                for slot in range(width):
                    j = int(indices[bi, hi, qi, slot])
                    if j < 0 or (weights is not None and not weights[bi, hi, qi, slot] > 0):
                        continue
                    attended += 1
                    hits += bool(allowed[bi, 0, qi, j])
    density, density_qk = densities(mask, attention_mask)
    assert density_qk == pytest.approx(attended / (b * h * q * k))
    if attention_mask is None:
        assert density == density_qk
    else:
        total = int(allowed[..., :k].sum()) * h
        assert density == pytest.approx(hits / total)

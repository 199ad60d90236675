"""ResearchAttention: exactness vs references, GQA, chunking, masks, sinks, configs."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import sah_core.attention.index_form as index_attention_module
from sah_core import (
    AdaptiveSamplingMaskerConfig,
    CausalMaskerConfig,
    LocalMaskerConfig,
    Mask,
    MaskerConfig,
    OracleTopKConfig,
    OracleTopPMaskerConfig,
    RandomSamplingMaskerConfig,
    ResearchAttention,
    ResearchAttentionConfig,
    ResearchMasker,
    SinkMaskerConfig,
    TopKMasker,
    TopKMaskerConfig,
    index_attention,
)
from sah_core.attention import register_index_attention_backend, unregister_index_attention_backend
from sah_core.maskers import available_maskers, register_masker

SCALE = 8**-0.5


def sdpa(q, k, v, am=None):
    return torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=am, scale=SCALE, enable_gqa=k.shape[1] != q.shape[1]
    )


STACKS = {
    "sink_local_topk": [SinkMaskerConfig(2), LocalMaskerConfig(3), OracleTopKConfig(4)],
    "topp": [SinkMaskerConfig(1), OracleTopPMaskerConfig(0.7)],
    "random": [SinkMaskerConfig(2), LocalMaskerConfig(2), RandomSamplingMaskerConfig(0.4)],
    "adaptive": [
        SinkMaskerConfig(2),
        LocalMaskerConfig(2),
        AdaptiveSamplingMaskerConfig(0.2, 0.2, 0.2, 2, 2),
    ],
    "causal": [CausalMaskerConfig()],
    "topk_fraction": [OracleTopKConfig(0.3)],
}


@pytest.mark.parametrize("stack", sorted(STACKS))
@pytest.mark.parametrize("hkv", [1, 2, 4])
@pytest.mark.parametrize("use_sink", [False, True])
def test_output_matches_naive_reference(helpers, stack, hkv, use_sink) -> None:
    b, hq, nq, nk = 2, 4, 5, 20
    q, k, v = helpers.make_qkv(b=b, hq=hq, hkv=hkv, q=nq, k=nk, seed=hkv)
    am = helpers.causal_additive(b, nq, nk)
    s_aux = torch.linspace(-1.0, 1.0, hq) if use_sink else None
    attention = ResearchAttention.create_from_config(ResearchAttentionConfig(STACKS[stack]))
    torch.manual_seed(4)
    mask = attention.compute_mask(q, k, v, am, SCALE, {}, 0)
    torch.manual_seed(4)
    extra = {} if s_aux is None else {"s_aux": s_aux}
    out, weights = attention.custom_attention(
        None, q, k, v, am, SCALE, 0.0, {}, layer_idx=0, **extra
    )
    assert weights is None and out.shape == (b, nq, hq, 8)
    dense_mask = None if mask.representation in ("empty", "full") else mask.get_dense_mask()
    expected = helpers.naive_attention(q, k, v, dense_mask, SCALE, am, s_aux)
    assert torch.allclose(out.transpose(1, 2).double(), expected, atol=1e-5)


@pytest.mark.parametrize("hkv", [1, 2, 4])
def test_full_budget_equals_dense_sdpa(helpers, hkv) -> None:
    b, hq, nq, nk = 2, 4, 6, 32
    q, k, v = helpers.make_qkv(b=b, hq=hq, hkv=hkv, q=nq, k=nk)
    am = helpers.causal_additive(b, nq, nk)
    expected = sdpa(q, k, v, am)
    for stack in (
        [OracleTopKConfig(nk)],
        [SinkMaskerConfig(4), OracleTopKConfig(1.0)],
        [LocalMaskerConfig(nk)],
        [OracleTopPMaskerConfig(1.0)],
        [],
    ):
        attention = ResearchAttention.create_from_config(ResearchAttentionConfig(stack))
        out, _ = attention.custom_attention(None, q, k, v, am, SCALE, 0.0, {}, layer_idx=0)
        assert (out.transpose(1, 2) - expected).abs().max() <= 1e-5
    # every key selected in index form, through both torch strategies
    idx = torch.arange(nk).expand(b, hq, nq, nk)
    w = torch.ones(b, hq, nq, nk)
    for chunk in (None, 2):
        out = index_attention(
            q,
            k,
            v,
            idx,
            w,
            scaling=SCALE,
            attention_mask=am,
            query_chunk_size=chunk,
            backend="reference",
        )
        assert (out - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("path", ["_gather_chunk", "_dense_chunk"])
def test_both_index_paths_match_reference(helpers, path) -> None:
    b, hq, hkv, nq, nk = 1, 4, 2, 3, 16
    q, k, v = helpers.make_qkv(b=b, hq=hq, hkv=hkv, q=nq, k=nk, seed=9)
    gen = torch.Generator().manual_seed(0)
    idx = torch.stack([torch.randperm(nk, generator=gen)[:6] for _ in range(b * hq * nq)])
    idx = idx.view(b, hq, nq, 6).clone()
    idx[..., -1] = -1
    w = torch.rand(b, hq, nq, 6, generator=gen).clamp_min(0.1) * (idx >= 0)
    am = helpers.causal_additive(b, nq, nk)
    s_aux = torch.tensor([0.5, -0.5, 0.0, 1.0])
    fn = getattr(index_attention_module, path)
    out = fn(q, k, v, idx, w, SCALE, am, s_aux, 0.0)
    dense = Mask.from_index(idx, w, (b, hq, nq, nk)).get_dense_mask()
    expected = helpers.naive_attention(q, k, v, dense, SCALE, am, s_aux)
    assert torch.allclose(out.double(), expected, atol=1e-5)


@pytest.mark.parametrize("stack", ["sink_local_topk", "topp", "causal", "topk_fraction"])
def test_chunked_prefill_equals_unchunked(helpers, stack) -> None:
    b, hq, hkv, nq, nk = 1, 4, 2, 17, 17
    q, k, v = helpers.make_qkv(b=b, hq=hq, hkv=hkv, q=nq, k=nk, seed=2)
    am = helpers.causal_additive(b, nq, nk)
    config = ResearchAttentionConfig(STACKS[stack])
    whole = ResearchAttention.create_from_config(config)
    chunked = ResearchAttention.create_from_config(config, query_chunk_size=3)
    out_whole, _ = whole.custom_attention(None, q, k, v, am, SCALE, 0.0, {}, layer_idx=1)
    out_chunked, _ = chunked.custom_attention(None, q, k, v, am, SCALE, 0.0, {}, layer_idx=1)
    assert torch.allclose(out_whole, out_chunked, atol=1e-6)
    m1 = whole.compute_mask(q, k, v, am, SCALE, {}, 1)
    m2 = chunked.compute_mask(q, k, v, am, SCALE, {}, 1)
    assert torch.equal(m1.get_dense_mask(), m2.get_dense_mask())


def test_bool_mask_equals_additive_and_none_is_unmasked(helpers) -> None:
    b, hq, nq, nk = 1, 4, 4, 12
    q, k, v = helpers.make_qkv(b=b, hq=hq, hkv=2, q=nq, k=nk)
    am = helpers.causal_additive(b, nq, nk)
    attention = ResearchAttention.create_from_config(ResearchAttentionConfig(STACKS["topp"]))
    out_add, _ = attention.custom_attention(None, q, k, v, am, SCALE, layer_idx=0)
    out_bool, _ = attention.custom_attention(None, q, k, v, am == 0, SCALE, layer_idx=0)
    assert torch.allclose(out_add, out_bool, atol=1e-6)
    dense = ResearchAttention.create_from_config(ResearchAttentionConfig([]))
    out_none, _ = dense.custom_attention(None, q, k, v, None, SCALE)
    assert torch.allclose(out_none.transpose(1, 2), sdpa(q, k, v), atol=1e-5)


def test_decode_and_static_cache_longer_mask(helpers) -> None:
    q, k, v = helpers.make_qkv(b=1, hq=8, hkv=2, q=1, k=300)
    am = torch.zeros(1, 1, 1, 320)  # a static cache gives a longer key axis
    am[..., 300:] = torch.finfo(torch.float32).min
    stack = [SinkMaskerConfig(4), LocalMaskerConfig(8), OracleTopKConfig(0.05)]
    attention = ResearchAttention.create_from_config(ResearchAttentionConfig(stack))
    mask = attention.compute_mask(q, k, v, am[..., :300], SCALE, {}, 0)
    assert mask.representation == "index" and mask.row_counts().eq(4 + 8 + 15).all()
    out, _ = attention.custom_attention(None, q, k, v, am, SCALE, layer_idx=0)
    expected = helpers.naive_attention(q, k, v, mask.get_dense_mask(), SCALE)
    assert torch.allclose(out.transpose(1, 2).double(), expected, atol=1e-5)


def test_dropout_and_scaling_default(helpers) -> None:
    q, k, v = helpers.make_qkv(q=3, k=10)
    attention = ResearchAttention.create_from_config(ResearchAttentionConfig(STACKS["topp"]))
    out, _ = attention.custom_attention(None, q, k, v, None, None, 1.0, layer_idx=0)
    assert torch.count_nonzero(out) == 0  # every probability dropped
    torch.manual_seed(0)
    a, _ = attention.custom_attention(None, q, k, v, None, None, 0.5, layer_idx=0)
    torch.manual_seed(0)
    b, _ = attention.custom_attention(None, q, k, v, None, None, 0.5, layer_idx=0)
    assert torch.equal(a, b)
    default, _ = attention.custom_attention(None, q, k, v, None, None, layer_idx=0)
    explicit, _ = attention.custom_attention(None, q, k, v, None, SCALE, layer_idx=0)
    assert torch.allclose(default, explicit)


# ----------------------------------------------------------------------- state / layer_idx
@dataclasses.dataclass
class CountingConfig(TopKMaskerConfig):
    """Test-only top-k masker keeping a per-layer call counter (uses the plug-in hooks)."""


class CountingMasker(TopKMasker):
    config_type = CountingConfig

    def prepare(self, keys, queries, values, attention_mask, scaling, sparse_meta_data, **kw):
        state = self.layer_state(sparse_meta_data, kw["layer_idx"])
        state["calls"] = state.get("calls", 0) + 1
        return -torch.arange(keys.shape[2], dtype=torch.float32)  # prefers early keys

    def key_scores(self, keys, queries, values, scaling, state, *, key_limit, **kw) -> Any:
        b, h, q, _ = queries.shape
        return state[:key_limit].expand(b, h, q, key_limit).clone()


def test_module_layer_idx_and_state_in_sparse_meta_data(helpers) -> None:
    register_masker(CountingMasker)
    q, k, v = helpers.make_qkv(q=2, k=10)
    attention = ResearchAttention.create_from_config(ResearchAttentionConfig([CountingConfig(3)]))
    meta: dict = {}

    class Layer:
        layer_idx = 7

    attention.custom_attention(Layer(), q, k, v, None, SCALE, 0.0, meta)
    attention.custom_attention(None, q, k, v, None, SCALE, 0.0, meta, layer_idx=2)
    attention.custom_attention(None, q, k, v, None, SCALE, 0.0, meta, layer_idx=2)
    assert meta[7]["CountingConfig"]["calls"] == 1
    assert meta[2]["CountingConfig"]["calls"] == 2
    mask = attention.compute_mask(q, k, v, None, SCALE, meta, 2)
    assert row_keys(mask) == [0, 1, 2]
    restored = ResearchAttentionConfig.from_dict(json.loads(json.dumps(attention.config.to_dict())))
    assert restored == attention.config


def row_keys(mask: Mask) -> list[int]:
    return sorted((mask.get_dense_mask()[0, 0, 0] > 0).nonzero().flatten().tolist())


# ----------------------------------------------------------------------- kernel hook
def test_index_attention_backend_hook(helpers) -> None:
    q, k, v = helpers.make_qkv(q=1, k=10)
    idx = torch.arange(3).expand(1, 4, 1, 3)
    w = torch.ones(1, 4, 1, 3)
    calls = []

    def fake_backend(queries, keys, values, indices, weights, **kwargs):
        calls.append(kwargs["scaling"])
        return torch.full_like(queries, 7.0)

    def declining_backend(*args, **kwargs):
        return None

    register_index_attention_backend(fake_backend)
    try:
        out = index_attention(q, k, v, idx, w, scaling=0.5)
        assert calls == [0.5] and bool((out == 7).all())
        ref = index_attention(q, k, v, idx, w, scaling=0.5, backend="reference")
        assert not bool((ref == 7).all())
    finally:
        unregister_index_attention_backend(fake_backend)
    register_index_attention_backend(declining_backend)
    try:
        out = index_attention(q, k, v, idx, w, scaling=0.5)
        assert torch.allclose(
            out, index_attention(q, k, v, idx, w, scaling=0.5, backend="reference")
        )
    finally:
        unregister_index_attention_backend(declining_backend)


# ----------------------------------------------------------------------- configs
ALL_CONFIGS = [
    SinkMaskerConfig(4),
    SinkMaskerConfig(0.1),
    LocalMaskerConfig(8),
    CausalMaskerConfig(),
    OracleTopKConfig(0.05),
    OracleTopKConfig(32),
    OracleTopPMaskerConfig(0.9),
    RandomSamplingMaskerConfig(0.1),
    AdaptiveSamplingMaskerConfig(0.05, 0.1, 0.1, 4, 0.1),
]


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=lambda c: type(c).__name__)
def test_config_json_round_trip(config) -> None:
    data = json.loads(json.dumps(config.to_dict()))
    assert data["type"] == type(config).type_tag
    assert MaskerConfig.from_dict(data) == config
    # the old tag (the class name) still loads
    assert MaskerConfig.from_dict({**data, "type": type(config).__name__}) == config
    assert type(config).from_dict(data) == config
    masker = ResearchMasker.create_from_config(config)
    assert masker.config is config


def test_research_attention_config_round_trip_and_sampling_limit() -> None:
    config = ResearchAttentionConfig(
        [c for c in ALL_CONFIGS if not isinstance(c, (RandomSamplingMaskerConfig,))]
    )
    text = json.dumps(config.to_dict())
    assert ResearchAttentionConfig.from_dict(json.loads(text)) == config
    with pytest.raises(ValueError, match="at most one sampling masker"):
        ResearchAttentionConfig(
            [RandomSamplingMaskerConfig(0.1), AdaptiveSamplingMaskerConfig(0.1, 0.1, 0.1, 0, 0)]
        )
    with pytest.raises(ValueError, match="masker_configs\\[0\\]"):
        ResearchAttentionConfig([{"type": "SinkMaskerConfig"}])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: SinkMaskerConfig(-1), "sink_size=-1"),
        (lambda: SinkMaskerConfig(1.5), "sink_size=1.5"),
        (lambda: SinkMaskerConfig("4"), "sink_size='4'"),  # type: ignore[arg-type]
        (lambda: LocalMaskerConfig(True), "window_size=True"),
        (lambda: OracleTopKConfig(0.0), "heavy_size=0.0"),
        (lambda: OracleTopPMaskerConfig(0.0), "top_p=0.0"),
        (lambda: OracleTopPMaskerConfig(1.2), "top_p=1.2"),
        (lambda: RandomSamplingMaskerConfig(0.0), "sampling_rate=0.0"),
        (lambda: AdaptiveSamplingMaskerConfig(0.1, 1.0, 0.1, 0, 0), "epsilon=1.0"),
        (lambda: AdaptiveSamplingMaskerConfig(0.1, 0.1, 0.0, 0, 0), "delta=0.0"),
        (lambda: AdaptiveSamplingMaskerConfig(0, 0.1, 0.1, 0, 0), "base_rate_sampling=0"),
        (lambda: AdaptiveSamplingMaskerConfig(0.1, 0.1, 0.1, -2, 0), "init_offset=-2"),
        (lambda: MaskerConfig.from_dict({"type": "NoSuchConfig"}), "NoSuchConfig"),
        (lambda: SinkMaskerConfig.from_dict({"sink_size": 1, "bogus": 2}), "bogus"),
        (
            lambda: OracleTopKConfig.from_dict({"type": "SinkMaskerConfig", "sink_size": 1}),
            "not a OracleTopKConfig",
        ),
        (lambda: ResearchAttentionConfig.from_dict({"type": "Other"}), "Other"),
        (
            lambda: ResearchAttention.create_from_config(
                ResearchAttentionConfig([]), query_chunk_size=0
            ),
            "query_chunk_size",
        ),
    ],
)
def test_invalid_configs_raise(build, match) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_entry_point_registry_lists_core_maskers() -> None:
    names = set(available_maskers())
    expected = {
        SinkMaskerConfig,
        LocalMaskerConfig,
        CausalMaskerConfig,
        OracleTopKConfig,
        OracleTopPMaskerConfig,
        RandomSamplingMaskerConfig,
        AdaptiveSamplingMaskerConfig,
    }
    assert {c.type_tag for c in expected} <= names
    assert {"sink", "local", "causal", "oracle_top_k", "random_sampling"} <= names


def test_public_names_exported() -> None:
    import sah_core
    import sah_core.maskers

    for name in (
        "Mask",
        "ResearchAttention",
        "ResearchAttentionConfig",
        "MicroMetricLogger",
        "SinkMaskerConfig",
        "SinkMasker",
        "OracleTopK",
        "AdaptiveSamplingMasker",
    ):
        assert name in sah_core.__all__ and hasattr(sah_core, name)
    assert set(sah_core.maskers.__all__) <= set(sah_core.__all__)


@dataclasses.dataclass
class SpyConfig(TopKMaskerConfig):
    """Test-only oracle that records the query rows of every scoring call."""


class SpyMasker(TopKMasker):
    config_type = SpyConfig
    rows_seen: ClassVar[list[int]] = []

    def key_scores(self, keys, queries, values, scaling, state, *, key_limit, **kw) -> Any:
        SpyMasker.rows_seen.append(queries.shape[2])
        hkv = keys.shape[1]
        b, hq, q, d = queries.shape
        grouped = queries.reshape(b, hkv, hq // hkv * q, d)
        return (grouped @ keys[:, :, :key_limit].transpose(-1, -2)).view(b, hq, q, key_limit)


def test_prefill_is_processed_in_query_chunks(helpers) -> None:
    register_masker(SpyMasker)
    SpyMasker.rows_seen.clear()
    q, k, v = helpers.make_qkv(q=30, k=30)
    am = helpers.causal_additive(1, 30, 30)
    attention = ResearchAttention.create_from_config(
        ResearchAttentionConfig([SpyConfig(5)]), query_chunk_size=8
    )
    out, _ = attention.custom_attention(None, q, k, v, am, SCALE, layer_idx=0)
    assert SpyMasker.rows_seen == [8, 8, 8, 6]
    reference = ResearchAttention.create_from_config(ResearchAttentionConfig([OracleTopKConfig(5)]))
    expected, _ = reference.custom_attention(None, q, k, v, am, SCALE, layer_idx=0)
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("hkv", [1, 4])
def test_bf16_inputs_close_to_fp32(helpers, hkv) -> None:
    q, k, v = (t.bfloat16() for t in helpers.make_qkv(b=1, hq=4, hkv=hkv, q=6, k=40))
    am = helpers.causal_additive(1, 6, 40).bfloat16()
    stack = [SinkMaskerConfig(2), LocalMaskerConfig(4), OracleTopKConfig(8)]
    attention = ResearchAttention.create_from_config(ResearchAttentionConfig(stack))
    out, _ = attention.custom_attention(None, q, k, v, am, SCALE, layer_idx=0)
    assert out.dtype == torch.bfloat16
    # same selection (bf16 scores decide it), fp64 arithmetic on the bf16 values
    mask = attention.compute_mask(q, k, v, am, SCALE, {}, 0).get_dense_mask()
    expected = helpers.naive_attention(q.float(), k.float(), v.float(), mask, SCALE, am.float())
    assert (out.transpose(1, 2).double() - expected).abs().max() < 0.03


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_causality_future_keys_do_not_change_outputs(helpers, stack) -> None:
    b, hq, hkv, nq, nk = 1, 4, 2, 8, 8  # prefill: query i sits at key position i
    q, k, v = helpers.make_qkv(b=b, hq=hq, hkv=hkv, q=nq, k=nk, seed=6)
    am = helpers.causal_additive(b, nq, nk)
    attention = ResearchAttention.create_from_config(ResearchAttentionConfig(STACKS[stack]))
    torch.manual_seed(0)
    out, _ = attention.custom_attention(None, q, k, v, am, SCALE, layer_idx=0)
    cut = 4  # change every key/value at positions >= cut: rows < cut must not move
    k2, v2 = k.clone(), v.clone()
    k2[:, :, cut:] += 5.0
    v2[:, :, cut:] -= 3.0
    torch.manual_seed(0)
    out2, _ = attention.custom_attention(None, q, k2, v2, am, SCALE, layer_idx=0)
    # sampling stacks too: their draws depend on the seed and the allowed keys only
    assert torch.allclose(out[:, :cut], out2[:, :cut], atol=1e-6)


DETERMINISTIC_CHOICES = [
    lambda n: SinkMaskerConfig(n % 5),
    lambda n: LocalMaskerConfig(1 + n % 6),
    lambda n: OracleTopKConfig(1 + n % 7),
    lambda n: OracleTopPMaskerConfig(0.3 + (n % 6) / 10),
    lambda n: CausalMaskerConfig(),
]
SAMPLING_CHOICES = [
    lambda n: RandomSamplingMaskerConfig(0.2 + (n % 5) / 10),
    lambda n: AdaptiveSamplingMaskerConfig(0.1 + (n % 3) / 10, 0.2, 0.2, n % 3, n % 2),
]


@settings(max_examples=40, deadline=None)
@given(
    picks=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 50)), min_size=1, max_size=3),
    sampling=st.one_of(st.none(), st.tuples(st.integers(0, 1), st.integers(0, 50))),
    hkv=st.sampled_from([1, 2, 4]),
    nq=st.integers(1, 6),
    extra_keys=st.integers(0, 12),
    chunk=st.sampled_from([None, 1, 4]),
    seed=st.integers(0, 100),
)
def test_random_stacks_match_naive_reference(
    helpers, picks, sampling, hkv, nq, extra_keys, chunk, seed
) -> None:
    configs = [DETERMINISTIC_CHOICES[i](n) for i, n in picks]
    if sampling is not None:
        position = seed % (len(configs) + 1)
        configs.insert(position, SAMPLING_CHOICES[sampling[0]](sampling[1]))
    nk = nq + extra_keys
    q, k, v = helpers.make_qkv(b=1, hq=4, hkv=hkv, q=nq, k=nk, seed=seed)
    am = helpers.causal_additive(1, nq, nk)
    attention = ResearchAttention.create_from_config(
        ResearchAttentionConfig(configs), query_chunk_size=chunk
    )
    torch.manual_seed(seed)
    mask = attention.compute_mask(q, k, v, am, SCALE, {}, 0)
    torch.manual_seed(seed)
    out, _ = attention.custom_attention(None, q, k, v, am, SCALE, 0.0, {}, layer_idx=0)
    dense = mask.get_dense_mask()
    assert bool(((dense >= 0) & (dense <= 1)).all())
    if mask.representation == "empty":  # a stack that selects nothing attends nothing
        assert torch.count_nonzero(out) == 0
        return
    weight_mask = None if mask.representation == "full" else dense
    expected = helpers.naive_attention(q, k, v, weight_mask, SCALE, am)
    assert torch.allclose(out.transpose(1, 2).double(), expected, atol=1e-5)


def test_phases_default_round_trip_and_bad_values() -> None:
    from sah_core.research_attention import ResearchAttentionConfig

    assert ResearchAttentionConfig().phases == ("question", "decode")
    assert "phases" not in ResearchAttentionConfig().to_dict()
    config = ResearchAttentionConfig(phases=("decode", "prefill", "question"))
    assert config.phases == ("prefill", "question", "decode")  # canonical order
    assert ResearchAttentionConfig.from_dict(config.to_dict()).phases == config.phases
    for bad in ["decode", (), ("decode", "decode"), ("context",)]:
        with pytest.raises(ValueError, match="phases"):
            ResearchAttentionConfig(phases=bad)  # type: ignore[arg-type]

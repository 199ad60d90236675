"""The call plan: input checks, padding description, state slots, NaN semantics, old-signature
shim, config checks (issues 11 and 12)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import pytest
import torch

from sah_core import (
    CallPlan,
    LocalMaskerConfig,
    Mask,
    MaskerConfig,
    NonFiniteInputError,
    OracleTopKConfig,
    ResearchAttention,
    ResearchAttentionConfig,
    ResearchMasker,
    SinkMaskerConfig,
    TopKMasker,
    TopKMaskerConfig,
)
from sah_core.maskers import register_masker

MIN = torch.finfo(torch.float32).min
SCALE = 8**-0.5


def qkv(b=1, hq=4, hkv=2, q=3, k=10, d=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, hq, q, d, generator=gen).to(dtype),
        torch.randn(b, hkv, k, d, generator=gen).to(dtype),
        torch.randn(b, hkv, k, d, generator=gen).to(dtype),
    )


# ----------------------------------------------------------------------- input checks
def _bad_inputs() -> list[tuple[str, dict[str, Any], str]]:
    q, k, v = qkv()
    return [
        ("head size", {"keys": k[..., :4]}, r"keys.shape\[3\]=4"),
        ("value length", {"values": v[:, :, :7]}, r"values.shape\[2\]=7"),
        ("value heads", {"values": v[:, :1]}, r"values.shape\[1\]=1"),
        ("batch", {"keys": k.expand(2, -1, -1, -1)}, "batch sizes"),
        ("heads", {"queries": q[:, :3]}, "multiple of the key heads"),
        ("dtype mix", {"queries": q.bfloat16()}, "must share one dtype"),
        ("int dtype", {"values": v.long()}, r"values.dtype=torch.int64"),
        ("3-D", {"queries": q[0]}, "expected 4-D"),
        ("Q > K", {"queries": torch.randn(1, 4, 11, 8)}, r"Q <= K"),
        ("mask rows", {"attention_mask": torch.zeros(1, 1, 5, 10)}, r"attention_mask.shape\[2\]=5"),
        ("mask cols", {"attention_mask": torch.zeros(1, 1, 3, 9)}, r"attention_mask.shape\[3\]=9"),
        (
            "mask batch",
            {"attention_mask": torch.zeros(3, 1, 3, 10)},
            r"attention_mask.shape\[0\]=3",
        ),
        (
            "mask heads",
            {"attention_mask": torch.zeros(1, 3, 3, 10)},
            r"attention_mask.shape\[1\]=3",
        ),
        ("mask 3-D", {"attention_mask": torch.zeros(1, 3, 10)}, "expected 4-D"),
        ("mask int", {"attention_mask": torch.zeros(1, 1, 3, 10, dtype=torch.int64)}, "bool"),
        ("scaling", {"scaling": -1.0}, "scaling=-1.0"),
        ("scaling nan", {"scaling": float("nan")}, "scaling=nan"),
        ("positions", {"query_positions": [0, 1, 10]}, "query_positions in"),
        ("positions count", {"query_positions": [0, 1]}, "one per query"),
        ("s_aux", {"s_aux": torch.zeros(3)}, r"s_aux.shape=\(3,\)"),
        ("chunk", {"query_chunk_size": 0}, "query_chunk_size=0"),
    ]


@pytest.mark.parametrize(("case", "change", "match"), _bad_inputs(), ids=lambda x: str(x)[:12])
def test_bad_attention_inputs_are_refused_with_a_named_field(case, change, match) -> None:
    q, k, v = qkv()
    args: dict[str, Any] = {"queries": q, "keys": k, "values": v, "attention_mask": None}
    args.update(change)
    attention = ResearchAttention(ResearchAttentionConfig([SinkMaskerConfig(2)]))
    kwargs = {n: args.pop(n) for n in ("query_positions", "s_aux", "query_chunk_size") if n in args}
    scaling = args.pop("scaling", SCALE)
    with pytest.raises(ValueError, match=match):
        attention.custom_attention(
            None,
            args["queries"],
            args["keys"],
            args["values"],
            args["attention_mask"],
            scaling,
            layer_idx=0,
            **kwargs,
        )


def test_broadcast_mask_row_and_static_cache_columns_are_accepted() -> None:
    q, k, v = qkv(q=3, k=10)
    attention = ResearchAttention(ResearchAttentionConfig([]))
    dense, _ = attention.custom_attention(None, q, k, v, None, SCALE)
    one_row, _ = attention.custom_attention(None, q, k, v, torch.zeros(1, 1, 1, 10), SCALE)
    longer, _ = attention.custom_attention(None, q, k, v, torch.zeros(1, 1, 3, 16), SCALE)
    assert torch.allclose(dense, one_row, atol=1e-6) and torch.allclose(dense, longer, atol=1e-6)


# ----------------------------------------------------------------------- non-finite values
@pytest.mark.parametrize("stack", [[], [SinkMaskerConfig(2), OracleTopKConfig(8)]])
def test_nan_in_a_key_propagates_like_dense_sdpa(stack) -> None:
    q, k, v = qkv(q=1, k=10)
    k = k.clone()
    k[0, 1, 3] = float("nan")  # KV head 1 = query heads 2, 3
    out, _ = ResearchAttention(ResearchAttentionConfig(stack)).custom_attention(
        None, q, k, v, None, SCALE
    )
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1), scale=SCALE
    ).transpose(1, 2)
    assert torch.equal(torch.isnan(out), torch.isnan(expected))
    assert bool(torch.isnan(out[0, 0, 2:]).all()) and not bool(torch.isnan(out[0, 0, :2]).any())


def test_fully_masked_rows_give_zero_not_nan() -> None:
    q, k, v = qkv(q=2, k=6)
    mask = torch.zeros(1, 1, 2, 6)
    mask[0, 0, 0] = float("-inf")
    out, _ = ResearchAttention(
        ResearchAttentionConfig([SinkMaskerConfig(1), OracleTopKConfig(2)])
    ).custom_attention(None, q, k, v, mask, SCALE)
    assert torch.count_nonzero(out[0, 0]) == 0 and bool(torch.isfinite(out).all())


def test_raise_on_nonfinite_names_the_tensor() -> None:
    q, k, v = qkv()
    v = v.clone()
    v[0, 0, 0, 0] = float("inf")
    attention = ResearchAttention(ResearchAttentionConfig([]), raise_on_nonfinite=True)
    with pytest.raises(NonFiniteInputError, match="values holds 0 NaN and 1 inf"):
        attention.custom_attention(None, q, k, v, None, SCALE)


# ----------------------------------------------------------------------- padding description
def test_padding_description_of_a_batched_call() -> None:
    # row 0: no padding; row 1: two pads at the front and one in the middle (context|pad|q)
    k_len = 8
    valid = torch.ones(2, k_len, dtype=torch.bool)
    valid[1, [0, 1, 5]] = False
    causal = torch.arange(k_len) <= torch.arange(k_len).unsqueeze(-1)
    allowed = causal & valid[:, None, :]
    mask = torch.where(allowed, 0.0, MIN).unsqueeze(1)
    q, k, v = qkv(b=2, q=k_len, k=k_len)
    call = CallPlan.build(q, k, v, mask, SCALE)
    assert torch.equal(call.key_valid, valid)
    assert call.key_counts.tolist() == [8, 5]
    assert call.key_positions[1].tolist() == [-1, -1, 0, 1, 2, -1, 3, 4]
    assert call.valid_key_index[1].tolist() == [2, 3, 4, 6, 7, -1, -1, -1]
    assert call.left_padding.tolist() == [0, 2]
    assert call.query_valid[1].tolist() == valid[1].tolist()
    assert call.row_query_positions[1].tolist() == [-1, -1, 0, 1, 2, -1, 3, 4]
    plain = CallPlan.build(q, k, v, torch.where(causal, 0.0, MIN).expand(2, 1, -1, -1), SCALE)
    assert plain.key_valid is None and plain.key_counts is None and plain.left_padding is None


def test_layers_given_the_same_mask_share_its_padding_views_until_it_changes() -> None:
    """transformers hands every layer the same mask object: the views are derived once; an
    in-place edit of the mask, or another mask, derives them afresh."""
    k_len = 6
    q, k, v = qkv(b=2, q=1, k=k_len)
    mask = torch.zeros(2, 1, 1, k_len)
    mask[1, 0, 0, :2] = MIN
    first = CallPlan.build(q, k, v, mask, SCALE)
    assert first.key_counts.tolist() == [6, 4]
    second = CallPlan.build(q, k, v, mask, SCALE)
    assert second.key_counts is first.key_counts  # shared, not derived again
    mask[0, 0, 0, 0] = MIN  # in place: the version changes
    edited = CallPlan.build(q, k, v, mask, SCALE)
    assert edited.key_counts.tolist() == [5, 4]
    other = CallPlan.build(q, k, v, mask.clone(), SCALE)
    assert other.key_counts is not edited.key_counts
    assert other.key_counts.tolist() == [5, 4]


@pytest.mark.parametrize(
    "stack",
    [
        [SinkMaskerConfig(2), LocalMaskerConfig(3)],
        [SinkMaskerConfig(0.25), LocalMaskerConfig(0.25), OracleTopKConfig(0.3)],
    ],
    ids=["int", "float"],
)
def test_batched_with_padding_equals_each_row_alone(stack) -> None:
    lengths, k_len = [9, 6], 9
    q, k, v = qkv(b=2, q=k_len, k=k_len, seed=3)
    valid = torch.ones(2, k_len, dtype=torch.bool)
    valid[1, :3] = False  # left padding
    causal = torch.arange(k_len) <= torch.arange(k_len).unsqueeze(-1)
    mask = torch.where(causal & valid[:, None, :], 0.0, MIN).unsqueeze(1)
    attention = ResearchAttention(ResearchAttentionConfig(stack))
    batched, _ = attention.custom_attention(None, q, k, v, mask, SCALE, layer_idx=0)
    for row, n in enumerate(lengths):
        keep = valid[row]
        qa, ka, va = (t[row : row + 1][:, :, keep] for t in (q, k, v))
        alone_mask = torch.where(causal[:n, :n], 0.0, MIN)[None, None]
        alone, _ = attention.custom_attention(None, qa, ka, va, alone_mask, SCALE, layer_idx=0)
        assert torch.allclose(batched[row][keep], alone[0], atol=1e-5), row


# ----------------------------------------------------------------------- state slots, shim
@dataclasses.dataclass
class _CountConfig(TopKMaskerConfig):
    """Test-only: counts its calls in its own state slot."""


class _CountMasker(TopKMasker):
    config_type = _CountConfig

    def prepare(self, call: CallPlan) -> Any:
        call.state["calls"] = call.state.get("calls", 0) + 1
        return None

    def key_scores(self, call, chunk, state):
        return -torch.arange(chunk.key_limit, dtype=torch.float32).expand(
            call.batch, call.num_q_heads, chunk.rows, chunk.key_limit
        )


def test_each_masker_has_its_own_state_slot_per_layer_and_position() -> None:
    register_masker(_CountMasker)
    q, k, v = qkv()
    attention = ResearchAttention(ResearchAttentionConfig([_CountConfig(2), _CountConfig(3)]))
    meta: dict = {}
    for layer in (0, 0, 5):
        attention.custom_attention(None, q, k, v, None, SCALE, 0.0, meta, layer_idx=layer)
    tag = _CountConfig.type_tag
    assert meta[0] == {f"0:{tag}": {"calls": 2}, f"1:{tag}": {"calls": 2}}
    assert meta[5] == {f"0:{tag}": {"calls": 1}, f"1:{tag}": {"calls": 1}}


@dataclasses.dataclass
class _OldStyleConfig(MaskerConfig):
    """Test-only: a plug-in still written against the old add_mask signature."""


class _OldStyleMasker(ResearchMasker):
    config_type = _OldStyleConfig

    def add_mask(
        self,
        keys,
        queries,
        values,
        attention_mask,
        scaling,
        dropout,
        sparse_meta_data,
        previous_mask,
        **kwargs,
    ):
        sparse_meta_data["seen_layer"] = kwargs["layer_idx"]
        b, h, q, _ = queries.shape
        idx = torch.zeros(b, h, q, 1, dtype=torch.int64)
        return previous_mask.merge(Mask.from_index(idx, None, previous_mask.shape))


def test_old_signature_masker_still_runs_and_warns() -> None:
    register_masker(_OldStyleMasker)
    q, k, v = qkv()
    attention = ResearchAttention(ResearchAttentionConfig([_OldStyleConfig()]))
    meta: dict = {}
    with pytest.warns(DeprecationWarning, match="old keyword signature"):
        out, _ = attention.custom_attention(None, q, k, v, None, SCALE, 0.0, meta, layer_idx=4)
    assert meta["seen_layer"] == 4
    # only key 0 attended: the output is v[key 0] of each head's KV head
    assert torch.allclose(out[0, 0, 0], v[0, 0, 0], atol=1e-6)


def test_new_masker_called_the_old_way_warns_and_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    import sah_core.maskers.base as masker_base

    # The warning is given once per class and process: forget earlier tests' calls.
    monkeypatch.setattr(masker_base, "_warned", set())
    q, k, v = qkv()
    masker = ResearchMasker.create_from_config(OracleTopKConfig(3))
    empty = Mask.empty((1, 4, 3, 10))
    new = masker.add_mask(CallPlan.build(q, k, v, None, SCALE, layer_idx=0), empty)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = masker.add_mask(k, q, v, None, SCALE, 0.0, {}, empty, layer_idx=0)
    assert any(issubclass(w.category, DeprecationWarning) for w in caught)
    assert torch.equal(new.get_dense_mask(), old.get_dense_mask())


# ----------------------------------------------------------------------- configs
def test_config_mutation_is_checked_at_once_and_undone() -> None:
    config = OracleTopKConfig(heavy_size=8)
    with pytest.raises(ValueError, match=r"OracleTopKConfig\.heavy_size='lots'"):
        config.heavy_size = "lots"  # type: ignore[assignment]
    assert config.heavy_size == 8
    config.heavy_size = 0.5
    assert config.heavy_size == 0.5


def test_absurd_sizes_and_base_tags_are_refused() -> None:
    with pytest.raises(ValueError, match=r"heavy_size=10{30}.*<= 2147483647"):
        OracleTopKConfig(heavy_size=10**30)
    with pytest.raises(ValueError, match="base config class MaskerConfig, which has no masker"):
        MaskerConfig.from_dict({"type": "MaskerConfig"})
    with pytest.raises(ValueError, match="base config class TopKMaskerConfig"):
        MaskerConfig.from_dict({"type": "TopKMaskerConfig", "heavy_size": 2})
    with pytest.raises(ValueError, match="is missing"):
        MaskerConfig.from_dict({"heavy_size": 2})


def test_config_names_its_masker_and_tags_are_stable() -> None:
    from sah_core.maskers.oracle_top_k import OracleTopK

    assert OracleTopKConfig.masker_class is OracleTopK
    assert OracleTopKConfig(2).to_dict() == {"type": "oracle_top_k", "heavy_size": 2}
    assert MaskerConfig.from_dict(
        {"type": "OracleTopKConfig", "heavy_size": 2}
    ) == OracleTopKConfig(2)


def test_registry_and_base_import_without_a_cycle() -> None:
    import subprocess
    import sys

    for module in ("sah_core.maskers.registry", "sah_core.maskers.base"):
        code = f"import {module}"
        subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunk_mask_bounds_are_the_columns_the_mask_allows_and_touches(dtype) -> None:
    """Each query chunk's key_limit (1 + the last column any row may attend) and
    first_touched (the first column any row's mask is nonzero) against a loop over the
    mask's entries: causal rows, left padding in one batch row, a row allowed nothing, and
    scattered nonzero biases. fp32 takes the one-pass kernel, fp64 the torch reductions."""
    b, q_len, k_len = 2, 11, 14
    low = torch.finfo(dtype).min
    gen = torch.Generator().manual_seed(4)
    causal = torch.arange(k_len) <= torch.arange(q_len).unsqueeze(-1) + (k_len - q_len)
    mask = torch.zeros(b, 1, q_len, k_len, dtype=dtype).masked_fill(~causal, low)
    mask[1, :, :, :3] = low  # left padding
    mask[0, 0, 4] = low  # a row allowed nothing
    bias = torch.rand(b, 1, q_len, k_len, generator=gen) < 0.1
    mask = torch.where(bias & causal, -0.5, mask)
    q, k, v = qkv(b=b, q=q_len, k=k_len, dtype=dtype)
    call = CallPlan.build(q, k, v, mask, SCALE, query_chunk_size=3)
    chunks = call.query_chunks()
    assert len(chunks) == 4
    for chunk in chunks:
        rows = mask[:, :, chunk.start : chunk.end].flatten(0, -2).tolist()
        allowed = [j for row in rows for j, x in enumerate(row) if x > low / 2]
        touched = [j for row in rows for j, x in enumerate(row) if x != 0]
        assert chunk.key_limit == (max(allowed) + 1 if allowed else 0)
        assert chunk.first_touched == (min(touched) if touched else k_len)

"""Sparse-prefill maskers (vertical-slash, block top-k), the block-layout mask and its path.

References are plain loops per head and block, written from the papers' definitions.
"""

from __future__ import annotations

import math

import pytest
import torch

from sah_core import (
    BlockSparseTopKMaskerConfig,
    CallPlan,
    Mask,
    ResearchAttention,
    ResearchAttentionConfig,
    ResearchMasker,
    SinkMaskerConfig,
    VerticalSlashMaskerConfig,
    run_attention,
)
from sah_core.attention.dense import dense_mask_attention
from sah_core.block_mask import BlockSparseMask
from sah_core.maskers.block_sparse_topk import antidiagonal_scores, mean_pooled_scores
from sah_core.maskers.vertical_slash import vertical_slash_scores

MIN = torch.finfo(torch.float32).min


def plan(helpers, b=1, hq=4, hkv=2, q=40, k=40, d=8, seed=0, padding=0) -> CallPlan:
    queries, keys, values = helpers.make_qkv(b=b, hq=hq, hkv=hkv, q=q, k=k, d=d, seed=seed)
    am = helpers.causal_additive(b, q, k)
    if padding:
        am[0, :, :, :padding] = MIN
    return CallPlan.build(queries, keys, values, am, layer_idx=0)


def add(config, call: CallPlan, previous: Mask | None = None) -> Mask:
    masker = ResearchMasker.create_from_config(config)
    return masker.add_mask(call, previous or Mask.empty(call.shape))


def position(call: CallPlan, r: int) -> int:
    return call.k_len - call.q_len + r


def probabilities(call: CallPlan, bi: int, h: int, r: int) -> list[float]:
    """Causal softmax of row r of head h, by hand."""
    kv = h // call.group_size
    pos = position(call, r)
    logits = (call.keys[bi, kv, : pos + 1].double() @ call.queries[bi, h, r].double()).tolist()
    logits = [x * call.scaling for x in logits]
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    total = sum(exps)
    return [e / total for e in exps] + [0.0] * (call.k_len - pos - 1)


# ----------------------------------------------------------------------- vertical-slash
def test_vertical_slash_estimate_matches_loops(helpers) -> None:
    call = plan(helpers, q=30, k=50, seed=1)
    last_q = 7
    vertical, slash = vertical_slash_scores(call, last_q)
    for h in range(call.num_q_heads):
        v = [0.0] * call.k_len
        s = [0.0] * call.k_len
        for r in range(call.q_len - last_q, call.q_len):
            p = probabilities(call, 0, h, r)
            for j in range(call.k_len):
                v[j] += p[j]
                if j <= position(call, r):
                    s[position(call, r) - j] += p[j]
        torch.testing.assert_close(vertical[0, h].double(), torch.tensor(v, dtype=torch.float64))
        torch.testing.assert_close(slash[0, h].double(), torch.tensor(s, dtype=torch.float64))


def naive_vertical_slash(call: CallPlan, cfg: VerticalSlashMaskerConfig) -> torch.Tensor:
    """The attended set by loops: top verticals (first 30 forced) as columns, top slashes
    (first 100 offsets forced) widened to the tiles they cross per query block."""
    b, hq, q, k = call.shape
    bs = cfg.block_size
    vertical, slash = vertical_slash_scores(call, cfg.last_q)
    n_v = min(k, max(cfg.vertical_size, 30))
    n_s = min(k, max(cfg.slash_size, 50))
    out = torch.zeros(call.shape, dtype=torch.bool)
    for bi in range(b):
        for h in range(hq):
            v_rank = sorted(range(k), key=lambda j: -(math.inf if j < 30 else vertical[bi, h, j]))
            s_rank = sorted(range(k), key=lambda j: -(math.inf if j < 100 else slash[bi, h, j]))
            columns, offsets = set(v_rank[:n_v]), set(s_rank[:n_s])
            for r in range(q):
                block = r // bs
                rows = range(block * bs, min(q, block * bs + bs))
                tiles = {
                    (position(call, rr) - s) // bs
                    for rr in rows
                    for s in offsets
                    if position(call, rr) - s >= 0
                }
                for j in range(position(call, r) + 1):
                    out[bi, h, r, j] = j in columns or (j // bs) in tiles
    return out


@pytest.mark.parametrize(("q", "k", "vs", "ss"), [(48, 48, 3, 5), (30, 70, 8, 2), (70, 70, 35, 60)])
def test_vertical_slash_layout_matches_loops(helpers, q, k, vs, ss) -> None:
    call = plan(helpers, q=q, k=k, seed=q + k)
    cfg = VerticalSlashMaskerConfig(vertical_size=vs, slash_size=ss, last_q=9, block_size=16)
    mask = add(cfg, call)
    if min(k, max(vs, 30)) >= k or min(k, max(ss, 50)) >= k:
        assert mask.is_full()
        return
    assert isinstance(mask, BlockSparseMask)
    assert torch.equal(mask.get_dense_mask() > 0, naive_vertical_slash(call, cfg))


def test_vertical_slash_ties_heads_to_their_own_estimate(helpers) -> None:
    """Per head: two heads with different queries get different columns."""
    call = plan(helpers, q=64, k=128, seed=5)
    mask = add(VerticalSlashMaskerConfig(vertical_size=31, slash_size=50, block_size=16), call)
    dense = mask.get_dense_mask()
    assert not torch.equal(dense[0, 0], dense[0, 1])


# ----------------------------------------------------------------------- block top-k scores
def test_mean_pooled_scores_match_loops(helpers) -> None:
    call = plan(helpers, q=21, k=37, seed=2)
    bs = 8
    got = mean_pooled_scores(call, bs)
    nqb, nkb = -(-21 // bs), -(-37 // bs)
    for h in range(call.num_q_heads):
        kv = h // call.group_size
        for i in range(nqb):
            rows = range(i * bs, min(21, i * bs + bs))
            q_mean = sum(call.queries[0, h, r].double() for r in rows) / len(rows)
            last = position(call, rows[-1])
            logits = []
            for j in range(nkb):
                cols = range(j * bs, min(37, j * bs + bs))
                k_mean = sum(call.keys[0, kv, c].double() for c in cols) / len(cols)
                visible = j * bs <= last
                logits.append(float(q_mean @ k_mean) * call.scaling if visible else -math.inf)
            want = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0)
            torch.testing.assert_close(got[0, h, i].double(), want)


def test_antidiagonal_scores_match_loops(helpers) -> None:
    call = plan(helpers, q=20, k=28, seed=3)
    bs, stride = 8, 4
    got = antidiagonal_scores(call, bs, stride)
    nqb, nkb = 3, 4
    q, k = 20, 28
    for h in range(call.num_q_heads):
        kv = h // call.group_size
        tile = torch.zeros(nqb, nkb, dtype=torch.float64)
        for m in range(nqb * bs // stride):
            if m * stride >= q:
                continue
            group_last = k - q + m * stride + stride - 1
            logits = []
            for n in range(nkb * bs // stride):
                if n * stride > group_last or n * stride >= k:
                    logits.append(-math.inf)
                    continue
                total = 0.0
                for t in range(stride):
                    qr, kr = m * stride + stride - 1 - t, n * stride + t
                    if qr < q and kr < k:
                        total += float(call.queries[0, h, qr] @ call.keys[0, kv, kr])
                logits.append(total * call.scaling / stride)
            probs = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0)
            for n, p in enumerate(probs.tolist()):
                tile[m * stride // bs, n * stride // bs] += p
        tile = tile / tile.sum(-1, keepdim=True)
        torch.testing.assert_close(got[0, h].double(), tile, atol=1e-5, rtol=1e-5)


def naive_block_selection(
    scores: torch.Tensor, call: CallPlan, cfg: BlockSparseTopKMaskerConfig
) -> torch.Tensor:
    """Per query block: forced tiles (diagonal, block 0) first, then by score; keep while the
    mass before a tile is below the threshold, or the first ``block_budget``."""
    b, hq, nqb, nkb = scores.shape
    bs = cfg.block_size
    out = torch.zeros(b, hq, nqb, nkb, dtype=torch.bool)
    for bi in range(b):
        for h in range(hq):
            for i in range(nqb):
                first = position(call, i * bs)
                last = position(call, min(call.q_len - 1, i * bs + bs - 1))
                visible = [j for j in range(nkb) if j * bs <= last]
                forced = [j for j in visible if j >= first // bs or (cfg.keep_first and j == 0)]
                rest = sorted(
                    (j for j in visible if j not in forced),
                    key=lambda j: -float(scores[bi, h, i, j]),
                )
                order = forced + rest
                kept, before = [], 0.0
                for rank, j in enumerate(order):
                    if cfg.block_budget is not None:
                        take = rank < cfg.block_budget or j in forced
                    else:
                        take = before < cfg.threshold or j in forced
                    if take:
                        kept.append(j)
                    before += float(scores[bi, h, i, j])
                for j in kept:
                    out[bi, h, i, j] = True
    return out


@pytest.mark.parametrize(
    "cfg",
    [
        BlockSparseTopKMaskerConfig(block_size=8, threshold=0.6),
        BlockSparseTopKMaskerConfig(block_size=8, threshold=0.3, keep_first=False),
        BlockSparseTopKMaskerConfig(block_size=8, threshold=None, block_budget=2),
        BlockSparseTopKMaskerConfig(block_size=8, scoring="antidiagonal", stride=4, threshold=0.5),
    ],
)
def test_block_selection_matches_loops(helpers, cfg) -> None:
    call = plan(helpers, q=40, k=56, seed=4)
    mask = add(cfg, call)
    assert isinstance(mask, BlockSparseMask)
    masker = ResearchMasker.create_from_config(cfg)
    scores = masker.block_scores(call)
    want = naive_block_selection(scores, call, cfg)
    tiles, columns = mask.layout()
    assert columns is None
    assert torch.equal(tiles.expand_as(want), want)


# ----------------------------------------------------------------------- shared properties
CONFIGS = [
    VerticalSlashMaskerConfig(vertical_size=4, slash_size=3, last_q=5, block_size=16),
    VerticalSlashMaskerConfig(vertical_size=0.4, slash_size=0.5, block_size=8),
    BlockSparseTopKMaskerConfig(block_size=8, threshold=0.5),
    BlockSparseTopKMaskerConfig(block_size=16, threshold=None, block_budget=0.3),
    BlockSparseTopKMaskerConfig(block_size=8, scoring="antidiagonal", stride=2, threshold=0.7),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.type_tag}")
@pytest.mark.parametrize(("q", "k"), [(50, 50), (17, 60), (1, 33)])
def test_block_masker_properties(helpers, cfg, q, k) -> None:
    call = plan(helpers, b=2, q=q, k=k, seed=q * k)
    previous = Mask.empty(call.shape)
    snapshot = [t.clone() for t in (call.queries, call.keys, call.values)]
    mask = add(cfg, call, previous)
    again = add(cfg, call, previous)
    dense = mask.get_dense_mask()
    assert bool((dense >= 0).all() and (dense <= 1).all())
    assert torch.equal(dense, again.get_dense_mask())
    causal = (call.attention_mask > MIN / 2).expand_as(dense)
    if not mask.is_full():
        assert not bool(((dense > 0) & ~causal).any())  # causal
        # each row keeps its own key (diagonal tile / nearest slashes)
        own = dense[..., torch.arange(q), torch.arange(k - q, k)]
        assert bool((own > 0).all())
    for before, after in zip(snapshot, (call.queries, call.keys, call.values), strict=True):
        assert torch.equal(before, after)
    # analytic row counts / density against the materialised mask
    assert torch.equal(mask.row_counts(), (dense > 0).sum(-1))
    assert math.isclose(mask.get_density(), int((dense > 0).sum()) / dense.numel(), rel_tol=1e-9)
    # the block path equals the dense-weight path under the same weights (the naive loop
    # reference is checked in test_chunked_prefill_through_research_attention)
    out, _ = run_attention(call, mask)
    want = dense_mask_attention(
        call.queries,
        call.keys,
        call.values,
        dense,
        scaling=call.scaling,
        attention_mask=call.attention_mask,
    )
    torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)


def test_block_budget_caps_tiles_per_query_block(helpers) -> None:
    call = plan(helpers, q=64, k=64, seed=8)
    cfg = BlockSparseTopKMaskerConfig(block_size=8, threshold=None, block_budget=3)
    tiles, _ = add(cfg, call).layout()
    counts = tiles.sum(-1)
    assert int(counts.max()) == 3  # block 0 + diagonal + one more (or fewer early on)
    assert torch.equal(counts[..., 2:], torch.full_like(counts[..., 2:], 3))


@pytest.mark.parametrize(
    "cfg",
    [
        VerticalSlashMaskerConfig(vertical_size=1.0, slash_size=1),
        VerticalSlashMaskerConfig(vertical_size=1, slash_size=64),
        BlockSparseTopKMaskerConfig(block_size=8, threshold=1.0),
        BlockSparseTopKMaskerConfig(block_size=8, threshold=None, block_budget=1.0),
    ],
)
def test_full_budget_prefill_equals_dense_at_core_level(helpers, cfg) -> None:
    """A sparse prefill of a full-budget stack through ResearchAttention == dense prefill."""
    queries, keys, values = helpers.make_qkv(b=1, hq=4, hkv=2, q=64, k=64, seed=11)
    am = helpers.causal_additive(1, 64, 64)
    config = ResearchAttentionConfig([cfg], phases=("prefill", "question", "decode"))
    sparse, _ = ResearchAttention(config).custom_attention(
        None, queries, keys, values, am, layer_idx=0
    )
    dense, _ = ResearchAttention(ResearchAttentionConfig([])).custom_attention(
        None, queries, keys, values, am, layer_idx=0
    )
    torch.testing.assert_close(sparse, dense, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("padding", [0, 5])
def test_chunked_prefill_through_research_attention(helpers, padding) -> None:
    """Query chunks of a prefill (Q < K) go through the block path and equal the dense-weight
    attention of the same mask; a padded row (selected on its own keys, as a dense mask) keeps
    its forbidden keys forbidden."""
    call = plan(helpers, b=1, q=24, k=72, seed=12, padding=padding)
    cfg = VerticalSlashMaskerConfig(vertical_size=2, slash_size=3, last_q=8, block_size=16)
    attention = ResearchAttention(ResearchAttentionConfig([cfg], phases=("prefill",)))
    mask = attention.mask_for(call)
    assert mask.representation == ("dense" if padding else "block")
    out, backend = run_attention(call, mask)
    if not padding:
        assert backend == "reference/block-sparse"
    want = helpers.naive_attention(
        call.queries,
        call.keys,
        call.values,
        mask.get_dense_mask(),
        call.scaling,
        call.attention_mask,
    )
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------- padded batches
PADDED_CONFIGS = [
    BlockSparseTopKMaskerConfig(block_size=8, threshold=0.5),
    BlockSparseTopKMaskerConfig(block_size=8, threshold=None, block_budget=0.4),
    BlockSparseTopKMaskerConfig(block_size=8, scoring="antidiagonal", stride=4, threshold=0.6),
    VerticalSlashMaskerConfig(vertical_size=3, slash_size=4, last_q=4, block_size=8),
]


@pytest.mark.parametrize("cfg", PADDED_CONFIGS, ids=lambda c: f"{c.type_tag}")
@pytest.mark.parametrize(("q", "tails"), [(13, (13, 6)), (1, (9, 3))])
def test_padded_batch_equals_rows_alone(helpers, cfg, q, tails) -> None:
    """A batch laid out ``[context | pads | tail]`` with unequal tails (question, then new
    tokens), queries = the last ``q`` keys (a question prefill, or a decode step at q=1): each
    row picks exactly the keys it picks alone (pads enter no pooled score, tile grid or
    budget)."""
    context, hq, hkv, d = 113, 4, 2, 8  # > 100 keys: vertical-slash's forced diagonals
    k = context + max(tails)
    gen = torch.Generator().manual_seed(q + sum(tails))
    queries = torch.randn(2, hq, q, d, generator=gen)
    keys = torch.randn(2, hkv, k, d, generator=gen)
    values = torch.randn(2, hkv, k, d, generator=gen)
    keys[1, :, :context] = keys[0, :, :context]  # one shared context
    am = helpers.causal_additive(2, q, k)
    for row, tail in enumerate(tails):
        am[row, :, :, context : context + max(tails) - tail] = MIN  # the row's pads
    mask = add(cfg, CallPlan.build(queries, keys, values, am, layer_idx=0))
    assert not mask.is_full()
    batched = mask.get_dense_mask()
    for row, tail in enumerate(tails):
        pad = max(tails) - tail
        pad_rows = max(0, q - tail)  # query rows that sit on pads
        valid = [*range(context), *range(context + pad, k)]
        alone_call = CallPlan.build(
            queries[row : row + 1, :, pad_rows:].contiguous(),
            keys[row : row + 1, :, valid].contiguous(),
            values[row : row + 1, :, valid].contiguous(),
            helpers.causal_additive(1, q - pad_rows, len(valid)),
            layer_idx=0,
        )
        alone = add(cfg, alone_call).get_dense_mask()[0]
        causal = (alone_call.attention_mask[0] > MIN / 2).expand_as(alone)
        got = batched[row][:, pad_rows:][..., valid]
        assert torch.equal(got * causal, alone * causal), f"row {row}"
        assert not bool(batched[row][..., context : context + pad].any())  # pads never picked


# ----------------------------------------------------------------------- the mask value
def test_block_mask_algebra(helpers) -> None:
    call = plan(helpers, q=40, k=80, seed=6)
    a = add(BlockSparseTopKMaskerConfig(block_size=8, threshold=0.3), call)
    b = add(VerticalSlashMaskerConfig(vertical_size=2, slash_size=2, block_size=8), call)
    union = a.merge(b)
    assert union.representation == "block"
    want = (a.get_dense_mask() + b.get_dense_mask()).clamp(0, 1)
    assert torch.equal(union.get_dense_mask(), want)
    sink = add(SinkMaskerConfig(3), call)
    mixed = sink.merge(a)  # index ∪ block: materialised, same value
    assert torch.equal(
        mixed.get_dense_mask(), (sink.get_dense_mask() + a.get_dense_mask()).clamp(0, 1)
    )
    assert torch.equal(a.merge(sink).get_dense_mask(), mixed.get_dense_mask())
    for start, end in ((0, 40), (3, 19), (8, 16), (39, 40)):
        part = union.query_slice(start, end)
        assert torch.equal(part.get_dense_mask(), want[:, :, start:end])
        assert torch.equal(part.row_counts(), (want[:, :, start:end] > 0).sum(-1))
    idx, w = union.get_index_form()
    assert torch.equal(Mask.from_index(idx, w, call.shape).get_dense_mask(), want)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: VerticalSlashMaskerConfig(vertical_size=-1), "vertical_size"),
        (lambda: VerticalSlashMaskerConfig(last_q=0), "last_q"),
        (lambda: BlockSparseTopKMaskerConfig(scoring="max"), "scoring"),
        (lambda: BlockSparseTopKMaskerConfig(scoring="antidiagonal", stride=5), "stride"),
        (lambda: BlockSparseTopKMaskerConfig(threshold=None), "exactly one"),
        (lambda: BlockSparseTopKMaskerConfig(block_budget=2), "exactly one"),
        (lambda: BlockSparseTopKMaskerConfig(threshold=1.5), "threshold"),
    ],
)
def test_bad_configs_raise(build, match) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_configs_round_trip_and_positions_checked(helpers) -> None:
    for cfg in CONFIGS:
        assert type(cfg).from_dict(cfg.to_dict()) == cfg
    queries, keys, values = helpers.make_qkv(q=4, k=20)
    call = CallPlan.build(queries, keys, values, query_positions=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="last Q keys"):
        add(CONFIGS[0], call)


# ----------------------------------------------------------------------- density metric
def test_density_counts_causal_pairs_by_hand(helpers, tmp_path) -> None:
    """Q=K=4, causal: 10 allowed pairs per head. Sink(1) attends 4 of them (key 0 of every
    row): density 4/10 over the causal pairs (4/16 over Q x K)."""
    import json

    from sah_core import MicroMetricLogger
    from sah_core.metrics.micro_metric_logger import allowed_pair_density

    queries, keys, values = helpers.make_qkv(b=1, hq=2, hkv=1, q=4, k=4)
    am = helpers.causal_additive(1, 4, 4)
    attention = ResearchAttention(ResearchAttentionConfig([SinkMaskerConfig(1)]))
    with MicroMetricLogger(tmp_path):
        attention.custom_attention(None, queries, keys, values, am, layer_idx=0)
    (record,) = [json.loads(line) for line in (tmp_path / "micro_metrics.jsonl").open()]
    assert record["density"] == pytest.approx(4 / 10)
    assert record["density_qk"] == pytest.approx(4 / 16)
    # a left-padded key is not a pair either: with key 0 padded, rows allow 0, 1, 2, 3 keys
    # (6 pairs per head); tiles of 2, diagonal only: rows attend keys {0,1}, {0,1}, {2}, {2,3},
    # of which allowed: 0, 1, 1, 2 -> 4 of 6
    padded = am.clone()
    padded[..., 0] = MIN
    call = CallPlan.build(queries, keys, values, padded)
    cfg = BlockSparseTopKMaskerConfig(block_size=2, threshold=None, block_budget=1)
    cfg.keep_first = False
    block = add(cfg, call)
    assert allowed_pair_density(block, call.attention_mask) == pytest.approx(4 / 6)
    assert allowed_pair_density(Mask.full(call.shape), call.attention_mask) == 1.0

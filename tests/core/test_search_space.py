"""Search spaces beside the masker configs: domains, the spaces the issue names, validity."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from sah_core import search_space as sp
from sah_core.maskers.adaptive_sampling import AdaptiveSamplingMaskerConfig
from sah_core.maskers.causal import CausalMaskerConfig
from sah_core.maskers.double_sparsity import DoubleSparsityTopKMaskerConfig
from sah_core.maskers.hash_attention import HashAttentionTopKMaskerConfig
from sah_core.maskers.local import LocalMaskerConfig
from sah_core.maskers.magic_pig import MagicPigConfig
from sah_core.maskers.oracle_top_k import OracleTopKConfig
from sah_core.maskers.pq_cache import PQCacheConfig
from sah_core.maskers.quest import MIN_PAGES, QuestTopKMaskerConfig
from sah_core.maskers.random_sampling import RandomSamplingMaskerConfig
from sah_core.maskers.sink import SinkMaskerConfig
from sah_core.maskers.socket_topk import SocketMaskerConfig

TUNABLE = [
    OracleTopKConfig,
    QuestTopKMaskerConfig,
    HashAttentionTopKMaskerConfig,
    DoubleSparsityTopKMaskerConfig,
    PQCacheConfig,
    SocketMaskerConfig,
    MagicPigConfig,
    RandomSamplingMaskerConfig,
    AdaptiveSamplingMaskerConfig,
    SinkMaskerConfig,
    LocalMaskerConfig,
]


def test_named_spaces() -> None:
    quest = QuestTopKMaskerConfig.search_space.params
    assert quest["page_size"] == sp.Choice((8, 16, 32, 64))
    assert quest["label_bits"] == sp.Choice((4, 8, 16))
    assert isinstance(quest["heavy_size"], sp.Budget)
    assert set(SocketMaskerConfig.search_space.params) == {"heavy_size", "K", "L", "tau"}
    assert set(MagicPigConfig.search_space.params) == {"lsh_l", "lsh_k"}
    assert set(PQCacheConfig.search_space.params) == {"heavy_size", "pq_group_factor", "pq_bits"}
    assert "hat_bits" in HashAttentionTopKMaskerConfig.search_space.params
    vatt = AdaptiveSamplingMaskerConfig.search_space.params
    assert set(vatt) == {"base_rate_sampling", "epsilon", "delta"}
    assert CausalMaskerConfig.search_space.params == {}


@pytest.mark.parametrize("config_class", TUNABLE, ids=lambda c: c.__name__)
def test_every_sampled_point_names_real_fields_and_validates(config_class: type) -> None:
    """A point drawn from a space, budgets resolved, builds a valid config (the space names
    fields that exist and ranges the config accepts)."""
    fields = set(config_class.__dataclass_fields__)
    space = config_class.search_space
    assert set(space.params) <= fields
    context = sp.SearchContext(target_density=0.2, key_len=4096, fixed_density=0.05)
    rng = random.Random(0)
    for _ in range(20):
        point = space.sample(rng)
        for name, domain in space.params.items():
            assert domain.contains(point[name]), (name, point[name])
            if isinstance(domain, sp.Budget):
                point[name] = domain.size(point[name], context)
        extra = {"hat_weight_file": "w.safetensors"} if "hat_bits" in point else {}
        config_class(**point, **extra)  # raises ValueError when a range is wrong


def test_domains_sample_inside_their_bounds() -> None:
    rng = random.Random(1)
    ints = [sp.IntRange(4, 128, log=True).sample(rng) for _ in range(500)]
    assert min(ints) >= 4 and max(ints) <= 128
    # log-uniform: about half the draws below the geometric mean sqrt(4 * 129) ~ 22.7
    below = sum(x < math.sqrt(4 * 129) for x in ints) / len(ints)
    assert 0.4 < below < 0.6
    floats = [sp.FloatRange(0.1, 10.0, log=True).sample(rng) for _ in range(500)]
    assert min(floats) >= 0.1 and max(floats) <= 10.0
    assert 0.4 < sum(x < 1.0 for x in floats) / len(floats) < 0.6
    assert sp.Choice((1, 2)).contains(2) and not sp.Choice((1, 2)).contains(3)
    assert not sp.IntRange(1, 3).contains(True)


def test_bad_domains_are_refused() -> None:
    with pytest.raises(ValueError, match="low=5 > high=2"):
        sp.IntRange(5, 2)
    with pytest.raises(ValueError, match="low > 0"):
        sp.FloatRange(0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="at least one"):
        sp.Choice(())
    with pytest.raises(ValueError, match="shares in"):
        sp.Budget(1.5)


def test_budget_rule_rejects_fixed_maskers_that_reach_the_target() -> None:
    space = OracleTopKConfig.search_space
    full = sp.SearchContext(target_density=0.05, key_len=1000, fixed_density=0.06)
    reason = space.check({"heavy_size": 0.0}, full)
    assert reason is not None and "no budget is left" in reason
    ok = sp.SearchContext(target_density=0.05, key_len=1000, fixed_density=0.02)
    assert space.check({"heavy_size": 0.03}, ok) is None
    assert sp.WHOLE_BUDGET.size(1.0, ok) == pytest.approx(0.03)
    assert sp.Budget(sp.FloatRange(0.2, 0.8)).size(0.5, ok) == pytest.approx(0.015)


def test_quest_budget_under_three_pages_is_invalid() -> None:
    space = QuestTopKMaskerConfig.search_space
    context = sp.SearchContext(target_density=0.1, key_len=200, fixed_density=0.05)
    # budget 0.05 * 200 = 10 tokens: three pages of 3 fit, three pages of 4 overshoot
    assert space.check({"heavy_size": 0.05, "page_size": 3, "label_bits": 8}, context) is None
    reason = space.check({"heavy_size": 0.05, "page_size": 4, "label_bits": 8}, context)
    assert reason is not None and "page_size=4" in reason and "3 whole pages" in reason
    assert sp.QUEST_MIN_PAGES == MIN_PAGES


def test_budget_converts_allowed_pair_density_to_a_key_fraction() -> None:
    # A causal call whose rows may attend on average 4/5 of its keys: a fraction f of the
    # keys is f * 5/4 of the allowed pairs, so the budget fraction is the density left / 1.25.
    context = sp.SearchContext(target_density=0.3, key_len=100, fixed_density=0.1, key_scale=1.25)
    assert sp.WHOLE_BUDGET.size(1.0, context) == pytest.approx(0.2 / 1.25)
    assert sp.WHOLE_BUDGET.size(1.0, dataclasses.replace(context, key_scale=1.0)) == pytest.approx(
        0.2
    )


def test_head_dim_and_centroid_rules() -> None:
    pq = PQCacheConfig.search_space
    context = sp.SearchContext(target_density=0.2, key_len=100, head_dim=12, fixed_density=0.0)
    assert pq.check({"heavy_size": 0.2, "pq_group_factor": 4, "pq_bits": 4}, context) is None
    assert "does not divide" in str(pq.check({"pq_group_factor": 8, "pq_bits": 4}, context))
    assert "128 centroids" in str(pq.check({"pq_group_factor": 4, "pq_bits": 7}, context))
    unknown = sp.SearchContext(target_density=0.2, key_len=1000, fixed_density=0.0)
    assert pq.check({"pq_group_factor": 8, "pq_bits": 4}, unknown) is None
    ds = DoubleSparsityTopKMaskerConfig.search_space
    assert "exceeds the head size" in str(ds.check({"group_factor": 16}, context))


def test_extend_and_without() -> None:
    base = OracleTopKConfig.search_space
    grown = base.extend(foo=sp.IntRange(1, 2))
    assert set(grown.params) == {"heavy_size", "foo"} and grown.rules == base.rules
    assert set(grown.without("foo").params) == {"heavy_size"}
    assert set(base.params) == {"heavy_size"}  # the class's own space is untouched

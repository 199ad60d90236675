"""`demo --family`: every family's configs are valid stacks; a wrong family is refused."""

from __future__ import annotations

import pytest

from sah_bench.demo import FAMILIES, demo_configs


@pytest.mark.parametrize("family", FAMILIES)
def test_family_configs_load(family: str) -> None:
    from sah_core import ResearchAttentionConfig
    from sah_core.eviction import EvictionConfig

    configs = demo_configs(family=family)
    assert configs["dense"] is None and len(configs) >= 3
    stacks = [ResearchAttentionConfig.from_dict(c) for c in configs.values() if c is not None]
    evictions = [any(isinstance(m, EvictionConfig) for m in s.masker_configs) for s in stacks]
    assert sum(evictions) == (7 if family == "eviction" else 0)
    if family == "prefill":
        assert all("prefill" in s.phases for s in stacks)


def test_default_family_keeps_its_size() -> None:
    assert list(demo_configs()) == [
        "dense",
        "sink_local",
        "oracle_topk_10pct",
        "quest_10pct",
        "adaptive_sampling",
    ]
    # the whole selection family adds TidalDecode on its own (no sink / window)
    selection = demo_configs(family="selection")
    assert list(selection) == [*demo_configs(), "tidal_decode_256"]
    tidal = selection["tidal_decode_256"]
    assert tidal is not None and [m["type"] for m in tidal["masker_configs"]] == ["tidal_decode"]


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match=r"family='decode' is not allowed"):
        demo_configs(family="decode")

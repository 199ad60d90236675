"""Every concrete class that exists satisfies the protocol it claims (grows with the code)."""

from __future__ import annotations

import inspect
from importlib.metadata import entry_points

import pytest

from sah_protocol import (
    BENCHMARKS_ENTRY_POINT_GROUP,
    MASKERS_ENTRY_POINT_GROUP,
    BenchmarkProtocol,
    MaskerConfigProtocol,
    MaskerProtocol,
    ModelAdapter,
    ModelHubAdapterInterface,
    SparseAttentionAdapterInterface,
)

MASKER_EPS = sorted(entry_points(group=MASKERS_ENTRY_POINT_GROUP), key=lambda e: e.name)
BENCHMARK_EPS = sorted(entry_points(group=BENCHMARKS_ENTRY_POINT_GROUP), key=lambda e: e.name)


def _protocol_members(protocol: type) -> set[str]:
    members: set[str] = set()
    for klass in protocol.__mro__:
        if klass is object:
            continue
        members.update(getattr(klass, "__annotations__", {}))
        members.update(n for n, v in vars(klass).items() if callable(v) and not n.startswith("_"))
    members.discard("config")  # an instance attribute, checked on instances below
    return members


def test_entry_point_groups_are_populated() -> None:
    assert len(MASKER_EPS) >= 13, [e.name for e in MASKER_EPS]
    assert any(e.name == "synthetic" for e in BENCHMARK_EPS)


@pytest.mark.parametrize("ep", MASKER_EPS, ids=lambda e: e.name)
def test_masker_entry_point_satisfies_protocol(ep) -> None:  # type: ignore[no-untyped-def]
    masker_cls = ep.load()
    for member in _protocol_members(MaskerProtocol):
        assert hasattr(masker_cls, member), f"{ep.value} lacks {member}"
    params = list(inspect.signature(masker_cls.add_mask).parameters)
    assert params == ["self", "call", "previous"], f"{ep.value}.add_mask has parameters {params}"
    config_cls = masker_cls.config_type
    assert hasattr(config_cls, "to_dict") and hasattr(config_cls, "from_dict")
    assert isinstance(config_cls.__doc__, str) or isinstance(masker_cls.__doc__, str)


def test_masker_configs_are_config_protocols() -> None:
    from sah_core import LocalMaskerConfig, SinkMaskerConfig

    for config in (SinkMaskerConfig(sink_size=4), LocalMaskerConfig(window_size=4)):
        assert isinstance(config, MaskerConfigProtocol)


@pytest.mark.parametrize("ep", BENCHMARK_EPS, ids=lambda e: e.name)
def test_benchmark_entry_point_satisfies_protocol(ep) -> None:  # type: ignore[no-untyped-def]
    benchmark = ep.load()()
    assert isinstance(benchmark, BenchmarkProtocol), ep.value
    assert list(benchmark.subsets), f"{ep.value} lists no subsets"


def test_model_adapter_hf_implements_every_interface() -> None:
    from sah_adapters import ModelAdapterHF

    for interface in (ModelAdapter, ModelHubAdapterInterface, SparseAttentionAdapterInterface):
        assert issubclass(ModelAdapterHF, interface)
    assert not inspect.isabstract(ModelAdapterHF)


def test_custom_attention_has_transformers_signature() -> None:
    from sah_core import ResearchAttention

    params = list(inspect.signature(ResearchAttention.custom_attention).parameters)
    assert params[:9] == [
        "self",
        "module",
        "queries",
        "keys",
        "values",
        "attention_mask",
        "scaling",
        "dropout",
        "sparse_meta_data",
    ]

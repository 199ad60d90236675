"""The one-import public API and the removed names of the old API."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import sparse_attention_hub

REMOVED = {
    "SparseAttentionHF": "ModelAdapterHF",
    "SparseAttentionGen": "ModelAdapterHF",
    "ModelHub": "ModelAdapterHF",
    "ModelHubHF": "ModelAdapterHF",
    "Pipeline": "removed; no replacement",
    "PipelineHF": "removed; no replacement",
    "SparseAttentionServer": "removed; no replacement",
}


@pytest.mark.parametrize(("name", "replacement"), sorted(REMOVED.items()))
def test_removed_name_raises_import_error_naming_replacement(name: str, replacement: str) -> None:
    with pytest.raises(ImportError, match=replacement):
        exec(f"from sparse_attention_hub import {name}", {})
    assert name in sparse_attention_hub.REMOVED_NAMES


def test_core_names_import() -> None:
    from sparse_attention_hub import ModelAdapterHF, Request, RequestResponse

    assert Request("c", "q").question_list == ["q"]
    assert RequestResponse("a").responses == "a"
    assert callable(ModelAdapterHF)


def test_every_advertised_name_resolves() -> None:
    for name in dir(sparse_attention_hub):
        if not name.startswith("_"):
            assert getattr(sparse_attention_hub, name) is not None


def test_unknown_name_is_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        _ = sparse_attention_hub.no_such_thing  # type: ignore[attr-defined]


def test_import_is_lazy() -> None:
    code = (
        "import sys, sparse_attention_hub\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reexports_are_the_same_objects() -> None:
    import sah_protocol

    assert sparse_attention_hub.Request is sah_protocol.Request
    assert importlib.import_module("sparse_attention_hub").RequestResponse is (
        sah_protocol.RequestResponse
    )


def test_star_import_brings_every_public_name() -> None:
    namespace: dict[str, object] = {}
    exec("from sparse_attention_hub import *", namespace)
    for name in (
        "ModelAdapterHF",
        "Request",
        "ResearchAttentionConfig",
        "SinkMaskerConfig",
        "Mask",
    ):
        assert name in namespace, name
    assert not any(n in namespace for n in sparse_attention_hub.REMOVED_NAMES)

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


def test_every_provider_name_is_declared_statically() -> None:
    """A name a package exports must be in the facade's static table (and its
    ``TYPE_CHECKING`` imports), or type checkers see it as missing."""
    import ast
    from pathlib import Path

    provided = sparse_attention_hub._PROVIDED  # type: ignore[attr-defined]
    for module_name in ("sah_protocol", "sah_core", "sah_adapters", "sah_bench"):
        exported = getattr(importlib.import_module(module_name), "__all__", ())
        missing = sorted(set(exported) - set(provided))
        assert not missing, f"declare {missing} ({module_name}) in sparse_attention_hub"
    source = Path(sparse_attention_hub.__file__).read_text()
    typed: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                assert provided.keys() >= {a.name for a in stmt.names}
                assert all(provided[a.name] == stmt.module for a in stmt.names)
                typed.update(a.name for a in stmt.names)
    assert typed == set(provided)


def test_report_names_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from sparse_attention_hub import write_report, leaderboard, Request\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


USER_SNIPPET = """
import sparse_attention_hub as sah

config = sah.ResearchAttentionConfig(
    masker_configs=[sah.SinkMaskerConfig(sink_size=4), sah.OracleTopKConfig(heavy_size=0.05)]
)
request = sah.Request(context="a long text", questions=["what?"], answer_prefix="A:")


def answer(adapter: sah.ModelAdapterHF) -> sah.RequestResponse:
    response = adapter.process_request(request)
    return response


masker = sah.ResearchMasker.create_from_config(config.masker_configs[0])
restored = sah.ResearchAttentionConfig(list(config.masker_configs))
tags: list[str] = [type(c).type_tag for c in restored.masker_configs]
attention = sah.ResearchAttention(restored, raise_on_nonfinite=True)
"""


def test_mypy_strict_sees_real_types_not_any(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """mypy --strict with --disallow-any-expr on user code: any name the facade left as
    ``Any`` (a runtime-only __getattr__) makes an expression Any and fails."""
    pytest.importorskip("mypy")
    snippet = tmp_path / "user_code.py"
    snippet.write_text(USER_SNIPPET)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--disallow-any-expr",
            "--follow-imports=silent",
            "--no-incremental",
            "--cache-dir=/dev/null",
            str(snippet),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr

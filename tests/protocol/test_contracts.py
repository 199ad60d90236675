"""Protocol module facts: no heavy imports, abstract interfaces, schema and group names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sah_protocol import (
    BENCHMARKS_ENTRY_POINT_GROUP,
    MASKERS_ENTRY_POINT_GROUP,
    ModelAdapter,
    ModelHubAdapterInterface,
    Request,
    RequestResponse,
    ResultRecord,
    ScorerProtocol,
    SparseAttentionAdapterInterface,
)


def test_import_pulls_no_heavy_module() -> None:
    code = (
        "import sys, sah_protocol\n"
        "bad = [m for m in ('torch', 'transformers', 'numpy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "cls", [ModelAdapter, ModelHubAdapterInterface, SparseAttentionAdapterInterface]
)
def test_interfaces_are_abstract(cls: type) -> None:
    with pytest.raises(TypeError):
        cls()


def test_a_minimal_adapter_satisfies_the_interface() -> None:
    class Echo(ModelAdapter):
        model_name = "echo"

        def process_request(self, request, generation_kwargs=None, request_kwargs=None):  # type: ignore[no-untyped-def]
            return RequestResponse.for_request(request, request.question_list)

    with Echo() as adapter:
        resp = adapter.process_request(Request("ctx", ["a", "b"]))
    assert resp.responses == ["a", "b"]


def test_result_record_schema() -> None:
    names = ResultRecord.field_names()
    for required in (
        "model",
        "config",
        "benchmark",
        "subset",
        "request_id",
        "question",
        "prediction",
        "answers",
        "score",
    ):
        assert required in names
    assert any("seconds" in n for n in names)
    rec = ResultRecord("m", "dense", "mock", "s", "0", "q", "p", ["p"], 1.0)
    assert rec.to_dict()["answers"] == ["p"]


def test_entry_point_groups() -> None:
    assert MASKERS_ENTRY_POINT_GROUP == "sah.maskers"
    assert BENCHMARKS_ENTRY_POINT_GROUP == "sah.benchmarks"


def test_scorer_protocol_is_structural() -> None:
    def exact(prediction: str, answers: object, **kwargs: object) -> float:
        return 1.0

    assert isinstance(exact, ScorerProtocol)

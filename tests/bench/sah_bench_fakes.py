"""Fake model adapters for the sah_bench tests (importable by worker processes via sys.path).

Behaviour is chosen by the model name:

* ``fake-oracle``: answers needle questions by reading the needles out of the context (so dense
  scores are exactly 1 on the niah tasks); a sparse config ``{"keep": k}`` makes it answer only
  the first ``k`` needles of a multi-needle question;
* ``fake-constant``: answers ``"1874"`` to everything;
* ``fake-fail``: raises in ``process_request``;
* ``fake-unloadable``: the factory itself fails, like a model that cannot be loaded;
* ``fake-slow``: like ``fake-oracle`` but sleeps ``$SAH_FAKE_SLEEP`` seconds per request.

Every answered request is appended to ``$SAH_FAKE_CALL_LOG`` when that is set.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from sah_protocol import ModelAdapter, Request, RequestResponse

_KEYS = re.compile(r"for (.+?) mentioned")


def _needle_values(context: str, key: str) -> list[str]:
    return re.findall(rf"for {re.escape(key)} is: (\d+)", context)


class FakeAdapter(ModelAdapter):
    def __init__(self, model_name: str, sparse_config: dict[str, Any] | None) -> None:
        self.model_name = model_name
        self.sparse_config = sparse_config
        self.last_request_micro_metrics: list[dict[str, Any]] = []
        self.closed = False

    def _answer(self, context: str, question: str) -> str:
        if self.model_name == "fake-constant":
            return "1874"
        match = _KEYS.search(question)
        if match is None:
            return ""
        keys = re.split(r", | and ", match.group(1))
        values = [v for k in keys for v in _needle_values(context, k)]
        if self.sparse_config is not None and "keep" in self.sparse_config:
            values = values[: int(self.sparse_config["keep"])]
        return " ".join(values)

    def process_request(
        self,
        request: Request,
        generation_kwargs: dict[str, Any] | None = None,
        request_kwargs: dict[str, Any] | None = None,
    ) -> RequestResponse:
        if self.model_name == "fake-fail":
            raise RuntimeError("fake model failure")
        if self.model_name == "fake-slow":
            time.sleep(float(os.environ.get("SAH_FAKE_SLEEP", "0.2")))
        answers = [self._answer(request.context, q) for q in request.question_list]
        density = 1.0 if self.sparse_config is None else self.sparse_config.get("density", 1.0)
        self.last_request_micro_metrics = [
            {
                "metric": "research_attention_density",
                "value": density * (1 + layer) / 2,
                "layer_idx": layer,
            }
            for layer in range(2)
        ]
        log = os.environ.get("SAH_FAKE_CALL_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(request.context[-40:].replace("\n", " ") + "\n")
        return RequestResponse.for_request(request, answers)

    def close(self) -> None:
        self.closed = True


def make_fake_adapter(model_name: str, sparse_config: dict[str, Any] | None) -> FakeAdapter:
    log = os.environ.get("SAH_FAKE_FACTORY_LOG")
    if log:  # lets tests count model loads
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{model_name}\n")
    if model_name == "fake-unloadable":
        from sah_bench.executor import ModelLoadError

        raise ModelLoadError(f"model {model_name!r} could not be loaded: no such model")
    return FakeAdapter(model_name, sparse_config)

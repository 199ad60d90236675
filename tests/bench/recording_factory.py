"""A fake adapter factory that records what reaches it (importable by worker processes).

``make_recording_adapter(model, config, *, model_kwargs=None, device=None,
safetensors_only=False)`` appends one JSON line per call to ``$SAH_RECORD_LOG`` (the model, the
kwargs, the device, the process's ``CUDA_VISIBLE_DEVICES``) and returns an adapter whose
``process_request`` appends the generation and request kwargs it got. Model names:

* ``rec-oracle``: answers like ``fake-oracle`` (sah_bench_fakes);
* ``rec-crash``: its worker process dies (``os._exit``) in the first request;
* ``rec-shared``: carries a ``model`` and a ``context_cache`` attribute like ModelAdapterHF.
"""

from __future__ import annotations

import json
import os
from typing import Any

from sah_bench_fakes import FakeAdapter

from sah_protocol import Request, RequestResponse

SHARED_MODEL = object()  # every rec-shared adapter wraps the same "loaded model"


def _record(entry: dict[str, Any]) -> None:
    log = os.environ.get("SAH_RECORD_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, default=str) + "\n")


class RecordingAdapter(FakeAdapter):
    def __init__(self, model_name: str, sparse_config: dict[str, Any] | None) -> None:
        super().__init__("fake-oracle", sparse_config)
        self.real_name = model_name
        if model_name == "rec-shared":
            self.model = SHARED_MODEL
            self.context_cache: Any = None

    def process_request(
        self,
        request: Request,
        generation_kwargs: dict[str, Any] | None = None,
        request_kwargs: dict[str, Any] | None = None,
    ) -> RequestResponse:
        if self.real_name == "rec-crash":
            os._exit(3)
        _record(
            {
                "event": "request",
                "model": self.real_name,
                "config": self.sparse_config,
                "generation_kwargs": generation_kwargs,
                "request_kwargs": request_kwargs,
                "context_tail": request.context[-30:],
                "store": id(getattr(self, "context_cache", None)),
            }
        )
        return super().process_request(request, generation_kwargs, request_kwargs)


def make_recording_adapter(
    model_name: str,
    sparse_config: dict[str, Any] | None,
    *,
    model_kwargs: dict[str, Any] | None = None,
    device: str | None = None,
    safetensors_only: bool = False,
) -> RecordingAdapter:
    _record(
        {
            "event": "load",
            "model": model_name,
            "model_kwargs": model_kwargs,
            "device": device,
            "safetensors_only": safetensors_only,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "pid": os.getpid(),
        }
    )
    return RecordingAdapter(model_name, sparse_config)


def read_log(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]

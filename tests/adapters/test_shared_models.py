"""Adapters of one model share one loaded copy, released when the last one closes."""

from __future__ import annotations

import gc
import threading
import weakref
from pathlib import Path

import pytest

from sah_adapters import ModelAdapterHF
from sah_adapters.shared_models import SHARED_MODELS, SharedModels
from sah_protocol import Request


def test_store_counts_references_and_loads_once() -> None:
    store, loads = SharedModels(), []

    def load() -> tuple[object, object]:
        loads.append(1)
        return object(), object()

    barrier = threading.Barrier(4)
    results = []

    def take() -> None:
        barrier.wait()
        results.append(store.acquire("k", load))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and len({id(m) for m, _ in results}) == 1
    assert store.references("k") == 4
    assert [store.release("k") for _ in range(4)] == [False, False, False, True]
    assert store.references("k") == 0 and len(store) == 0 and not store.release("k")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from adapter_testkit import build_tokenizer, tiny_model

    folder = tmp_path_factory.mktemp("shared") / "tiny"
    tiny_model("llama").save_pretrained(folder)
    build_tokenizer(chat_template=False).save_pretrained(folder)
    return folder


def test_two_adapters_share_one_model_until_both_close(tiny_dir: Path) -> None:
    from sah_core import ResearchAttentionConfig
    from sah_core.maskers.local import LocalMaskerConfig

    sparse = ResearchAttentionConfig(masker_configs=[LocalMaskerConfig(window_size=4)])
    first = ModelAdapterHF(str(tiny_dir))
    second = ModelAdapterHF(str(tiny_dir), sparse)
    other_dtype = ModelAdapterHF(str(tiny_dir), dtype="bfloat16")
    assert second.model is first.model and second.tokenizer is first.tokenizer
    assert other_dtype.model is not first.model
    key = first._shared_key
    assert key is not None and SHARED_MODELS.references(key) == 2
    model_ref = weakref.ref(first.model)
    first.close()
    first.close()  # idempotent: releases once
    assert SHARED_MODELS.references(key) == 1
    request = Request(context="The magic number is 42.", questions=" What is it?")
    answer = second.process_request(request, {"max_new_tokens": 2})
    assert isinstance(answer.responses, str)
    second.close()
    other_dtype.close()
    assert SHARED_MODELS.references(key) == 0
    del first, second, other_dtype, answer
    gc.collect()
    assert model_ref() is None  # nothing kept the weights alive

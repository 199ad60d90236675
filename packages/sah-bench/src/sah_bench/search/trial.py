"""One search trial, without Ray: check the point, and only when it is valid run it.

:func:`evaluate_point` is what a Ray Tune trial calls. The model and the calibration
requests are loaded once per worker process and kept (:func:`worker_state`), so the trials a
worker runs one after another share one model load; each trial only wraps the loaded model in
a new sparse adapter (the default factory reuses loaded weights, see
:func:`sah_bench.executor.factory.build_hf_adapter`).

A point is materialised against the calibration set's real key length and the model's head
size; an invalid point returns at once with ``valid=False``, its reason and
:data:`~sah_bench.search.objective.INVALID_SCORE`: no adapter is built for it and nothing runs.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sah_bench.search.geometry import CallGeometry, PromptShape
from sah_bench.search.methods import build_method
from sah_bench.search.objective import INVALID_SCORE, Measurement, Objective, measure

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """The calibration set: benchmark, subsets (None: all), options and requests per subset."""

    benchmark: str = "synthetic"
    subsets: tuple[str, ...] | None = ("niah_multikey",)
    options: Mapping[str, Any] = field(default_factory=dict)
    max_requests: int = 2


@dataclass(frozen=True)
class TrialPayload:
    """Everything a trial needs besides its point (sent once to every worker)."""

    method: str
    target: float
    model: str
    adapter_factory: str
    calibration: Calibration
    objective: Objective = field(default_factory=Objective)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    spaces: Mapping[str, Any] = field(default_factory=dict)
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    device: str | None = None
    generation_kwargs: Mapping[str, Any] = field(default_factory=lambda: {"max_new_tokens": 4})
    request_kwargs: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0


@dataclass
class WorkerState:
    """What a worker loads once: the factory, the calibration requests, key length, head size."""

    factory: Any
    subsets: list[tuple[str, Any, list[Any]]]
    key_len: int
    head_dim: int | None
    #: per calibration question: (context tokens, question tokens, its max_new_tokens)
    prompts: list[tuple[int, int, int]] = field(default_factory=list)

    def geometry(self, payload: TrialPayload) -> CallGeometry | None:
        """The measured calls of a trial (its generation cap applied), None if unknown."""
        if not self.prompts:
            return None
        cap = payload.generation_kwargs.get("max_new_tokens")
        shapes = [
            PromptShape(c, q, n if cap is None else min(int(cap), n)) for c, q, n in self.prompts
        ]
        sparse_prefill = bool(payload.request_kwargs.get("sparse_prefill", False))
        return CallGeometry.of_prompts(shapes, sparse_prefill=sparse_prefill)


_STATES: dict[str, WorkerState] = {}


def _state_key(payload: TrialPayload) -> str:
    return json.dumps(
        [
            payload.adapter_factory,
            payload.model,
            payload.model_kwargs,
            payload.device,
            payload.calibration.benchmark,
            payload.calibration.subsets,
            payload.calibration.options,
            payload.calibration.max_requests,
            payload.request_kwargs,
        ],
        sort_keys=True,
        default=str,
    )


def _head_dim(adapter: Any) -> int | None:
    config = getattr(getattr(adapter, "model", None), "config", None)
    if config is None:
        return None
    config = getattr(config, "get_text_config", lambda: config)()
    head_dim = getattr(config, "head_dim", None)
    if isinstance(head_dim, int):
        return head_dim
    hidden, heads = getattr(config, "hidden_size", None), getattr(config, "num_attention_heads", 0)
    return hidden // heads if isinstance(hidden, int) and isinstance(heads, int) and heads else None


def _prompt_shapes(
    adapter: Any, groups: list[Any], request_kwargs: Mapping[str, Any]
) -> list[tuple[int, int, int]]:
    """(context tokens, question tokens, max_new_tokens) of every calibration question,
    tokenised as the adapter does (:func:`sah_adapters.prompt_builder.encode_prompt`)."""
    from sah_adapters.generation_settings import RequestSettings
    from sah_adapters.prompt_builder import encode_prompt

    tokenizer = getattr(adapter, "tokenizer", None)
    if tokenizer is None:
        return []
    options = RequestSettings.from_kwargs(dict(request_kwargs))
    shapes = []
    for g in groups:
        questions = [row["question"] for row in g.rows]
        context, question_ids = encode_prompt(
            tokenizer, g.context, questions, g.answer_prefix, options
        )
        for row, ids in zip(g.rows, question_ids, strict=True):
            shapes.append((len(context), len(ids), int(row["max_new_tokens"])))
    return shapes


def _key_len(prompts: list[tuple[int, int, int]], options: Mapping[str, Any]) -> int:
    if prompts:
        # The keys a question attends: its context, itself and the answer prefix.
        return max(1, round(statistics.fmean(c + q for c, q, _ in prompts)))
    tokens = options.get("target_tokens")
    if isinstance(tokens, int):
        return tokens
    raise ValueError(
        "the calibration key length is unknown: the adapter has no tokenizer and the "
        "calibration benchmark has no target_tokens option"
    )


def worker_state(payload: TrialPayload) -> WorkerState:
    """The model and calibration data of this process (loaded on the first call)."""
    key = _state_key(payload)
    state = _STATES.get(key)
    if state is not None:
        return state
    from sah_bench.executor.cell import CellSpec, load_groups
    from sah_bench.executor.factory import call_factory, resolve_factory
    from sah_bench.registry import get_benchmark

    _STATES.clear()  # one model per process
    factory = resolve_factory(payload.adapter_factory)
    dense = call_factory(
        factory,
        payload.model,
        None,
        model_kwargs=dict(payload.model_kwargs),
        device=payload.device,
    )
    try:
        cal = payload.calibration
        names = list(cal.subsets or get_benchmark(cal.benchmark, **dict(cal.options)).subsets)
        subsets = []
        for subset in names:
            spec = CellSpec(
                model=payload.model,
                config_name="calibration",
                sparse_config=None,
                benchmark=cal.benchmark,
                subset=subset,
                benchmark_options=dict(cal.options),
                max_requests=cal.max_requests,
            )
            bench, groups = load_groups(spec, dense)
            subsets.append((subset, bench, groups))
        all_groups = [g for _, _, groups in subsets for g in groups]
        prompts = _prompt_shapes(dense, all_groups, payload.request_kwargs)
        state = WorkerState(
            factory, subsets, _key_len(prompts, cal.options), _head_dim(dense), prompts
        )
    finally:
        dense.close()
    _STATES[key] = state
    return state


def _combine(parts: list[Measurement]) -> Measurement:
    def mean(name: str) -> float | None:
        pairs = [(getattr(p, name), p.n_questions) for p in parts if getattr(p, name) is not None]
        weight = sum(w for _, w in pairs)
        return sum(v * w for v, w in pairs) / weight if pairs and weight else None

    return Measurement(
        density=mean("density"),
        output_error=mean("output_error"),
        attention_mass_recall=mean("attention_mass_recall"),
        accuracy=mean("accuracy"),
        n_requests=sum(p.n_requests for p in parts),
        n_questions=sum(p.n_questions for p in parts),
        seconds=sum(p.seconds for p in parts),
    )


def evaluate_point(payload: TrialPayload, point: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's result row: validity, the sparse config and (when valid) what it measured
    and its score."""
    from sah_bench.executor.factory import call_factory

    state = worker_state(payload)
    method = build_method(payload.method, payload.fixed, payload.spaces)
    made = method.materialize(
        point, payload.target, state.key_len, state.head_dim, state.geometry(payload)
    )
    row: dict[str, Any] = {
        "method": payload.method,
        "target": payload.target,
        "valid": made.valid,
        "reason": made.reason,
        "key_len": state.key_len,
        "fixed_density": made.context.fixed_density,
        "key_scale": made.context.key_scale,
        "sparse_config": json.dumps(made.config, sort_keys=True) if made.config else None,
        "score": INVALID_SCORE,
        "density": None,
        "output_error": None,
        "attention_mass_recall": None,
        "accuracy": None,
        "n_questions": 0,
        "seconds": 0.0,
    }
    if made.config is None:
        logger.info("pruned %s point %s: %s", payload.method, dict(point), made.reason)
        return row
    adapter = call_factory(
        state.factory,
        payload.model,
        made.config,
        model_kwargs=dict(payload.model_kwargs),
        device=payload.device,
    )
    try:
        _seed(payload.seed)
        parts = [
            measure(
                adapter,
                bench,
                subset,
                groups,
                payload.objective.micro_metrics,
                generation_kwargs=payload.generation_kwargs,
                request_kwargs=payload.request_kwargs,
            )
            for subset, bench, groups in state.subsets
        ]
    finally:
        adapter.close()
    measured = _combine(parts)
    row.update(measured.to_dict())
    row["score"] = payload.objective.score(row, payload.target)
    return row


def _seed(seed: int) -> None:
    import sys

    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)

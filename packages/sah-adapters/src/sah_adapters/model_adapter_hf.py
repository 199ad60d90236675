"""ModelAdapterHF: answers requests with a HuggingFace decoder, sparse attention optional.

Data flow of one request (see DESIGN.md, "Data flow"): tokenize (chat template when the
tokenizer has one) → prefill the context once, densely (or take it from a shared
``ContextCacheStore``) → for each batch of questions: extend the context KV cache with the
question tokens and every generated token in sparse mode, then roll it back to the context
(``ContextCheckpoint``, no copy) → decode. Sparse mode switches the model's
``attn_implementation`` to a name this adapter registered in transformers'
``AttentionInterface`` (+ ``AttentionMaskInterface``), whose function
forwards to ``ResearchAttention.custom_attention``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch

from sah_adapters import dense_gqa
from sah_adapters.attention_registration import (
    NAME_PREFIX,
    register_attention,
    unique_attention_name,
    unregister_attention,
)
from sah_adapters.context_kv import ContextCacheStore, ContextCheckpoint
from sah_adapters.decoding import TokenDecoder, finish_text
from sah_adapters.evicted_cache import EvictionRun, kv_bytes
from sah_adapters.generation_settings import GenerationSettings, RequestSettings
from sah_adapters.model_loading import load_model, load_tokenizer
from sah_adapters.placement import Placement
from sah_adapters.prompt_builder import encode_prompt
from sah_adapters.reference_attention import reference_attention
from sah_adapters.request_stats import RequestStats
from sah_adapters.shared_models import SHARED_MODELS, load_key
from sah_adapters.transformers_compat import (
    attention_implementation,
    cache_argument_name,
    new_dynamic_cache,
)
from sah_protocol import (
    ModelAdapter,
    ModelHubAdapterInterface,
    Request,
    RequestResponse,
    SparseAttentionAdapterInterface,
)

logger = logging.getLogger(__name__)

# Layer types (``config.layer_types``) whose layers call the attention function.
_ATTENTION_LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")


def _make_attention_function(adapter_ref: weakref.ref[ModelAdapterHF]) -> Callable[..., Any]:
    """The function transformers calls in every attention layer while sparse mode is on.

    It holds the adapter weakly, so the global registry does not keep a forgotten adapter
    (and its model) alive; a finalizer then removes the registration.
    """

    def sah_research_attention(
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None = None,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        adapter = adapter_ref()
        if adapter is None:
            raise RuntimeError("the ModelAdapterHF that registered this attention was deleted")
        return adapter._attend(module, query, key, value, attention_mask, scaling, dropout, kwargs)

    return sah_research_attention


def _make_mask_function(adapter_ref: weakref.ref[ModelAdapterHF]) -> Callable[..., Any]:
    """transformers' eager mask, or None for a decode step whose mask would be all zeros.

    The adapter sets ``_mask_free_step`` only around a one-token step of an unpadded batch
    whose sliding windows (if any) still cover every key: then the eager mask allows every key
    and None says the same without building it, or ResearchAttention inspecting it per layer.
    ``_causal_prefill`` marks a dense context prefill routed here for an eviction: None lets
    the dense attention run causal without a ``[Q, K]`` mask.
    """
    from transformers.masking_utils import eager_mask

    def sah_research_mask(*args: Any, **kwargs: Any) -> Any:
        adapter = adapter_ref()
        if adapter is not None and (adapter._mask_free_step or adapter._causal_prefill):
            return None
        return eager_mask(*args, **kwargs)

    return sah_research_mask


class ModelAdapterHF(ModelAdapter, ModelHubAdapterInterface, SparseAttentionAdapterInterface):
    """Sparse attention inside any HF decoder whose attention goes through the registry.

    Args:
        model_name: a hub id, a local folder, or a built-in offline model
            (``sah_adapters.BUILTIN_MODELS``: ``"smollm2-135m"``, ``"gemma3-270m"``).
        sparse_attention_config: a ``sah_core.ResearchAttentionConfig``; ``None`` gives a
            dense-only adapter (every token runs the model's own attention).
        model_kwargs: passed to ``AutoModelForCausalLM.from_pretrained`` (default
            ``trust_remote_code=False``; ``True`` logs a warning naming the code it runs).
            May also carry ``device``, ``device_map``, ``dtype`` / ``torch_dtype``.
        tokenizer_kwargs: passed to ``AutoTokenizer.from_pretrained``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available); the
            weights are loaded straight onto it. A CUDA device without CUDA is a ValueError
            before anything loads. Default: the CPU.
        dtype: ``"bfloat16"``, ``"float16"``, ``"float32"`` (default), ``"auto"`` (the
            checkpoint's) or a torch dtype.
        safetensors_only: refuse pickle checkpoints (``UnsafeCheckpointError``); the
            benchmark CLI turns it on by default.
        context_cache: a :class:`ContextCacheStore` shared with other adapters of the same
            model, so each context is prefilled once across them.

    Use as a context manager, or call :meth:`close`, to remove the registration.
    ``last_request_stats`` holds the timings of the latest :meth:`process_request`.
    """

    model: Any
    tokenizer: Any
    sparse_attention_config: Any | None
    last_request_stats: RequestStats | None
    _research_attention: Any | None
    _eviction: Any | None
    _sparse_meta_data: dict[Any, Any]
    _shared_key: str | None = None  # set when the weights come from SHARED_MODELS

    def __init__(
        self,
        model_name: str,
        sparse_attention_config: Any | None = None,
        model_kwargs: dict[str, Any] | None = None,
        tokenizer_kwargs: dict[str, Any] | None = None,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        *,
        safetensors_only: bool = False,
        context_cache: ContextCacheStore | None = None,
    ) -> None:
        given = (("model_kwargs", model_kwargs), ("tokenizer_kwargs", tokenizer_kwargs))
        for field, value in given:
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{field} must be a dict or None, got {type(value).__name__}")
        if not isinstance(safetensors_only, bool):
            raise ValueError(f"safetensors_only={safetensors_only!r} must be a bool")
        self.model_name = model_name
        kwargs = dict(model_kwargs or {})
        # Resolved (and CUDA checked) before anything is read from disk.
        self.placement = Placement.resolve(device, dtype, kwargs)
        self.device = self.placement.device
        self.safetensors_only = safetensors_only
        tokenizer_kw = dict(tokenizer_kwargs or {})
        # adapters of the same load share one copy (reference-counted, released on close)
        self._shared_key = load_key(
            type(self).__qualname__, model_name, kwargs, tokenizer_kw, self.placement,
            safetensors_only,
        )  # fmt: skip
        model, tokenizer = SHARED_MODELS.acquire(
            self._shared_key,
            lambda: (
                self.create_model(model_name, kwargs),
                self.create_tokenizer(model_name, tokenizer_kw),
            ),
        )
        try:
            self._initialize(model, tokenizer, sparse_attention_config, context_cache)
        except BaseException:
            self._release_shared()
            raise

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        sparse_attention_config: Any | None = None,
        model_name: str | None = None,
        *,
        context_cache: ContextCacheStore | None = None,
    ) -> ModelAdapterHF:
        """Wrap an already loaded model and tokenizer (the model is switched to eval mode).

        Adapters over the same model may share one ``context_cache`` store, so a context
        prefilled by one is reused by the others (see :class:`ContextCacheStore`).
        """
        adapter = cls.__new__(cls)
        adapter.model_name = model_name or str(
            getattr(model.config, "_name_or_path", "") or type(model).__name__
        )
        adapter.placement = Placement()
        adapter.device = None
        adapter.safetensors_only = False
        model.eval()
        adapter._initialize(model, tokenizer, sparse_attention_config, context_cache)
        return adapter

    # ------------------------------------------------------------------ ModelHubAdapterInterface
    def create_model(self, model_name: str, model_kwargs: dict[str, Any]) -> Any:
        return load_model(
            model_name,
            model_kwargs,
            getattr(self, "placement", None),
            safetensors_only=getattr(self, "safetensors_only", False),
        )

    def create_tokenizer(self, model_name: str, tokenizer_kwargs: dict[str, Any]) -> Any:
        return load_tokenizer(model_name, tokenizer_kwargs)

    # ------------------------------------------------------------------ context sharing
    @property
    def context_cache(self) -> ContextCacheStore | None:
        """The store that shares context prefills with other adapters (None = not shared)."""
        return self._context_cache

    @context_cache.setter
    def context_cache(self, store: ContextCacheStore | None) -> None:
        if store is not None and not isinstance(store, ContextCacheStore):
            raise ValueError(
                f"context_cache must be a ContextCacheStore or None, got {type(store).__name__}"
            )
        self._context_cache = store

    def set_sparse_attention_config(self, sparse_attention_config: Any | None) -> None:
        """Swap the masker stack (None = dense); the model and any shared context stay."""
        self._require_open()
        previous = (self.sparse_attention_config, self._research_attention, self._eviction)
        self.sparse_attention_config = sparse_attention_config
        self._research_attention = self._build_research_attention(sparse_attention_config)
        self._eviction = self._build_eviction(sparse_attention_config)
        self._sparse_meta_data = {}
        try:
            self._check_attention_dispatch()  # e.g. soft-capping is refused only when sparse
        except BaseException:
            self.sparse_attention_config, self._research_attention, self._eviction = previous
            raise

    # ------------------------------------------------------------------ set-up and tear-down
    def _initialize(
        self,
        model: Any,
        tokenizer: Any,
        sparse_attention_config: Any | None,
        context_cache: ContextCacheStore | None,
    ) -> None:
        self._closed = True  # until registration succeeds, close() has nothing to undo
        self.context_cache = context_cache
        self.model = model
        self.tokenizer = tokenizer
        self.sparse_attention_config = sparse_attention_config
        self.last_request_stats = None
        self._research_attention = self._build_research_attention(sparse_attention_config)
        self._eviction = self._build_eviction(sparse_attention_config)
        self._eviction_run: EvictionRun | None = None
        self._phase: str | None = None  # "prefill" | "question" | "decode" inside a request
        self._request_phases: tuple[str, ...] = ()
        self._causal_prefill = False
        self._dense_implementation = attention_implementation(model)
        if self._dense_implementation.startswith(NAME_PREFIX):
            raise ValueError(
                f"the model's attn_implementation is {self._dense_implementation!r}, another "
                "adapter's sparse mode; close that adapter (or leave its sparse mode) first"
            )
        self._cache_argument = cache_argument_name(model)
        self._accepts_logits_to_keep = "logits_to_keep" in _forward_parameters(model)
        self._sparse_meta_data = {}
        self._probe_layers: list[int | None] | None = None
        self._attention_name = unique_attention_name()
        self._attention_function = _make_attention_function(weakref.ref(self))
        self._mask_free_step = False
        self._shortest_window = _shortest_sliding_window(model)
        register_attention(
            self._attention_name,
            self._attention_function,
            _make_mask_function(weakref.ref(self)),
        )
        self._unregister = weakref.finalize(self, unregister_attention, self._attention_name)
        self._closed = False
        try:
            self._check_attention_dispatch()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _build_research_attention(config: Any | None) -> Any | None:
        if config is None:
            return None
        from sah_core import ResearchAttention, ResearchAttentionConfig

        if not isinstance(config, ResearchAttentionConfig):
            raise ValueError(
                "sparse_attention_config must be a sah_core.ResearchAttentionConfig or None, "
                f"got {type(config).__name__}: {config!r:.100}"
            )
        from sah_core.eviction import eviction_configs

        evictions, selection = eviction_configs(list(config.masker_configs))
        if evictions and not selection:
            return None  # eviction only: attention over the survivors is dense
        if evictions:
            config = ResearchAttentionConfig(masker_configs=selection, phases=config.phases)
        return ResearchAttention.create_from_config(config)

    @staticmethod
    def _build_eviction(config: Any | None) -> Any | None:
        """The stack's eviction masker (``sah_core.eviction``), or None; at most one."""
        if config is None:
            return None
        from sah_core.eviction import eviction_configs
        from sah_core.maskers import ResearchMasker

        evictions, _ = eviction_configs(config.masker_configs)
        if len(evictions) > 1:
            names = [type(c).__name__ for c in evictions]
            raise ValueError(
                f"ResearchAttentionConfig.masker_configs holds {len(evictions)} evictions "
                f"({', '.join(names)}), which is not allowed: at most one eviction per stack"
            )
        return ResearchMasker.create_from_config(evictions[0]) if evictions else None

    def _expected_attention_layers(self) -> set[int]:
        text_config = self.model.config.get_text_config(decoder=True)
        layer_types = getattr(text_config, "layer_types", None)
        if layer_types:
            return {i for i, t in enumerate(layer_types) if t in _ATTENTION_LAYER_TYPES}
        return set(range(int(text_config.num_hidden_layers)))

    def _check_attention_dispatch(self) -> None:
        """Run two tokens in sparse mode and check every attention layer called our function.

        Models whose attention does not dispatch through ``AttentionInterface`` (remote code,
        older architectures) would otherwise run dense silently while being reported sparse.
        """
        expected = self._expected_attention_layers()
        token = self._pad_token_id()
        ids = torch.tensor([[token, token]], device=self._model_device())
        self._probe_layers = []
        try:
            with torch.no_grad(), self.enable_sparse_mode():
                self.model(input_ids=ids, use_cache=False)
            seen = list(self._probe_layers)
        except Exception as error:
            raise ValueError(
                f"{type(self.model).__name__} could not run with the registered attention "
                f"{self._attention_name!r}: {error}"
            ) from error
        finally:
            self._probe_layers = None
        if None in seen:
            raise ValueError(
                f"{type(self.model).__name__}: an attention module has no `layer_idx`, so "
                "per-layer sparse state cannot be kept; this model is not supported"
            )
        called = {layer for layer in seen if layer is not None}
        missing = sorted(expected - called)
        if missing:
            raise ValueError(
                f"{type(self.model).__name__} does not route attention through transformers' "
                f"AttentionInterface: layers {missing} never called the registered function "
                f"(called: {sorted(called)}). Sparse attention cannot be applied to it; "
                "use a model class whose attention uses ALL_ATTENTION_FUNCTIONS (no remote code)."
            )

    def close(self) -> None:
        """Leave sparse mode if on and remove the registration (idempotent)."""
        if getattr(self, "_closed", True):
            return
        if attention_implementation(self.model) == self._attention_name:
            self.model.set_attn_implementation(self._dense_implementation)
        self._unregister()
        self._closed = True
        self._release_shared()

    def _release_shared(self) -> None:
        key, self._shared_key = self._shared_key, None
        if key is not None:
            SHARED_MODELS.release(key)

    def __enter__(self) -> ModelAdapterHF:
        return self

    @property
    def attention_name(self) -> str:
        """The name registered in transformers' attention registries."""
        return self._attention_name

    @property
    def is_closed(self) -> bool:
        return self._closed

    def _require_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"ModelAdapterHF({self.model_name!r}) is closed")

    # ------------------------------------------------------------------ attention switching
    def get_custom_attention_function(self) -> Callable[..., Any]:
        return self._attention_function

    def _switch_to(self, implementation: str) -> None:
        if attention_implementation(self.model) == implementation:
            return
        self.model.set_attn_implementation(implementation)
        if attention_implementation(self.model) != implementation:
            # transformers only logs a warning when a model cannot switch dynamically.
            raise ValueError(
                f"{type(self.model).__name__} refused attn_implementation={implementation!r}; "
                "its attention does not go through transformers' AttentionInterface"
            )

    @contextlib.contextmanager
    def _use_implementation(self, implementation: str) -> Iterator[None]:
        self._require_open()
        previous = attention_implementation(self.model)
        self._switch_to(implementation)
        try:
            yield
        finally:
            self._switch_to(previous)

    def enable_sparse_mode(self) -> contextlib.AbstractContextManager[None]:
        """Run the model through the registered sparse attention; restores on exit."""
        return self._use_implementation(self._attention_name)

    def enable_dense_mode(self) -> contextlib.AbstractContextManager[None]:
        """Run the model with the attention it was loaded with; restores on exit."""
        return self._use_implementation(self._dense_implementation)

    def _attend(
        self,
        module: torch.nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        scaling: float | None,
        dropout: float,
        kwargs: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        layer_idx = getattr(module, "layer_idx", None)
        if self._probe_layers is not None:
            self._probe_layers.append(layer_idx)
            if self._research_attention is not None and kwargs.get("softcap") is not None:
                # ResearchAttention computes plain softmax attention; silently dropping the
                # logit soft-capping (Gemma 2) would change the model.
                raise ValueError(
                    f"layer {layer_idx} uses attention logit soft-capping "
                    f"(softcap={kwargs['softcap']}), which sparse attention does not support"
                )
        if self._probe_layers is not None:
            return reference_attention(
                module, query, key, value, attention_mask, scaling, dropout, **kwargs
            )
        run, phase = self._eviction_run, self._phase
        if run is not None and phase != "prefill" and layer_idx is not None:
            attention_mask = run.layer_mask(layer_idx, query, key, attention_mask)
        research = self._research_attention
        if research is not None and (phase is None or phase in self._request_phases):
            # ResearchAttention reads the layer from ``module.layer_idx`` itself.
            out = research.custom_attention(
                module,
                query,
                key,
                value,
                attention_mask,
                scaling,
                dropout,
                self._sparse_meta_data,
                **kwargs,
            )
        elif phase is None:
            out = reference_attention(
                module, query, key, value, attention_mask, scaling, dropout, **kwargs
            )
        else:  # a phase the stack leaves dense, routed here for the eviction
            out = self._dense_attention(
                module,
                query,
                key,
                value,
                attention_mask,
                scaling=scaling,
                dropout=dropout,
                **kwargs,
            )
        if run is not None and layer_idx is not None:
            step_scaling = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
            if phase == "prefill":
                run.after_prefill_attention(layer_idx, query, key, value, step_scaling)
            else:
                run.after_step_attention(
                    layer_idx, query, key, value, step_scaling, decoding=phase == "decode"
                )
        return out  # type: ignore[no-any-return]

    def _dense_attention(self, *args: Any, **kwargs: Any) -> Any:
        """The model's own attention function (same numerics as dense mode)."""
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        function = ALL_ATTENTION_FUNCTIONS.get(self._dense_implementation)
        if function is None:  # "eager": not in the registry
            return reference_attention(*args, **kwargs)
        return function(*args, **kwargs)

    # ------------------------------------------------------------------ requests
    def process_request(
        self,
        request: Request,
        generation_kwargs: dict[str, Any] | None = None,
        request_kwargs: dict[str, Any] | None = None,
    ) -> RequestResponse:
        """Answer every question of ``request``; see the module docstring for the flow.

        generation_kwargs: ``max_new_tokens`` (32), ``do_sample``, ``temperature``, ``top_p``,
        ``top_k``, ``seed``, ``stop`` (str or list; the answer ends before it),
        ``eos_token_id`` (default: the model's). Greedy unless sampling is asked for.
        request_kwargs: ``batch_size`` (questions decoded together, default 1),
        ``max_context_length`` (tokens), ``truncation`` ("middle" | "left" | "right"),
        ``use_chat_template`` (default: when the tokenizer has one), ``sparse_prefill``
        (True: the stack also acts in the context prefill, as if ``"prefill"`` were in its
        ``phases``), ``question_feed``
        ("block": the question tokens in one forward, default; "token": one token per forward,
        for hybrid attention / state-space layers that cannot take a multi-token sparse step).
        The context and question strings are concatenated as given (include separators).
        """
        self._require_open()
        if not isinstance(request, Request):
            raise ValueError(
                f"request must be a sah_protocol.Request, got {type(request).__name__}"
            )
        settings = GenerationSettings.from_kwargs(generation_kwargs)
        options = RequestSettings.from_kwargs(request_kwargs)
        started = time.perf_counter()
        stats = RequestStats()

        context_ids, question_ids = encode_prompt(
            self.tokenizer, request.context, request.question_list, request.answer_prefix, options
        )
        if not context_ids and not all(question_ids):
            raise ValueError(
                "request tokenizes to no tokens at all (empty context and question, no template)"
            )
        stats.context_tokens = len(context_ids)
        stats.question_tokens = [len(q) for q in question_ids]

        generator = None
        if settings.seed is not None:
            generator = torch.Generator(device=self._model_device()).manual_seed(settings.seed)
        decoder = TokenDecoder(
            settings, self.tokenizer, self._eos_ids(settings), self._pad_token_id()
        )
        # Left padding inside a batch needs context keys for the pad rows to attend to.
        batch_size = options.batch_size if context_ids else 1
        batches = [
            question_ids[start : start + batch_size]
            for start in range(0, len(question_ids), batch_size)
        ]
        answers: list[str] = []
        self._request_phases = self._phases_for(options)
        if self._eviction is not None and self._eviction.decode_every > 0 and batch_size > 1:
            raise ValueError(
                f"request_kwargs['batch_size']={batch_size} is not allowed with "
                f"{type(self._eviction.config).__name__}(decode_every="
                f"{self._eviction.decode_every}): decode-time eviction runs one question at a "
                "time (batch_size=1), or set decode_every=0"
            )
        try:
            with torch.no_grad():
                self._answer_all(context_ids, batches, decoder, generator, stats, options, answers)
        finally:
            self._eviction_run = None
            self._phase = None
            self._request_phases = ()
        stats.total_seconds = time.perf_counter() - started
        self.last_request_stats = stats
        return RequestResponse.for_request(request, answers)

    def _phases_for(self, options: RequestSettings) -> tuple[str, ...]:
        """The phases the stack acts in for this request (config + ``sparse_prefill``)."""
        phases = tuple(getattr(self.sparse_attention_config, "phases", ()) or ())
        if options.sparse_prefill:
            if self._research_attention is None:
                raise ValueError(
                    "request_kwargs['sparse_prefill']=True is not allowed without selection "
                    "maskers: give the adapter a sparse_attention_config whose masker_configs "
                    "hold at least one (non-eviction) masker"
                )
            phases = ("prefill", *phases) if "prefill" not in phases else phases
        return phases

    def _mode_for(self, phase: str) -> contextlib.AbstractContextManager[None]:
        """Sparse mode when the stack acts in ``phase`` or an eviction needs the routing."""
        research = self._research_attention is not None and phase in self._request_phases
        run = self._eviction_run
        routed = run is not None and (phase == "prefill" or run.needs_routing)
        if research or routed:
            return self.enable_sparse_mode()
        if phase in ("question", "decode") and self._dense_implementation == "sdpa":
            # the same SDPA, with GQA inside it also under a padding mask (sah_adapters.dense_gqa)
            return self._use_implementation(dense_gqa.ensure_registered())
        return self.enable_dense_mode()

    def _answer_all(
        self,
        context_ids: list[int],
        batches: list[list[list[int]]],
        decoder: TokenDecoder,
        generator: torch.Generator | None,
        stats: RequestStats,
        options: RequestSettings,
        answers: list[str],
    ) -> None:
        context_state = self._context_state(context_ids, stats)
        for index, batch in enumerate(batches):
            more_follow = index + 1 < len(batches)
            cache = context_state.cache_for_batch(more_follow)
            try:
                answers.extend(
                    self._answer_batch(
                        cache,
                        context_state,
                        batch,
                        decoder,
                        generator,
                        stats,
                        question_feed=options.question_feed,
                    )
                )
            finally:
                context_state.after_batch(cache, more_follow)

    def _model_device(self) -> torch.device:
        device: torch.device = next(self.model.parameters()).device
        return device

    def _forward(self, **inputs: Any) -> Any:
        cache = inputs.pop("cache")
        inputs[self._cache_argument] = cache
        if self._accepts_logits_to_keep:
            inputs["logits_to_keep"] = 1  # only the last position's logits are ever needed
        return self.model(use_cache=True, **inputs)

    def _prefill_is_dense(self, phases: tuple[str, ...] | None = None) -> bool:
        """Whether the context prefill ignores the sparse config (so it can be shared).

        A stack that acts in the prefill phase (``"prefill" in config.phases``, or the
        request's ``sparse_prefill``) or holds an eviction makes the context KV depend on the
        config: it is then never taken from or put in a store.
        """
        if phases is None:
            phases = tuple(getattr(self.sparse_attention_config, "phases", ()) or ())
        if self._eviction is not None:
            return False
        return self._research_attention is None or "prefill" not in phases

    def _context_state(self, context_ids: list[int], stats: RequestStats) -> _ContextState:
        """The context's KV cache and last logits: from the store, or a fresh dense prefill."""
        store = (
            self._context_cache if self._prefill_is_dense(self._request_phases or None) else None
        )
        key = tuple(context_ids)
        if store is not None and context_ids:
            entry = store.lookup(self.model, key)
            if entry is not None:
                stats.context_cache_hit = True
                stats.context_kv_bytes = kv_bytes(entry.cache)
                stats.context_kv_bytes_before_eviction = stats.context_kv_bytes
                return _ContextState(
                    self, len(context_ids), entry.cache, entry.logits, entry.checkpoint, store
                )
            store.clear()  # free the previous context before this prefill allocates
        t0 = time.perf_counter()
        run = None
        if self._eviction is not None and context_ids:
            run = EvictionRun(self._eviction, self._num_layers(), len(context_ids))
            self._eviction_run = run
        sparse_prefill = self._research_attention is not None and (
            "prefill" in self._request_phases
        )
        self._phase = "prefill"
        self._causal_prefill = run is not None and not sparse_prefill
        try:
            with self._mode_for("prefill"):
                cache, logits = self._prefill_context(context_ids, run)
        finally:
            self._causal_prefill = False
            self._phase = None
        stats.context_prefill_seconds = time.perf_counter() - t0
        checkpoint = None
        if run is not None:
            run.finish_prefill()
            stats.context_kv_bytes_before_eviction = run.bytes_before
            stats.context_kv_bytes = kv_bytes(cache)
        elif context_ids:
            stats.context_kv_bytes = kv_bytes(cache)
            stats.context_kv_bytes_before_eviction = stats.context_kv_bytes
        if context_ids and ContextCheckpoint.supports(cache):
            hold = run is not None and run.decode_every > 0
            checkpoint = ContextCheckpoint.mark(
                cache, len(context_ids), evicted=run is not None, hold=hold
            )
        else:
            store = None
        if store is not None and checkpoint is not None:
            store.put(self.model, key, cache, logits, checkpoint)
        return _ContextState(self, len(context_ids), cache, logits, checkpoint, store)

    def _num_layers(self) -> int:
        return int(self.model.config.get_text_config(decoder=True).num_hidden_layers)

    def _prefill_context(
        self, context_ids: list[int], run: EvictionRun | None = None
    ) -> tuple[Any, torch.Tensor | None]:
        cache = new_dynamic_cache(self.model.config)
        if not context_ids:
            return cache, None
        if run is not None:
            sliding = [
                i for i, layer in enumerate(cache.layers) if getattr(layer, "is_sliding", False)
            ]
            if sliding:
                raise ValueError(
                    f"{type(run.masker.config).__name__} is not allowed on "
                    f"{type(self.model).__name__}: layers {sliding} use a sliding window, and "
                    "evictions support full-attention layers only"
                )
            run.cache = cache
        device = self._model_device()
        ids = torch.tensor([context_ids], device=device)
        out = self._forward(
            input_ids=ids,
            attention_mask=None,  # one unpadded row: None is all-ones without the check
            position_ids=torch.arange(len(context_ids), device=device)[None],
            cache=cache,
        )
        return cache, out.logits[:, -1, :]

    def _eos_ids(self, settings: GenerationSettings) -> tuple[int, ...]:
        if settings.eos_token_ids is not None:
            return settings.eos_token_ids
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if configured is None:
            configured = self.tokenizer.eos_token_id
        if configured is None:
            return ()
        if isinstance(configured, int):
            return (int(configured),)
        return tuple(dict.fromkeys(int(e) for e in configured))

    def _pad_token_id(self) -> int:
        for candidate in (
            self.tokenizer.pad_token_id,
            getattr(getattr(self.model, "generation_config", None), "pad_token_id", None),
            self.tokenizer.eos_token_id,
        ):
            if isinstance(candidate, int):
                return candidate
        return 0

    def _answer_batch(
        self,
        cache: Any,
        context: _ContextState,
        questions: list[list[int]],
        decoder: TokenDecoder,
        generator: torch.Generator | None,
        stats: RequestStats,
        question_feed: str = "block",
    ) -> list[str]:
        """Decode a batch of questions; ``cache`` (the context's KV) is this batch's to extend.

        Questions are left-padded within their own segment: [context | pads | question | new
        tokens]. Pads are masked out as keys and get no position, so every row computes what it
        would alone (for sliding-window layers the pads still occupy cache slots of the window).
        """
        device = self._model_device()
        context_length = context.length
        batch, lengths = len(questions), [len(q) for q in questions]
        longest = max(lengths)
        padded = len(set(lengths)) > 1
        pad = self._pad_token_id()
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        self._sparse_meta_data = {}  # per-question sparse state: nothing leaks across batches
        run = self._eviction_run
        # An eviction left layer 0 fewer context slots: the 2-D mask starts at its survivors.
        dropped = 0
        if run is not None:
            run.start_batch(cache)
            dropped = context_length - run.held.get(0, context_length)

        input_ids = torch.full((batch, longest), pad, dtype=torch.long)
        # The mask of the whole batch, allocated once; step t uses a prefix view of it.
        total = context_length + longest + decoder.settings.max_new_tokens
        full_mask = torch.ones((batch, total), dtype=torch.long)
        positions = torch.full((batch, longest), context_length, dtype=torch.long)
        for row, ids in enumerate(questions):
            full_mask[row, context_length : context_length + longest - len(ids)] = 0
            if ids:
                input_ids[row, longest - len(ids) :] = torch.tensor(ids)
                positions[row, longest - len(ids) :] = context_length + torch.arange(len(ids))
        input_ids, positions = input_ids.to(device), positions.to(device)
        full_mask = full_mask.to(device)
        seen = context_length + longest

        def mask_upto(length: int) -> torch.Tensor | None:
            return full_mask[:, dropped:length] if padded else None

        self._phase = "question"
        with self._mode_for("question"):
            t0 = time.perf_counter()
            if longest > 0 and question_feed == "token":
                for column in range(longest):  # one question token per forward
                    out = self._forward(
                        input_ids=input_ids[:, column : column + 1],
                        attention_mask=mask_upto(context_length + column + 1),
                        position_ids=positions[:, column : column + 1],
                        cache=cache,
                    )
            elif longest > 0:
                out = self._forward(
                    input_ids=input_ids,
                    attention_mask=mask_upto(seen),
                    position_ids=positions,
                    cache=cache,
                )
            if longest > 0:
                logits = out.logits[:, -1, :]
                for row, n in enumerate(lengths):
                    if n == 0 and context.logits is not None:  # the answer starts right away
                        logits[row] = context.logits[0]
            else:
                assert context.logits is not None  # checked in process_request
                logits = context.logits.expand(batch, -1)
            t1 = time.perf_counter()
            stats.question_prefill_seconds += t1 - t0
            step_positions = (context_length + torch.tensor(lengths, device=device))[:, None]

            def step(tokens: torch.Tensor) -> torch.Tensor:
                nonlocal seen, step_positions
                seen += 1
                if run is not None:
                    run.decode_step += 1
                # Every key visible (no pads, windows not yet full): the mask says nothing.
                self._mask_free_step = not padded and seen <= self._shortest_window
                try:
                    out = self._forward(
                        input_ids=tokens[:, None],
                        attention_mask=mask_upto(seen),
                        position_ids=step_positions,
                        cache=cache,
                    )
                finally:
                    self._mask_free_step = False
                step_positions = step_positions + 1
                return out.logits[:, -1, :]  # type: ignore[no-any-return]

            self._phase = "decode"
            with self._mode_for("decode"):
                generated = decoder.run(logits, step, generator)
            stats.decode_seconds += time.perf_counter() - t1
        stats.generated_tokens.extend(len(g) for g in generated)
        stats.answer_token_ids.extend(list(g) for g in generated)
        return [finish_text(self.tokenizer, g, decoder.settings.stop) for g in generated]


class _ContextState:
    """The context of one request: its KV cache, last logits, and how to reuse the cache.

    With a checkpoint every batch extends the one cache and it is rolled back afterwards (no
    copy); a cache the checkpoint cannot handle is deep-copied for every batch but the last.
    An empty context gets a fresh cache per batch.
    """

    def __init__(
        self,
        adapter: ModelAdapterHF,
        length: int,
        cache: Any,
        logits: torch.Tensor | None,
        checkpoint: ContextCheckpoint | None,
        store: ContextCacheStore | None,
    ) -> None:
        self._adapter = adapter
        self.length = length
        self.cache = cache
        self.logits = logits
        self.checkpoint = checkpoint
        self.store = store

    def cache_for_batch(self, more_follow: bool) -> Any:
        if self.length == 0:
            return new_dynamic_cache(self._adapter.model.config)
        if self.checkpoint is None and more_follow:
            return copy.deepcopy(self.cache)
        return self.cache

    def after_batch(self, cache: Any, more_follow: bool) -> None:
        if self.checkpoint is None or cache is not self.cache:
            return
        if not (more_follow or self.store is not None):
            return  # the last user of this cache: nothing to roll back for
        try:
            self.checkpoint.restore(cache)
        except Exception:
            if self.store is not None:
                self.store.clear()  # never hand a half-restored cache to another adapter
            raise


def _shortest_sliding_window(model: Any) -> float:
    """The smallest sliding window of any attention layer (inf when none slides)."""
    text_config = model.config.get_text_config(decoder=True)
    window = getattr(text_config, "sliding_window", None)
    layer_types = getattr(text_config, "layer_types", None)
    chunk = getattr(text_config, "attention_chunk_size", None)
    sizes = []
    if window and (not layer_types or "sliding_attention" in layer_types):
        sizes.append(int(window))
    if chunk and layer_types and "chunked_attention" in layer_types:
        sizes.append(int(chunk))
    return float(min(sizes)) if sizes else float("inf")


def _forward_parameters(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)

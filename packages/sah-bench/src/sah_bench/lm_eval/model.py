"""``SahLM``: lm-evaluation-harness's model interface over a ``ModelAdapterHF``.

Registered in lm-eval's model registry as ``sah`` when this module is imported, so
``lm_eval.simple_evaluate(model="sah", model_args="model=smollm2-135m,sparse_config=cfg.json")``
runs any lm-eval task with a sparse config. The three request types map onto the adapter's
data flow (see :mod:`sah_adapters.scoring` for the phases):

- ``loglikelihood``: requests are grouped by their context tokens; each context is prefilled
  once and its continuations are scored in batches of ``batch_size`` over the reused KV cache;
- ``loglikelihood_rolling``: lm-eval's disjoint rolling windows, each scored like a
  ``loglikelihood`` request (``max_length`` tokens at most);
- ``generate_until``: requests with the same context and generation kwargs become one
  ``Request`` whose questions share the context prefill; ``until`` strings stop the answer.

Tokenization follows lm-eval's ``TemplateLM`` (the whole ``context + continuation`` is encoded
and split at the context's length; an empty context is replaced by ``prefix_token_id``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

logger = logging.getLogger(__name__)

#: Generation kwargs of lm-eval tasks this backend understands (after lm-eval's normalisation).
_GEN_KEYS = ("until", "max_gen_toks", "do_sample", "temperature", "top_p", "top_k", "seed")


def _int_arg(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"sah model argument {name}={value!r} must be an int >= {minimum}")
    return value


def _bool_arg(name: str, value: Any) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ValueError(f"sah model argument {name}={value!r} must be true or false")
    return value


def load_sparse_config(spec: Any) -> Any:
    """``None`` / ``"dense"`` -> None; a dict, a JSON file path, or a ``ResearchAttentionConfig``
    -> a ``ResearchAttentionConfig``."""
    from sah_core import ResearchAttentionConfig

    if spec is None or spec == "dense":
        return None
    if isinstance(spec, ResearchAttentionConfig):
        return spec
    if isinstance(spec, str):
        path = Path(spec)
        if not path.is_file():
            raise ValueError(f"sparse_config={spec!r}: no such file (use a JSON file or 'dense')")
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"sparse_config={str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"sparse_config={spec!r:.80} must be a JSON file, a dict or 'dense'")
    return ResearchAttentionConfig.from_dict(spec)


@register_model("sah")
class SahLM(TemplateLM):  # type: ignore[misc]
    """lm-eval's ``LM`` over a :class:`sah_adapters.ModelAdapterHF`.

    Args (all accepted as ``model_args`` strings too):
        model: a hub id, local folder or built-in model (``pretrained`` is an alias); ignored
            when ``adapter`` is given.
        sparse_config: JSON file, dict, ``ResearchAttentionConfig`` or ``"dense"`` (default).
        adapter: an open ``ModelAdapterHF`` to use as is (its own sparse config applies unless
            ``sparse_config`` is given).
        batch_size: continuations (or questions) of one context run together (default 1).
        device, dtype: where and how the model is loaded (see ``ModelAdapterHF``).
        max_length: longest token sequence fed to the model (default: the model config's).
        max_gen_toks: default cap on generated tokens when a task sets none (256, as lm-eval).
        question_tokens: the last N context tokens run in the ``question`` phase (default 0:
            the whole context is the ``prefill`` phase and the answer the ``decode`` phase).
        question_feed: ``block`` (default) or ``token`` (one question/continuation token per
            forward, for layers that cannot take a multi-token sparse step).
        sparse_prefill: also run the stack in the context prefill (``phases`` + ``prefill``).
        add_bos_token: force (true) or drop (false) the tokenizer's special tokens.
        allow_pickle: load pickle checkpoints too (default: safetensors only).
    """

    def __init__(
        self,
        model: str | None = None,
        sparse_config: Any = None,
        *,
        pretrained: str | None = None,
        adapter: Any = None,
        batch_size: int | str = 1,
        max_batch_size: int | str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_length: int | str | None = None,
        max_gen_toks: int | str = 256,
        question_tokens: int | str = 0,
        question_feed: str = "block",
        sparse_prefill: bool | str = False,
        add_bos_token: bool | str | None = None,
        allow_pickle: bool | str = False,
    ) -> None:
        super().__init__()
        from sah_adapters import ModelAdapterHF
        from sah_adapters.generation_settings import QUESTION_FEEDS

        del max_batch_size  # lm-eval passes it to every model; batches here are fixed-size
        if batch_size == "auto" or (isinstance(batch_size, str) and batch_size.startswith("auto")):
            raise ValueError("sah model argument batch_size='auto' is not supported: give an int")
        self.batch_size = _int_arg("batch_size", batch_size, 1)
        self.question_tokens = _int_arg("question_tokens", question_tokens, 0)
        self._max_gen_toks = _int_arg("max_gen_toks", max_gen_toks, 1)
        if question_feed not in QUESTION_FEEDS:
            raise ValueError(
                f"sah model argument question_feed={question_feed!r} is not allowed; use one of "
                f"{QUESTION_FEEDS}"
            )
        self.question_feed = question_feed
        self.sparse_prefill = _bool_arg("sparse_prefill", sparse_prefill)
        self.add_bos_token = (
            None if add_bos_token is None else _bool_arg("add_bos_token", add_bos_token)
        )
        config = load_sparse_config(sparse_config)
        if adapter is not None:
            if not isinstance(adapter, ModelAdapterHF):
                raise ValueError(
                    f"sah model argument adapter must be a ModelAdapterHF, got "
                    f"{type(adapter).__name__}"
                )
            if sparse_config is not None:
                adapter.set_sparse_attention_config(config)
            self.adapter = adapter
            self._owns_adapter = False
        else:
            name = model or pretrained
            if not name:
                raise ValueError("sah model argument model=... is required (or pass adapter=)")
            self.adapter = ModelAdapterHF(
                name,
                sparse_attention_config=config,
                device=device,
                dtype=dtype,
                safetensors_only=not _bool_arg("allow_pickle", allow_pickle),
            )
            self._owns_adapter = True
        self.tokenizer = self.adapter.tokenizer
        if max_length is None:
            from lm_eval.models.utils import resolve_max_length

            self._max_length = int(resolve_max_length(self.adapter.model.config, self.tokenizer))
        else:
            self._max_length = _int_arg("max_length", max_length, 2)
        self._device = self.adapter._model_device()
        self._metric_logger: Any = None

    # ------------------------------------------------------------------ lm-eval properties
    @property
    def eot_token_id(self) -> int:
        eos = self.tokenizer.eos_token_id
        return int(eos if eos is not None else self.adapter._pad_token_id())

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return int(bos) if bos is not None else self.eot_token_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "") or "sah").replace("/", "__")

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        rendered = self.tokenizer.apply_chat_template(
            chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        return str(rendered)

    def get_model_info(self) -> dict[str, Any]:
        config = self.adapter.sparse_attention_config
        return {
            "model_name": self.adapter.model_name,
            "sparse_config": None if config is None else config.to_dict(),
            "question_tokens": self.question_tokens,
            "question_feed": self.question_feed,
        }

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, **kwargs: Any
    ) -> list[int]:
        if add_special_tokens is None:
            add_special_tokens = True if self.add_bos_token is None else self.add_bos_token
            bos = self.tokenizer.bos_token
            if bos and string.startswith(bos):
                add_special_tokens = False  # the string spells its own BOS
        return list(self.tokenizer.encode(string, add_special_tokens=add_special_tokens))

    def tok_decode(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens))

    def close(self) -> None:
        if self._owns_adapter:
            self.adapter.close()

    # ------------------------------------------------------------------ micro metrics
    @contextmanager
    def recording(self, path_dir: str | Path) -> Iterator[Any]:
        """Record per-layer density of every sparse attention call (``micro_metrics.jsonl``
        under ``path_dir``, each line tagged with its lm-eval ``task`` and ``request_type``)."""
        from sah_core.metrics import MicroMetricLogger

        with MicroMetricLogger(path_dir, metrics=("density",)) as active:
            self._metric_logger = active
            try:
                yield active
            finally:
                self._metric_logger = None

    def _tag(self, task: str | None, request_type: str) -> None:
        if self._metric_logger is not None:
            self._metric_logger.extra = {"task": task, "request_type": request_type}

    def _request_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"question_feed": self.question_feed}
        if self.sparse_prefill:
            kwargs["sparse_prefill"] = True
        return kwargs

    # ------------------------------------------------------------------ log-likelihoods
    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        self._tasks = [getattr(r, "task_name", None) for r in requests]
        try:
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm)  # type: ignore[no-any-return]
        finally:
            self._tasks = []

    def _loglikelihood_tokens(
        self, requests: list[Any], disable_tqdm: bool = False, **kwargs: Any
    ) -> list[tuple[float, bool]]:
        tasks = getattr(self, "_tasks", None) or [None] * len(requests)
        results = self._score(
            [(list(ctx), list(cont)) for _, ctx, cont in requests], tasks, "loglikelihood"
        )
        for (pair, _, _), result in zip(requests, results, strict=True):
            if pair is not None:
                self.cache_hook.add_partial("loglikelihood", pair, result)
        return results

    def _score(
        self, pairs: list[tuple[list[int], list[int]]], tasks: list[str | None], kind: str
    ) -> list[tuple[float, bool]]:
        """Score (context ids, continuation ids) pairs, grouped by context (and task)."""
        from sah_adapters.scoring import score_continuations

        groups: dict[tuple[str | None, tuple[int, ...]], list[int]] = {}
        fitted = []
        for index, (ctx, cont) in enumerate(pairs):
            if len(cont) > self.max_length:
                raise ValueError(
                    f"a continuation of {len(cont)} tokens is longer than max_length="
                    f"{self.max_length}"
                )
            keep = self.max_length + 1 - len(cont)  # context + continuation[:-1] fit max_length
            ctx = ctx[-keep:] if len(ctx) > keep else ctx
            fitted.append((ctx, cont))
            groups.setdefault((tasks[index], tuple(ctx)), []).append(index)
        out: list[tuple[float, bool] | None] = [None] * len(pairs)
        for (task, ctx_key), members in groups.items():
            self._tag(task, kind)
            scores = score_continuations(
                self.adapter,
                list(ctx_key),
                [fitted[i][1] for i in members],
                batch_size=self.batch_size,
                question_tokens=min(self.question_tokens, len(ctx_key) - 1),
                request_kwargs=self._request_kwargs(),
            )
            for i, score in zip(members, scores, strict=True):
                out[i] = (score.logprob, score.is_greedy)
        return [r for r in out if r is not None]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        results = []
        for request in requests:
            (string,) = request.args
            windows = [
                make_disjoint_window(w)
                for w in get_rolling_token_windows(
                    token_list=self.tok_encode(string),
                    prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                )
            ]
            task = getattr(request, "task_name", None)
            scored = self._score(
                [(list(c), list(p)) for c, p in windows],
                [task] * len(windows),
                "loglikelihood_rolling",
            )
            total = float(sum(s[0] for s in scored))
            results.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
        return results

    # ------------------------------------------------------------------ generation
    def _generation_kwargs(self, gen_kwargs: dict[str, Any]) -> tuple[dict[str, Any], int]:
        from lm_eval.models.utils import normalize_gen_kwargs

        if not isinstance(gen_kwargs, dict):
            raise ValueError(f"generation kwargs {gen_kwargs!r:.80} must be a dict")
        kw = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        unknown = sorted(set(kw) - set(_GEN_KEYS))
        if unknown:
            raise ValueError(
                f"generation kwargs {unknown} are not supported by the sah model; supported: "
                f"{list(_GEN_KEYS)}"
            )
        until = kw.get("until") or []
        if isinstance(until, str):
            until = [until]
        eos_text = self.tokenizer.decode([self.eot_token_id])
        stop = [s for s in until if isinstance(s, str) and s and s != eos_text]
        out: dict[str, Any] = {"max_new_tokens": int(kw["max_gen_toks"]), "stop": stop}
        do_sample = bool(kw.get("do_sample", False))
        out["do_sample"] = do_sample
        if do_sample:
            for key in ("temperature", "top_p", "top_k", "seed"):
                if kw.get(key) is not None:
                    out[key] = kw[key]
        return out, int(kw["max_gen_toks"])

    def _split_prompt(self, prompt: str) -> tuple[str, str]:
        """``(context, question)`` strings: the question is the prompt's last
        ``question_tokens`` tokens (empty when 0)."""
        if self.question_tokens == 0:
            return prompt, ""
        ids = self.tok_encode(prompt, add_special_tokens=False)
        tail = self.tokenizer.decode(ids[-self.question_tokens :]) if len(ids) > 1 else ""
        if not tail or len(tail) >= len(prompt) or not prompt.endswith(tail):
            raise ValueError(
                f"question_tokens={self.question_tokens}: the prompt's last tokens decode to "
                f"{tail!r}, which does not end the prompt text; use question_tokens=0"
            )
        return prompt[: -len(tail)], tail

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        from sah_protocol import Request

        groups: dict[tuple[str, str, str | None], list[int]] = {}
        for index, request in enumerate(requests):
            context, gen_kwargs = request.args
            key = (context, json.dumps(gen_kwargs, sort_keys=True, default=str))
            groups.setdefault((*key, getattr(request, "task_name", None)), []).append(index)
        out: list[str | None] = [None] * len(requests)
        for (prompt, _, task), members in groups.items():
            gen_kwargs = requests[members[0]].args[1]
            generation, max_new = self._generation_kwargs(gen_kwargs)
            context, question = self._split_prompt(prompt)
            request_kwargs = {
                **self._request_kwargs(),
                "batch_size": self.batch_size,
                "use_chat_template": False,  # lm-eval applies its own template, if any
                "max_context_length": max(self.max_length - max_new, 1),
                "truncation": "left",
            }
            self._tag(task, "generate_until")
            response = self.adapter.process_request(
                Request(context=context, questions=[question] * len(members)),
                generation,
                request_kwargs,
            )
            for i, text in zip(members, response.response_list, strict=True):
                out[i] = text
                self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return [text for text in out if text is not None]

"""``sparse-attention-benchmark chat``: talk to a model with a sparse config, turn by turn.

Every turn runs the adapter's data flow on the conversation's KV cache, which is kept across
turns: the new user message (with the chat template's tokens around it) is the ``question``
phase, the reply the ``decode`` phase; only the tokens the cache does not hold yet are fed.
Each reply is followed by its density (mean share of keys attended per query in the sparse
attention calls of that turn; 1.000 for dense) and its decode speed in tokens/s.
``--compare`` keeps a dense conversation beside the sparse one (same user messages, each side
its own replies and cache). Commands: ``/config FILE`` (new sparse config: the caches are
rebuilt, as their KV came from the old one), ``/reset`` (forget the conversation), ``/quit``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

logger = logging.getLogger(__name__)

FACTORY_ENV_VAR = "SAH_ADAPTER_FACTORY"
HELP_TEXT = "commands: /config FILE (new sparse config), /reset (new conversation), /quit"


@dataclass
class TurnResult:
    """One reply and what it cost."""

    text: str
    new_tokens: int  # prompt tokens fed this turn (not already in the KV cache)
    reply_tokens: int
    seconds: float
    tokens_per_second: float
    density: float | None  # None: no sparse attention call ran (dense adapter)


@dataclass
class ChatSession:
    """One conversation with one adapter; its KV cache lives across turns.

    ``cached_ids`` are the token ids whose keys/values ``cache`` holds: the model's own tokens
    (its replies are never re-tokenized). A turn renders the whole conversation with the chat
    template; when that text starts with the text seen so far, only the tokens of the rest
    (end of the reply's turn, the new user message, the assistant header) are fed. Otherwise (a
    template that re-renders earlier turns differently) the cache is rebuilt from the rendered
    conversation and ``rebuilds`` counts it.
    """

    adapter: Any
    max_new_tokens: int = 128
    system_prompt: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    cache: Any = None
    cached_ids: list[int] = field(default_factory=list)
    rebuilds: int = 0
    _seen_text: str = ""
    _unfed: list[int] = field(default_factory=list)  # reply tokens chosen but not yet fed

    def reset(self) -> None:
        self.messages = []
        self._forget_cache()

    def _forget_cache(self) -> None:
        self.cache, self.cached_ids, self._seen_text, self._unfed = None, [], "", []

    def set_config(self, config: Any) -> None:
        """A new sparse config: the conversation stays, its KV cache is recomputed next turn."""
        self.adapter.set_sparse_attention_config(config)
        self._forget_cache()

    def _render(self, messages: list[dict[str, str]]) -> tuple[str, bool]:
        """The conversation as prompt text, and whether it spells its own special tokens."""
        tokenizer = self.adapter.tokenizer
        full = list(messages)
        if self.system_prompt:
            full = [{"role": "system", "content": self.system_prompt}, *full]
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(full, tokenize=False, add_generation_prompt=True)
            return str(text), True
        lines = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in full)
        return lines + "Assistant:", False

    def _tokens_to_feed(self, message: str) -> tuple[list[int], str]:
        tokenizer = self.adapter.tokenizer
        text, templated = self._render([*self.messages, {"role": "user", "content": message}])
        if self.cache is not None and self._seen_text and text.startswith(self._seen_text):
            rest = text[len(self._seen_text) :]
            return [*self._unfed, *tokenizer(rest, add_special_tokens=False)["input_ids"]], text
        if self.cache is not None:
            logger.info("the chat template re-rendered earlier turns: rebuilding the KV cache")
            self.rebuilds += 1
        self._forget_cache()
        return list(tokenizer(text, add_special_tokens=not templated)["input_ids"]), text

    def send(self, message: str) -> TurnResult:
        """Answer ``message``; the reply joins the conversation."""
        import torch

        from sah_adapters.decoding import TokenDecoder, finish_text
        from sah_adapters.generation_settings import GenerationSettings, RequestSettings
        from sah_adapters.model_adapter_hf import _ContextState
        from sah_adapters.request_stats import RequestStats
        from sah_adapters.transformers_compat import new_dynamic_cache
        from sah_core.metrics import MicroMetricLogger

        adapter = self.adapter
        adapter._require_open()
        eviction = getattr(adapter, "_eviction", None)
        if eviction is not None:
            raise ValueError(
                f"the sparse config holds the KV eviction {type(eviction.config).__name__}; "
                "chat keeps one growing KV cache across turns and applies no eviction: use a "
                "selection-only stack"
            )
        new, text = self._tokens_to_feed(message)
        if not new:
            raise ValueError("the chat template rendered no new tokens for this message")
        if self.cache is None:
            self.cache = new_dynamic_cache(adapter.model.config)
        settings = GenerationSettings.from_kwargs({"max_new_tokens": self.max_new_tokens})
        decoder = TokenDecoder(
            settings, adapter.tokenizer, adapter._eos_ids(settings), adapter._pad_token_id()
        )
        stats = RequestStats(context_tokens=len(self.cached_ids))
        state = _ContextState(adapter, len(self.cached_ids), self.cache, None, None, None)
        adapter._request_phases = adapter._phases_for(RequestSettings())
        scratch = Path(tempfile.mkdtemp(prefix="sah-chat-"))
        started = time.perf_counter()
        try:
            with torch.no_grad(), MicroMetricLogger(scratch, metrics=("density",)):
                adapter._answer_batch(self.cache, state, [new], decoder, None, stats)
            records = _read_records(scratch)
        finally:
            adapter._phase = None
            adapter._request_phases = ()
            shutil.rmtree(scratch, ignore_errors=True)
        seconds = time.perf_counter() - started
        reply_ids = list(stats.answer_token_ids[0])
        # The decoder never feeds its last choice: the EOS after a finished reply, or the last
        # reply token when the reply hit max_new_tokens (fed at the start of the next turn).
        fed = len(reply_ids) if len(reply_ids) < self.max_new_tokens else len(reply_ids) - 1
        self.cached_ids = [*self.cached_ids, *new, *reply_ids[:fed]]
        self._unfed = reply_ids[fed:]
        reply = finish_text(adapter.tokenizer, reply_ids, ())
        self._seen_text = text + reply
        self.messages += [
            {"role": "user", "content": message},
            {"role": "assistant", "content": reply},
        ]
        densities = [float(r["density"]) for r in records if r.get("density") is not None]
        return TurnResult(
            text=reply,
            new_tokens=len(new),
            reply_tokens=len(reply_ids),
            seconds=seconds,
            tokens_per_second=len(reply_ids) / seconds if seconds > 0 else 0.0,
            density=sum(densities) / len(densities) if densities else None,
        )


def _read_records(folder: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")):
        records.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return records


def _load_config(path: str) -> Any:
    from sah_bench.run_config import load_sparse_config
    from sah_core import ResearchAttentionConfig

    _, data = load_sparse_config(path)
    return None if data is None else ResearchAttentionConfig.from_dict(data)


def _describe(result: TurnResult) -> str:
    density = "1.000 (dense)" if result.density is None else f"{result.density:.3f}"
    return (
        f"[density {density} | {result.reply_tokens} tokens in {result.seconds:.2f} s, "
        f"{result.tokens_per_second:.1f} tokens/s | {result.new_tokens} prompt tokens fed]"
    )


def run_chat(
    sessions: dict[str, ChatSession],
    inp: TextIO,
    out: TextIO,
    *,
    prompt: str = "you> ",
) -> int:
    """The read-reply loop over ``inp``; returns the number of turns answered."""
    turns = 0
    out.write(HELP_TEXT + "\n")
    while True:
        out.write(prompt)
        out.flush()
        line = inp.readline()
        if not line:
            out.write("\n")
            return turns
        message = line.strip()
        if not message:
            continue
        if message in ("/quit", "/exit"):
            return turns
        if message == "/reset":
            for session in sessions.values():
                session.reset()
            out.write("(conversation reset)\n")
            continue
        if message.startswith("/config"):
            path = message[len("/config") :].strip()
            if not path:
                out.write("usage: /config FILE (a sparse config JSON, or 'dense')\n")
                continue
            try:
                config = _load_config(path)
            except ValueError as exc:
                out.write(f"error: {exc}\n")
                continue
            sparse = next((s for name, s in sessions.items() if name != "dense"), None)
            if sparse is None:
                sparse = next(iter(sessions.values()))
            sparse.set_config(config)
            out.write(f"(sparse config: {path}; KV cache will be rebuilt)\n")
            continue
        if message.startswith("/"):
            out.write(f"unknown command {message.split()[0]!r}; {HELP_TEXT}\n")
            continue
        for name, session in sessions.items():
            try:
                result = session.send(message)
            except ValueError as exc:
                out.write(f"error ({name}): {exc}\n")
                continue
            label = f"{name}> " if len(sessions) > 1 else "model> "
            out.write(f"{label}{result.text}\n{' ' * len(label)}{_describe(result)}\n")
        turns += 1


def chat_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Model to chat with.")] = (
        "smollm2-135m"
    ),
    sparse_config: Annotated[
        str, typer.Option("--sparse-config", "-c", help="Sparse config JSON file, or 'dense'.")
    ] = "dense",
    compare: Annotated[
        bool, typer.Option("--compare", help="Answer each message densely too, side by side.")
    ] = False,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Cap on tokens per reply.")] = 128,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    device: Annotated[str | None, typer.Option("--device", "-d", help="cpu, cuda, cuda:N.")] = None,
    dtype: Annotated[
        str | None, typer.Option(help="Weights dtype: bfloat16, float16, float32 or auto.")
    ] = None,
    adapter_factory: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Interactive multi-turn chat with a sparse config (KV cache kept across turns)."""
    from sah_adapters import ModelAdapterHF
    from sah_bench.executor.factory import (
        DEFAULT_ADAPTER_FACTORY,
        call_factory,
        resolve_factory,
    )
    from sah_bench.run_checks import model_kwargs_with_dtype
    from sah_bench.run_config import load_sparse_config

    logging.basicConfig(level=logging.WARNING)
    try:
        config_name, config = load_sparse_config(sparse_config)
        model_kwargs = model_kwargs_with_dtype({}, dtype)
        factory = resolve_factory(
            adapter_factory or os.environ.get(FACTORY_ENV_VAR) or DEFAULT_ADAPTER_FACTORY
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    wanted = [("dense", None)] if compare and config is not None else []
    wanted.append((config_name, config))
    if compare and config is None:
        typer.echo("error: --compare needs a sparse config (--sparse-config FILE)", err=True)
        raise typer.Exit(code=2)
    sessions: dict[str, ChatSession] = {}
    try:
        for name, data in wanted:
            adapter = call_factory(
                factory, model, data, model_kwargs=model_kwargs or None, device=device
            )
            if not isinstance(adapter, ModelAdapterHF):
                raise ValueError(
                    f"the adapter factory returned {type(adapter).__name__}; chat needs a "
                    "sah_adapters.ModelAdapterHF"
                )
            sessions[name] = ChatSession(adapter, max_new_tokens, system)
        typer.echo(f"chatting with {model} ({', '.join(sessions)})")
        run_chat(sessions, sys.stdin, sys.stdout)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    finally:
        for session in sessions.values():
            session.adapter.close()

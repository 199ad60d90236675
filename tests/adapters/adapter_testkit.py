"""Tiny random decoders and a tokenizer trained here: no downloads, seconds to build.

Shared by the adapter tests (imported by name: conftest.py puts this folder on sys.path).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France and Berlin is the capital of Germany.",
    "A needle hides in a haystack of numbers: 1234, 5678, 9012.",
    "Question: what is the magic number? Answer: the magic number is 42.",
    "Sparse attention keeps a few keys per query and skips the rest.",
    "Context windows grow long; key value caches grow with them.",
]
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "<bos>{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
VOCAB_SIZE = 320

CONTEXT = (
    "Paris is the capital of France. The magic number is 42. The quick brown fox jumps over "
    "the lazy dog. A needle hides in a haystack of numbers: 1234, 5678, 9012. "
) * 3
QUESTIONS = [
    " Question: what is the magic number?",
    " Question: what is the capital of France?",
    " What jumps over the lazy dog? Tell me now.",
]


def build_tokenizer(chat_template: bool) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(SENTENCES, trainer)
    bos = backend.token_to_id("<bos>")
    # Plain text gets a BOS like most LLM tokenizers; the chat template spells its own.
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _common(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "vocab_size": VOCAB_SIZE,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        # Larger than the usual 0.02 so next-token logits have clear winners: token-identity
        # comparisons then test the computation, not float rounding among near-ties.
        "initializer_range": 0.2,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
    }
    base.update(extra)
    return base


def tiny_config(family: str) -> Any:
    import transformers

    if family == "llama":
        return transformers.LlamaConfig(**_common())
    if family == "qwen2":
        return transformers.Qwen2Config(**_common())
    if family == "qwen3":
        return transformers.Qwen3Config(**_common(head_dim=16))
    if family == "mistral":
        # A window far shorter than the prompt, so a lost window would change the output.
        return transformers.MistralConfig(**_common(sliding_window=8))
    if family == "gemma3":
        return transformers.Gemma3TextConfig(
            **_common(
                head_dim=16,
                sliding_window=8,
                layer_types=["sliding_attention", "full_attention"],
                query_pre_attn_scalar=16,
            )
        )
    if family == "phi3":
        return transformers.Phi3Config(**_common(num_key_value_heads=4))
    raise ValueError(family)


FAMILIES = ["llama", "qwen2", "qwen3", "mistral", "gemma3", "phi3"]
_MODELS: dict[str, Any] = {}


def tiny_model(family: str) -> Any:
    """A random tiny decoder (cached per session; adapters never change its weights)."""
    from transformers import AutoModelForCausalLM

    if family not in _MODELS:
        torch.manual_seed(0)
        # from_config mutates the config it gets (attn_implementation): give it a copy.
        config = copy.deepcopy(tiny_config(family))
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
        model.eval()
        _MODELS[family] = model
    return _MODELS[family]


def generate_reference(
    model: Any, input_ids: list[int], max_new_tokens: int, eos_token_id: int = 2
) -> list[int]:
    """Greedy tokens from transformers' own ``generate`` (EOS dropped), the independent oracle."""
    ids = torch.tensor([input_ids])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos_token_id,
            pad_token_id=0,
        )
    new = out[0, ids.shape[1] :].tolist()
    return new[: new.index(eos_token_id)] if eos_token_id in new else new


def full_budget_config() -> Any:
    """A masker stack that selects every key: sparse mode must then equal dense."""
    from sah_core import ResearchAttentionConfig
    from sah_core.maskers import SinkMaskerConfig

    return ResearchAttentionConfig(masker_configs=[SinkMaskerConfig(sink_size=1.0)])


def real_sparse_config() -> Any:
    """Sink 2 + local 4 + oracle top-4: ~10 of the ~100-300 keys per query."""
    from sah_core import ResearchAttentionConfig
    from sah_core.maskers import LocalMaskerConfig, OracleTopKConfig, SinkMaskerConfig

    return ResearchAttentionConfig(
        masker_configs=[
            SinkMaskerConfig(sink_size=2),
            LocalMaskerConfig(window_size=4),
            OracleTopKConfig(heavy_size=4),
        ]
    )


def split_prompt_ids(tokenizer: Any, context: str, question: str, prefix: str = "") -> list[int]:
    """Token ids the adapter should run, rebuilt here from the tokenizer's own pieces.

    With a chat template: render the full conversation, cut it where the question starts;
    the context part is tokenized as is, the rest (question, template tail, answer prefix)
    separately. Without: BOS + context, then question + answer prefix.
    """
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": context + question}],
            tokenize=False,
            add_generation_prompt=True,
        )
        cut = rendered.index(context) + len(context)
        head, tail = rendered[:cut], rendered[cut:]
        return (
            tokenizer(head, add_special_tokens=False)["input_ids"]
            + tokenizer(tail + prefix, add_special_tokens=False)["input_ids"]
        )
    return (
        tokenizer(context)["input_ids"]
        + tokenizer(question + prefix, add_special_tokens=False)["input_ids"]
    )

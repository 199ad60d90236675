"""ModelAdapterHF: sparse attention inside HuggingFace decoder LLMs."""

__all__: list[str] = []

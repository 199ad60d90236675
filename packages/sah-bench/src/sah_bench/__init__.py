"""Long-context benchmarks, scorers, synthetic suite, executor and CLI."""

__all__: list[str] = []

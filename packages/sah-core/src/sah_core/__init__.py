"""Mask algebra, research maskers, ResearchAttention, kernels and micro metrics."""

__all__: list[str] = []

"""Example downstream plug-in for Sparse Attention Hub: a strided masker."""

from sah_example_masker.strided import StridedMasker, StridedMaskerConfig

__all__ = ["StridedMasker", "StridedMaskerConfig"]

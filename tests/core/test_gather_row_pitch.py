"""The gather attention reads K/V rows of a cache view into a larger preallocated buffer
(``sah_adapters.reserved_kv``) in place: same rows as from a contiguous copy, and no copy."""

from __future__ import annotations

import torch

from sah_core.attention.index_form import gather_kv_rows, kv_flat_rows, kv_row_pitch


def _buffer_view(b: int, hkv: int, k: int, d: int, cap: int) -> torch.Tensor:
    buffer = torch.randn(b + 1, hkv, cap, d, generator=torch.Generator().manual_seed(0))
    return buffer[1:, :, :k]  # rows 1.. of the buffer, first k of cap slots


def test_rows_of_a_buffer_view_equal_the_contiguous_gather() -> None:
    b, hkv, hq, k, d, cap = 2, 3, 6, 10, 4, 16
    view = _buffer_view(b, hkv, k, d, cap)
    assert not view.is_contiguous() and kv_row_pitch(view) == cap
    indices = torch.randint(-1, k, (b, hq, 2, 5), generator=torch.Generator().manual_seed(1))
    # reference: a naive loop over the contiguous copy (-1 reads key 0 of the head)
    dense = view.contiguous()
    expected = torch.empty(*indices.shape, d)
    for bi in range(b):
        for h in range(hq):
            for qi in range(2):
                for li in range(5):
                    key = max(int(indices[bi, h, qi, li]), 0)
                    expected[bi, h, qi, li] = dense[bi, h // (hq // hkv), key]
    assert torch.equal(gather_kv_rows(view, indices), expected)
    # row numbers computed for the contiguous pitch are recomputed for the view's
    rows_k = kv_flat_rows(indices, hkv, k)
    assert torch.equal(gather_kv_rows(view, indices, rows_k, k), expected)
    rows_cap = kv_flat_rows(indices, hkv, cap)
    assert torch.equal(gather_kv_rows(view, indices, rows_cap, cap), expected)
    assert kv_row_pitch(dense) == k


def test_other_layouts_are_copied_not_misread() -> None:
    tensor = torch.randn(2, 3, 4, 5).transpose(2, 3).contiguous().transpose(2, 3)  # D-major
    assert kv_row_pitch(tensor) is None
    indices = torch.tensor([[[[0, 3]]] * 3] * 2)
    out = gather_kv_rows(tensor, indices)
    assert torch.equal(out[1, 2, 0, 1], tensor[1, 2, 3])

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


def test_gathers_into_the_kept_workspace_equal_fresh_gathers(monkeypatch, helpers) -> None:
    """CPU gathers above WORKSPACE_MIN_BYTES write into one kept buffer per slot: the same
    rows as a fresh gather (and as a naive loop), the buffer reused and grown, and the index
    attention through it within fp64 attention, GQA, -1 padding and weights != 1 included."""
    import sah_core.attention.index_form as index_form

    monkeypatch.setattr(index_form, "WORKSPACE_MIN_BYTES", 1)  # every gather qualifies
    # the torch gather ops (the fused CPU kernel reads the cache in place, no workspace)
    monkeypatch.setattr(index_form, "fused_gather_applies", lambda *args: False)
    index_form.release_gather_workspace()
    b, hkv, hq, k, d, cap = 2, 3, 6, 40, 4, 48
    view = _buffer_view(b, hkv, k, d, cap)
    gen = torch.Generator().manual_seed(3)
    indices = torch.randint(-1, k, (b, hq, 1, 5), generator=gen)
    fresh = gather_kv_rows(view, indices)
    kept = gather_kv_rows(view, indices, workspace="keys")
    assert torch.equal(kept, fresh)
    first_ptr = kept.data_ptr()
    again = gather_kv_rows(view, indices[..., :3], workspace="keys")  # smaller: same buffer
    assert again.data_ptr() == first_ptr and torch.equal(again, fresh[..., :3, :])
    wider = torch.randint(0, k, (b, hq, 1, 9), generator=gen)
    assert torch.equal(gather_kv_rows(view, wider, workspace="keys"), gather_kv_rows(view, wider))
    # a tensor that requires grad never writes into the workspace (out= has no autograd)
    grad_view = view.detach().clone().requires_grad_(True)
    out = gather_kv_rows(grad_view, indices, workspace="keys")
    assert out.requires_grad and out.data_ptr() != first_ptr

    # attention through the workspace path (gather strategy: few rows, K >> L)
    q = torch.randn(b, hq, 1, d, generator=gen)
    values = _buffer_view(b, hkv, k, d, cap) * 0.5
    idx = torch.stack([torch.randperm(k, generator=gen)[:6] for _ in range(b * hq)])
    idx = idx.view(b, hq, 1, 6)
    idx[0, 1, 0, 2] = -1  # padding
    idx[1, 4, 0, 0] = -1
    weights = torch.rand(b, hq, 1, 6, generator=gen) * 0.9 + 0.1
    weights = torch.where(idx >= 0, weights, torch.zeros(()))
    dense_w = torch.zeros(b, hq, 1, k)
    dense_w.scatter_add_(-1, idx.clamp(min=0), weights)
    expected = helpers.naive_attention(q, view, values, dense_w, 0.5)
    got, name = index_form.index_attention_reference_named(
        q, view, values, idx, weights, scaling=0.5
    )
    assert name == "reference/gather"
    assert torch.allclose(got.double(), expected, atol=1e-5)
    slots = {("keys", torch.float32), ("values", torch.float32)}
    assert set(index_form._WORKSPACE.buffers) == slots
    index_form.release_gather_workspace()
    assert not index_form._WORKSPACE.buffers

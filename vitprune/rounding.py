"""Hardware-friendly widths: qk/v dims and MLP widths in multiples of a SIMD/tile width.

A width of 61 runs no faster than 64 on most kernels (the tail is padded or scalar), so a search
that counts the 3 saved dims is fooled; rounding keeps the cost model honest. Torch-free.
"""

from __future__ import annotations

from budgetprune.schemas.arch import ArchSpec

__all__ = ["round_width", "round_spec"]


def round_width(width: int, multiple: int, full: int) -> int:
    """`width` rounded to the nearest multiple of `multiple` (ties up), within 1..`full`; the full
    width is always allowed, even when it is not a multiple."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    if width >= full:
        return full
    rounded = max(multiple, (width + multiple // 2) // multiple * multiple)
    return min(rounded, full)


def round_spec(spec: ArchSpec, multiple: int) -> ArchSpec:
    """A copy of `spec` with kept qk/v dims and MLP widths in multiples of `multiple` (or full)."""
    info = spec.info
    out = spec.model_copy(deep=True)
    for blk in out.blocks:
        if blk.attn:
            blk.qk_dim = round_width(blk.qk_dim, multiple, info.head_dim)
            blk.v_dim = round_width(blk.v_dim, multiple, info.head_dim)
        if blk.mlp:
            blk.mlp_hidden = round_width(blk.mlp_hidden, multiple, info.mlp_hidden)
    return ArchSpec.model_validate(out.model_dump())

"""Per-part latencies read from a table: the vocabulary both predictors are written in.

Widths and counts may be floats or tensors (expected counts under gate probabilities); token
counts are plain ints, fixed by the spec's keep ratios. Torch-free.
"""

from __future__ import annotations

from typing import Any

from latency_tables.interp import interp1, interp_curve, value_of
from latency_tables.schema import LatencyTable

__all__ = ["attention_ms", "mlp_ms", "in_model", "selector_ms", "fixed_ms"]


def attention_ms(table: LatencyTable, tokens: int, heads: Any, qk_dim: Any, v_dim: Any) -> Any:
    """Attention branch of one block. With the diagonal (qk = v) measured: the diagonal at the
    narrower width, moved linearly toward the slice through the full other width as the wider
    one grows (exact on the three measured slices). Tables without it: the qk slice plus the v
    slice minus their shared point."""
    a = table.attention
    full = len(a.dims) - 1

    def at(grid: list[list[list[float]]], dim: Any) -> Any:
        return interp1(
            a.tokens,
            tokens,
            lambda i: interp1(
                a.heads, heads, lambda j: interp1(a.dims, dim, grid[i][j].__getitem__)
            ),
        )

    if a.diag_ms is not None:
        # the narrower width on the diagonal, the wider one along the slice through it
        narrow, wide, toward = (
            (qk_dim, v_dim, a.qk_ms)
            if value_of(qk_dim) <= value_of(v_dim)
            else (v_dim, qk_dim, a.v_ms)
        )
        room = a.dims[full] - value_of(narrow)
        diag = at(a.diag_ms, narrow)
        if room <= 0:
            return diag
        return diag + (at(toward, narrow) - diag) * ((wide - narrow) / room)
    shared = interp1(
        a.tokens, tokens, lambda i: interp1(a.heads, heads, lambda j: a.qk_ms[i][j][full])
    )
    return at(a.qk_ms, qk_dim) + at(a.v_ms, v_dim) - shared


def mlp_ms(table: LatencyTable, tokens: int, hidden: Any) -> Any:
    m = table.mlp
    return interp1(m.tokens, tokens, lambda i: interp1(m.hidden, hidden, m.ms[i].__getitem__))


def in_model(table: LatencyTable, tokens: Any) -> Any:
    """What a block on `tokens` tokens costs inside a whole model per millisecond of its stack
    entries (`BlockContext`); 1 for tables without it."""
    c = table.context
    return 1.0 if c is None else interp_curve(c.tokens, c.factor, tokens)


def selector_ms(table: LatencyTable, tokens_in: int, package: bool) -> float:
    s = table.selector
    if s is None:
        raise ValueError(
            f"the table for {table.model} has no token selector: rebuild it at an image size"
            " with at least two patches to predict token pruning"
        )
    return interp_curve(s.tokens, s.package_ms if package else s.ms, tokens_in)


def fixed_ms(table: LatencyTable, last_tokens: int, full_tokens: int) -> float:
    """Embedding, final norm, head and I/O: measured at the full token count, with the final
    norm's share moved to the token count the last block hands over."""
    h = table.head
    return (
        table.fixed_ms
        + interp_curve(h.tokens, h.ms, last_tokens)
        - interp_curve(h.tokens, h.ms, full_tokens)
    )

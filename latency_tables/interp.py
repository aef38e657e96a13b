"""Piecewise-linear interpolation on a table's grid, for plain floats and torch tensors alike.

The hard predictor (floats) and the expected latency for training (tensors carrying gradients)
evaluate the SAME code, so the two agree exactly when the gate probabilities are 0/1. The
segment is chosen on the value of `x`; the weight inside it is arithmetic on `x` itself, so the
result stays differentiable. Outside the grid the end value is held: widths below the smallest
measured one are not assumed faster (kernels pad narrow tiles), and larger ones do not exist.
Torch-free: it only uses `+`, `-`, `*`, `/` and the value of its inputs.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["interp1", "interp_curve", "value_of"]


def value_of(x: Any) -> float:
    """A float or a tensor's value (not its graph): where a lookup branches."""
    return float(x.detach() if hasattr(x, "detach") else x)


def interp1(grid: Sequence[float], x: Any, value: Callable[[int], Any]) -> Any:
    """`value` (a function of the grid index) interpolated at `x` along `grid` (ascending)."""
    xf = value_of(x)
    last = len(grid) - 1
    if last == 0 or xf <= grid[0]:
        return value(0)
    if xf >= grid[last]:
        return value(last)
    i = bisect_right(grid, xf) - 1
    w = (x - grid[i]) / (grid[i + 1] - grid[i])
    return value(i) * (1 - w) + value(i + 1) * w


def interp_curve(grid: Sequence[float], values: Sequence[float], x: Any) -> Any:
    return interp1(grid, x, values.__getitem__)

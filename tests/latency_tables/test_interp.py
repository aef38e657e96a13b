from __future__ import annotations

import pytest
import torch

from latency_tables.interp import interp1, interp_curve

GRID = [8, 16, 64]
VALUES = [1.0, 2.0, 8.0]


@pytest.mark.parametrize(("x", "want"), [(8, 1.0), (12, 1.5), (16, 2.0), (40, 5.0), (64, 8.0)])
def test_linear_between_grid_points(x, want):
    assert interp_curve(GRID, VALUES, x) == pytest.approx(want)


def test_held_at_the_ends():
    assert interp_curve(GRID, VALUES, 1) == 1.0
    assert interp_curve(GRID, VALUES, 100) == 8.0


def test_tensor_in_tensor_out_with_the_segment_slope_as_gradient():
    x = torch.tensor(40.0, requires_grad=True)
    y = interp_curve(GRID, VALUES, x)
    y.backward()
    assert float(y.detach()) == pytest.approx(5.0)
    assert float(x.grad) == pytest.approx((8.0 - 2.0) / (64 - 16))


def test_nested_is_bilinear():
    table = [[0.0, 10.0], [20.0, 30.0]]
    got = interp1([0, 1], 0.5, lambda i: interp1([0, 1], 0.25, table[i].__getitem__))
    assert got == pytest.approx(0.5 * 2.5 + 0.5 * 22.5)

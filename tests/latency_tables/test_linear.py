from __future__ import annotations

import pytest

from budgetprune.schemas import ArchSpec
from latency_tables import LinearMacsPredictor
from vitprune.cost import macs


def _half(spec: ArchSpec) -> ArchSpec:
    s = spec.model_copy(deep=True)
    for b in s.blocks:
        b.mlp_hidden //= 2
        b.heads = b.heads[:1]
    return s


def test_one_point_is_proportional_then_two_points_fit_a_line():
    dense = ArchSpec.dense("deit_tiny_patch16_224")
    small = _half(dense)
    p = LinearMacsPredictor()
    with pytest.raises(ValueError):
        p.predict(dense)
    p.add(dense, 20.0)
    assert p.predict(dense) == pytest.approx(20.0)
    assert p.predict(small) == pytest.approx(20.0 * macs(small) / macs(dense))
    p.add(small, 12.0)
    assert p.predict(dense) == pytest.approx(20.0)
    assert p.predict(small) == pytest.approx(12.0)
    assert p.intercept > 0  # fixed cost: the small model is slower than its MACs say


def test_noise_never_gives_a_negative_slope():
    dense = ArchSpec.dense("deit_tiny_patch16_224")
    p = LinearMacsPredictor()
    p.add(dense, 10.0)
    p.add(_half(dense), 11.0)
    assert p.slope > 0

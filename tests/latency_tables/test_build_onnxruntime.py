"""A real table, measured here with ONNX Runtime through the LocalMeasurer (small and coarse so
it stays fast; the timings are noisy on a shared machine, so the checks are about structure and
order of magnitude, not percent, and read the fastest run of each graph)."""

from __future__ import annotations

import pytest

from latency_tables.build import TableGrid, build_table, table_protocol
from worker.measurers import LocalMeasurer

from .conftest import TINY

pytestmark = pytest.mark.slow

GRID = TableGrid(
    token_fractions=[1.0, 0.5],
    dim_fractions=[0.125, 1.0],
    hidden_fractions=[1 / 96, 1.0],
    max_head_points=2,
    whole_models=1,
    evict_bytes=1 << 20,
)


@pytest.fixture(scope="module")
def ort_table():
    protocol = table_protocol(1).model_copy(update={"warmup": 3, "runs": 20, "max_batches": 2})
    # minima: the shared machine's interruptions only ever add time
    return build_table(
        TINY, 64, LocalMeasurer("onnxruntime"), 1, protocol=protocol, grid=GRID, statistic="min_ms"
    )


def test_the_table_says_where_and_how_it_was_measured(ort_table):
    d = ort_table.device
    assert d.runtime == "onnxruntime" and d.runtime_version not in ("", "unknown")
    assert d.threads == 1 and d.cpu_model and d.measured is True
    assert ort_table.protocol.runs == 20 and 0 < ort_table.build_seconds < 120


def test_more_work_costs_more_at_full_tokens(ort_table):
    # tiny blocks at few tokens cost about as much as the timing noise; the full ones do not
    a, m = ort_table.attention, ort_table.mlp
    assert a.qk_ms[-1][-1][-1] > a.qk_ms[-1][0][0] >= 0  # all heads, full dims vs 1 head, 8 dims
    assert m.ms[-1][-1] > m.ms[-1][0] >= 0  # 768 vs 8 neurons
    assert ort_table.fixed_ms > 0 and all(ms >= 0 for ms in ort_table.head.ms)


def test_the_dense_table_sum_is_the_right_size(ort_table):
    # a factor of 3: the shared machine has been seen to double a timing between two graphs;
    # wrong units, a double-counted overhead or a missing block would still fail it
    dense = ort_table.whole_models[0]
    assert dense.arch.blocks[0].mlp_hidden == 768
    assert 1 / 3 < dense.table_ms / dense.measured_ms < 3

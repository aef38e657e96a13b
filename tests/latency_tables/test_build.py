"""Building a table through a Measurer, on a device of exactly known latency."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from budgetprune.errors import MeasurementError
from budgetprune.schemas import ArchSpec, TokenSpec
from latency_tables.build import build_table, measure_context, smallest_spec
from latency_tables.onnx_shapes import matmul_shapes
from latency_tables.predictor import LutPredictor, table_breakdown
from vitprune.export import export_onnx
from vitprune.extract import extract_subnet
from vitprune.models import create_model
from vitprune.sample import sample_arch

from .conftest import MS_PER_MMAC, RUN_MS, SMALL_GRID, TINY, MacsMeasurer


def _true_ms(spec: ArchSpec, tmp_path, measurer: MacsMeasurer | None = None) -> float:
    path = tmp_path / "m.onnx"
    model = create_model(spec.model, img_size=spec.img_size)
    export_onnx(extract_subnet(model, spec), path, img_size=spec.img_size)
    measurer = measurer or MacsMeasurer()
    return measurer.measure(path, _protocol(), [1, 3, 64, 64]).stats.p50_ms


def _protocol():
    from latency_tables.build import table_protocol

    return table_protocol(1)


def test_table_records_where_how_and_how_long(macs_table):
    t = macs_table
    assert (t.model, t.img_size, t.batch_size, t.threads) == (TINY, 64, 1, 1)
    assert t.device.cpu_model == "fake-cpu" and t.device.runtime == "fake"
    assert t.protocol.threads == 1 and t.statistic == "p50_ms"
    assert t.build_seconds > 0 and t.measurements > 20
    assert t.attention.tokens == [5, 9, 17]  # class token + 4, 8, 16 patches
    assert t.attention.heads == [1, 2, 3] and t.attention.dims == [8, 64]
    assert t.mlp.hidden == [8, 768]
    assert len(t.whole_models) == 2 + SMALL_GRID.whole_models


def test_the_table_counts_the_bytes_an_agent_downloads_once_per_file(macs_table, macs_device):
    # the dense model is timed between every two whole models: measured often, fetched once
    assert macs_table.graph_bytes == sum(macs_device.received.values())
    assert macs_device.calls > len(macs_device.received) > 20


def test_slopes_recover_the_per_block_cost_exactly(macs_table):
    # dense attention at 17 tokens: qkv + scores + values + proj, in MMACs
    n, d, h, hd = 17, 192, 3, 64
    mmacs = (n * d * h * 3 * hd + 2 * h * n * n * hd + n * h * hd * d) / 1e6
    assert macs_table.attention.qk_ms[-1][-1][-1] == pytest.approx(mmacs * 0.001, rel=1e-9)
    assert macs_table.mlp.ms[-1][-1] == pytest.approx(2 * n * d * 768 / 1e6 * 0.001, rel=1e-9)


@pytest.mark.parametrize(
    "spec",
    [ArchSpec.dense(TINY, 64), smallest_spec(TINY, 64, 1000)],
    ids=["dense", "smallest"],
)
def test_on_grid_specs_sum_to_the_whole_model(macs_table, spec):
    point = next(p for p in macs_table.whole_models if p.arch == spec)
    assert point.table_ms == pytest.approx(point.measured_ms, rel=1e-6)


def test_token_pruned_specs_within_interpolation_error(macs_table, tmp_path):
    for seed in range(3):
        spec = sample_arch(TINY, seed=seed, img_size=64, width_multiple=8, tokens=True)
        raw = table_breakdown(macs_table, spec).total_ms
        assert raw == pytest.approx(_true_ms(spec, tmp_path), rel=0.03)


def test_blocks_cost_in_whole_models_what_their_stacks_charge_on_the_macs_device(macs_table):
    c = macs_table.context
    assert c is not None and c.tokens == macs_table.attention.tokens and c.depths == [1, 12]
    assert c.factor == pytest.approx([1.0] * len(c.tokens), rel=1e-6)


CACHE_PARAMS = 2_000_000  # more than a stack of 3 blocks of deit_tiny, less than the model
MS_PER_MPARAM_STREAMED = 0.002


class _LastLevelCache(MacsMeasurer):
    """A device whose last-level cache holds CACHE_PARAMS weights: a graph with more streams
    the rest from memory on every run, while the table's short stacks stay cached (one way a
    block can cost more inside a whole model than in its stack; the measured gap on real
    hosts is in bench/README.md). The cost per weight does not depend on the token count, so
    it matters most where blocks are cheap: on few tokens."""

    def latency_ms(self, onnx_path):
        params = sum(s.k * s.n for s in matmul_shapes(onnx_path) if s.weight)
        extra = MS_PER_MPARAM_STREAMED * max(0, params - CACHE_PARAMS) / 1e6
        return super().latency_ms(onnx_path) + extra


@pytest.fixture(scope="module")
def cache_table():
    grid = SMALL_GRID.model_copy(update={"whole_models": 0})
    return build_table(TINY, 64, _LastLevelCache(), threads=1, grid=grid)


@pytest.mark.parametrize(
    "keep", [{0: 0.25}, {2: 0.5, 6: 0.25}, {0: 0.5}], ids=["4@0", "8@2,4@6", "8@0"]
)
def test_whole_model_context_prices_blocks_on_few_tokens_as_the_model_runs_them(
    cache_table, tmp_path, keep
):
    table = cache_table
    factor = table.context.factor
    assert factor[0] > factor[1] > factor[2] > 1.0  # cheapest blocks, largest share streamed
    spec = ArchSpec.dense(TINY, 64).model_copy(
        update={"tokens": TokenSpec(keep=keep, package_token=False)}
    )
    true = _true_ms(spec, tmp_path, _LastLevelCache())
    assert table_breakdown(table, spec).total_ms == pytest.approx(true, rel=0.03)
    stacks_only = table_breakdown(table.model_copy(update={"context": None}), spec).total_ms
    assert stacks_only < 0.93 * true


def test_measure_context_prices_a_table_built_without_it(cache_table):
    """`bench/block_context.py` adds the step to an existing table: the same factors."""
    bare = cache_table.model_copy(update={"context": None})
    context = measure_context(bare, _LastLevelCache(), rounds=1)
    assert context.factor == pytest.approx(cache_table.context.factor, rel=1e-6)


def test_calibration_from_the_tables_whole_models_is_near_identity(macs_table):
    p = LutPredictor(macs_table)  # the table sums are right here, up to token interpolation
    assert p.scale == pytest.approx(1.0, rel=0.02)
    for point in macs_table.whole_models:
        assert p.predict(point.arch) == pytest.approx(point.measured_ms, rel=0.02)


class _TwoDevices(MacsMeasurer):
    def measure(self, onnx_path, protocol, input_shape):
        self.cpu_model = f"cpu-{self.calls % 2}"
        return super().measure(onnx_path, protocol, input_shape)


def test_graphs_from_two_devices_are_refused():
    with pytest.raises(MeasurementError, match="different devices"):
        build_table(TINY, 32, _TwoDevices(), threads=1, grid=SMALL_GRID)


def test_protocol_must_match_the_table():
    from latency_tables.build import table_protocol

    with pytest.raises(ValueError, match="threads"):
        build_table(TINY, 32, MacsMeasurer(), threads=2, protocol=table_protocol(1))


def test_calibration_samples_are_spread_over_the_keep_levels(macs_table):
    from latency_tables.build import sample_level

    levels = [sample_level(i, 8) for i in range(8)]
    assert levels == sorted(levels) and levels[0] < 0.2 and levels[-1] > 0.85
    samples = [p for p in macs_table.whole_models if p.role == "sample"]
    assert len(samples) == SMALL_GRID.whole_models
    neurons = [sum(b.mlp_hidden for b in p.arch.blocks) for p in samples]
    assert neurons == sorted(neurons)  # level i+1 keeps more than level i


class _SlowsDown(MacsMeasurer):
    """A host that turns 1.5x slower for good from its `at`-th measurement on, as a shared VM
    does when a neighbour starts work."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def latency_ms(self, onnx_path):
        return super().latency_ms(onnx_path) * (1.5 if self.calls > self.at else 1.0)


def _values(table) -> list[float]:
    a, m = table.attention, table.mlp
    return [*np.ravel(a.qk_ms), *np.ravel(a.v_ms), *np.ravel(m.ms), table.fixed_ms] + [
        p.measured_ms for p in table.whole_models
    ]


def test_a_host_that_slows_mid_build_leaves_the_table_unchanged(macs_table):
    """Slow from the 30th graph on, the reference read every 2: the speed estimate follows
    within a few readings, and the table reads (in its median entry) as if nothing happened."""
    steady = np.array(_values(macs_table))
    grid = SMALL_GRID.model_copy(update={"reference_every": 2})
    table = build_table(TINY, 64, _SlowsDown(at=30), threads=1, grid=grid)
    assert table.drift_ratio == pytest.approx(1.5)
    assert table.drift[0].after == 0 and len(table.drift) >= table.measurements // 2
    error = np.abs(np.array(_values(table)) / steady - 1)
    assert np.median(error) < 1e-9 and error[-len(table.whole_models) :].max() < 1e-9
    # without the reference graph the same host skews every entry timed after the slowdown
    uncorrected = grid.model_copy(update={"reference_every": 0})
    table = build_table(TINY, 64, _SlowsDown(at=30), threads=1, grid=uncorrected)
    assert table.drift == [] and table.drift_ratio == 1.0
    assert np.median(np.abs(np.array(_values(table)) / steady - 1)) > 0.4


def test_reference_noise_inside_the_dead_band_is_not_applied():
    from latency_tables.build import _Bench
    from latency_tables.schema import DriftReading

    bench = _Bench(MacsMeasurer(), _protocol(), "p50_ms", Path("."), 192, 0, reference_every=4)
    for i, ms in enumerate([1.0, 1.02, 0.98, 1.01, 0.99, 1.02, 0.97, 1.50]):
        bench.drift.append(DriftReading(after=4 * i, ms=ms))
    assert bench.speed == 1.0  # one slow reading: the median of the last five is 1.01
    bench.drift += [DriftReading(after=40, ms=1.5), DriftReading(after=44, ms=1.5)]
    assert bench.speed == pytest.approx(1.5)


class _Creeps(MacsMeasurer):
    """A host that gets 1% slower with every measurement from its `at`-th on (no reference
    graph here to follow it)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def latency_ms(self, onnx_path):
        return super().latency_ms(onnx_path) * (1 + 0.01 * max(0, self.calls - self.at))


def test_whole_models_are_timed_against_the_dense_model_around_them(macs_table):
    """The line a job rescales is anchored on the dense model: each whole model's time over the
    dense model's must be the device's, whatever speed the host had while it was timed. Timed
    one after another (the dense model first), this creep put the samples 2-5% high."""
    steady = {p.arch.sha256(): p.measured_ms for p in macs_table.whole_models}
    grid = SMALL_GRID.model_copy(update={"reference_every": 0})
    creeping = _Creeps(at=macs_table.measurements - 4)
    table = build_table(TINY, 64, creeping, threads=1, grid=grid)
    dense = table.whole_models[0]
    assert dense.role == "dense" and len(dense.over_dense) == 2 * (len(table.whole_models) - 1) + 1
    for p in table.whole_models[1:]:
        assert len(p.over_dense) == grid.whole_rounds
        truth = steady[p.arch.sha256()] / steady[dense.arch.sha256()]
        assert p.measured_ms / dense.measured_ms == pytest.approx(truth, rel=1e-3)


class _Counts(MacsMeasurer):
    """Records each file's timings as (runs, warm-up runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.timings: dict[str, list[tuple[int, int]]] = {}

    def measure(self, onnx_path, protocol, input_shape):
        self.timings.setdefault(Path(onnx_path).name, []).append((protocol.runs, protocol.warmup))
        return super().measure(onnx_path, protocol, input_shape)


def test_every_whole_model_gets_200_runs_and_the_dense_model_between_them_50_a_timing():
    from latency_tables.build import REFERENCE_RUNS, WHOLE_RUNS

    counts = _Counts()
    table = build_table(TINY, 64, counts, threads=1, grid=SMALL_GRID)
    wholes = [f"whole{i}.onnx" for i in range(len(table.whole_models))]
    dense, samples = counts.timings[wholes[0]], [counts.timings[name] for name in wholes[1:]]
    assert len(dense) == 1 + SMALL_GRID.whole_rounds * len(samples)
    assert {runs for runs, _ in dense} == {REFERENCE_RUNS}
    assert all(sum(runs for runs, _ in s) == WHOLE_RUNS == 200 for s in samples)
    # the in-model step's models are timed the same way; nothing whole warms up more than 3 runs
    context = counts.timings["context1.onnx"]
    assert sum(runs for runs, _ in context) == WHOLE_RUNS * len(table.attention.tokens)
    timed_whole = [
        t for name, ts in counts.timings.items() if "whole" in name or "context" in name for t in ts
    ]
    assert max(warmup for _, warmup in timed_whole) == 3


def test_blocks_cheaper_than_their_graph_are_also_timed_in_a_deep_stack(tmp_path):
    """The slope over stacks of 1 and 3 is kept where the two added blocks cost more than the
    one-block graph; where the graph's own run cost dominates, a stack of `deep` is timed too."""
    from latency_tables import microbench as mb
    from latency_tables.build import _Bench

    block = create_model(TINY, img_size=64).blocks[0]
    n, d = 17, 192
    for run_ms, graphs in ((0.0, 2), (RUN_MS, 3)):
        measurer = MacsMeasurer(run_ms=run_ms)
        bench = _Bench(measurer, _protocol(), "p50_ms", tmp_path, d, 0)
        per_block = bench.slope(
            lambda depth: mb.mlp_stack(block, hidden=768, depth=depth), [1, n, d], [1, 3], 12
        )
        assert measurer.calls == graphs
        assert per_block == pytest.approx(2 * n * d * 768 / 1e6 * MS_PER_MMAC, rel=1e-9)


class _Noisy(MacsMeasurer):
    """The MACs device with every timing off by a normal error of 2 us: the scatter of a
    cheap graph's p50 on a real host, on blocks of 0.03-5 us."""

    def __init__(self) -> None:
        super().__init__()
        self.rng = np.random.default_rng(0)

    def latency_ms(self, onnx_path):
        return super().latency_ms(onnx_path) + self.rng.normal(0, 0.002)


def test_deep_stacks_cut_the_noise_of_cheap_entries():
    def entries(table):
        return np.concatenate([np.ravel(table.mlp.ms), np.ravel(table.attention.diag_ms)])

    update = {
        "whole_models": 0,
        "context_rounds": 0,
        "max_head_points": 2,
        "token_fractions": [1.0, 0.25],
    }
    grid = SMALL_GRID.model_copy(update=update)
    truth = entries(build_table(TINY, 64, MacsMeasurer(), threads=1, grid=grid))
    errors = {}
    for deep in (0, 12):
        noisy = build_table(
            TINY, 64, _Noisy(), threads=1, grid=grid.model_copy(update={"deep_stack": deep})
        )
        assert noisy.deep_stack == deep
        errors[deep] = np.abs(entries(noisy) - truth)
    assert np.median(errors[12]) < 0.4 * np.median(errors[0])

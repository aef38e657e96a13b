"""LutPredictor: the table sum and the calibration line fitted on measured whole models."""

from __future__ import annotations

import json

import pytest

from budgetprune.schemas import ArchSpec
from latency_tables import (
    LutPredictor,
    find_table,
    load_table,
    save_table,
    table_breakdown,
    table_key,
)
from latency_tables.build import smallest_spec
from latency_tables.predictor import monotone
from vitprune.sample import sample_arch

from .conftest import TINY


def test_add_fits_scale_and_offset_on_relative_error(macs_table):
    p = LutPredictor(macs_table, use_table_models=False)
    dense, small = ArchSpec.dense(TINY, 64), smallest_spec(TINY, 64, 1000)
    with_residual = {id(s): 1.25 * p.raw(s) + 0.02 for s in (dense, small)}
    p.add(dense, with_residual[id(dense)])
    assert p.predict(dense) == pytest.approx(with_residual[id(dense)])
    p.add(small, with_residual[id(small)])
    assert (p.scale, p.offset) == pytest.approx((1.25, 0.02))
    other = sample_arch(TINY, seed=7, img_size=64, width_multiple=8)
    assert p.predict(other) == pytest.approx(1.25 * p.raw(other) + 0.02)
    assert p.describe()["kind"] == "lookup-table" and len(p.describe()["points"]) == 2


def test_more_work_never_predicts_less(macs_table):
    p = LutPredictor(macs_table)
    spec = ArchSpec.dense(TINY, 64)
    lighter = spec.model_copy(deep=True)
    lighter.blocks[3].mlp_hidden = 384
    lighter.blocks[5].heads = [0, 1]
    lighter.blocks[7].v_dim = 32
    lighter.blocks[9].attn, lighter.blocks[9].heads = False, []
    lighter.blocks[9].qk_dim = lighter.blocks[9].v_dim = 0
    assert p.predict(lighter) < p.predict(spec)
    parts = table_breakdown(macs_table, lighter)
    assert parts.attention_ms[9] == 0.0 and parts.mlp_ms[3] < parts.mlp_ms[2]


def test_a_prediction_does_not_depend_on_what_was_predicted_before(macs_table):
    """The predictor keeps block costs between calls (a search prices tens of thousands of
    specs): a kept cost must be the one its own block asks for, in any order."""
    specs = [
        sample_arch(TINY, seed=s, img_size=64, width_multiple=8, tokens=s % 2 == 0)
        for s in range(12)
    ]
    specs += [ArchSpec.dense(TINY, 64), smallest_spec(TINY, 64, 1000)]
    forward, backward = LutPredictor(macs_table), LutPredictor(macs_table)
    ahead = [forward.raw(s) for s in specs]
    behind = [backward.raw(s) for s in reversed(specs)][::-1]
    fresh = [table_breakdown(monotone(macs_table), s).total_ms for s in specs]
    assert ahead == behind == fresh
    assert len(set(ahead)) == len(specs)


def test_a_noisy_table_still_never_prices_a_removal_as_a_cost(macs_table):
    """On a real device cheap grid points are noisy: 2 heads can read slower than 3. The
    predictor must not tell a search that removing a head or neurons costs time."""
    att, mlp = macs_table.attention, macs_table.mlp
    qk = [[row[:] for row in plane] for plane in att.qk_ms]
    v = [[row[:] for row in plane] for plane in att.v_ms]
    diag = [[row[:] for row in plane] for plane in att.diag_ms]
    ms = [row[:] for row in mlp.ms]
    for plane in (qk, v, diag):  # every head count below the full one reads 30% above it
        for n in range(len(att.tokens)):
            for h in range(len(att.heads) - 1):
                plane[n][h] = [x * 1.3 for x in plane[n][-1]]
    for n in range(len(mlp.tokens)):
        ms[n][0] = ms[n][-1] * 1.2
    noisy = macs_table.model_copy(
        update={
            "attention": att.model_copy(update={"qk_ms": qk, "v_ms": v, "diag_ms": diag}),
            "mlp": mlp.model_copy(update={"ms": ms}),
        }
    )
    p = LutPredictor(noisy)
    dense = ArchSpec.dense(TINY, 64)
    fewer_heads = dense.model_copy(deep=True)
    fewer_heads.blocks[0].heads = [0, 1]
    fewer_neurons = dense.model_copy(deep=True)
    fewer_neurons.blocks[0].mlp_hidden = 8
    assert p.predict(fewer_heads) <= p.predict(dense)
    assert p.predict(fewer_neurons) <= p.predict(dense)
    assert table_breakdown(noisy, fewer_heads).total_ms > table_breakdown(noisy, dense).total_ms


def test_a_spec_for_another_model_or_size_is_refused(macs_table):
    p = LutPredictor(macs_table)
    with pytest.raises(ValueError, match="lut build"):
        p.predict(ArchSpec.dense(TINY, 32))
    with pytest.raises(ValueError, match="lut build"):
        p.predict(ArchSpec.dense("deit_small_patch16_224", 64))


def test_store_round_trip_is_atomic_and_keyed(macs_table, tmp_path):
    path = save_table(macs_table, tmp_path)
    assert path.name == table_key(macs_table.device, TINY, 64) + ".json"
    assert path.name.startswith("fake-cpu__fake-1__t1__b1__deit_tiny_patch16_224__64__p50__")
    assert find_table(tmp_path, macs_table.device, TINY, 64) == macs_table
    assert find_table(tmp_path, macs_table.device, TINY, 64, "min_ms") is None
    assert [f.name for f in tmp_path.iterdir()] == [path.name]  # no temporary file left
    assert path.stat().st_mode & 0o777 == 0o644
    assert load_table(path) == macs_table
    other = macs_table.device.model_copy(update={"os": "another"})
    assert table_key(other, TINY, 64) != table_key(macs_table.device, TINY, 64)


def test_another_schema_version_is_refused_with_a_hint(macs_table, tmp_path):
    data = json.loads(macs_table.model_dump_json())
    data["schema_version"] = 99
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="schema version 99"):
        load_table(path)


def test_predictor_module_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, latency_tables, latency_tables.predictor, latency_tables.store;"
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_package_exports_exactly_its_public_names():
    import inspect

    import latency_tables as pkg

    public = {n for n in dir(pkg) if not n.startswith("_")}
    assert set(pkg.__all__) == {n for n in public if not inspect.ismodule(getattr(pkg, n))}


def test_one_measurement_rescales_the_table_line_to_the_device_now(macs_table):
    """A job's first point (its dense baseline) says how the device reads today, and at which
    percentile: every prediction moves by the same ratio, so the table's shape is kept."""
    p = LutPredictor(macs_table)
    base = LutPredictor(macs_table)
    measured = sample_arch(TINY, seed=5, img_size=64, width_multiple=8)
    other = sample_arch(TINY, seed=3, img_size=64, width_multiple=8)
    p.add(measured, 1.2 * base.predict(measured))  # 20% slower than when the table was built
    assert p.predict(measured) == pytest.approx(1.2 * base.predict(measured))
    assert p.predict(other) == pytest.approx(1.2 * base.predict(other))
    assert p.describe()["table_line"] == {"scale": base.scale, "offset_ms": base.offset}


def test_a_model_the_table_timed_whole_rescales_by_its_own_build_time_measurement(macs_table):
    """The dense model reads off the base line (here 10% over it): a job that measures it 20%
    slower than at the build learns a drift of 20%, not 32%."""
    points = [
        p.model_copy(update={"measured_ms": 1.1 * p.measured_ms}) if p.role == "dense" else p
        for p in macs_table.whole_models
    ]
    table = macs_table.model_copy(update={"whole_models": points})
    dense_at_build = next(p.measured_ms for p in points if p.role == "dense")
    base, job = LutPredictor(table), LutPredictor(table)
    dense = ArchSpec.dense(TINY, 64)
    assert dense_at_build == pytest.approx(1.1 * base.predict(dense), rel=0.03)
    job.add(dense, 1.2 * dense_at_build)
    other = sample_arch(TINY, seed=3, img_size=64, width_multiple=8)
    assert job.predict(other) == pytest.approx(1.2 * base.predict(other))
    assert job.predict(dense) == pytest.approx(1.2 * base.predict(dense))  # the line, not a lookup
    # with a second point the job's line passes through the dense model where it was measured
    small = smallest_spec(TINY, 64, 1000)
    job.add(small, 1.2 * base.predict(small))
    assert job.predict(other) == pytest.approx(1.2 * base.predict(other), rel=0.1)


def test_the_jobs_own_points_are_never_mixed_with_the_tables(macs_table):
    p = LutPredictor(macs_table)
    large = sample_arch(TINY, seed=1, img_size=64, width_multiple=8, level=0.9)
    small = sample_arch(TINY, seed=2, img_size=64, width_multiple=8, level=0.2)
    for spec in (large, small):
        p.add(spec, 1.3 * p.raw(spec) + 0.1)
    assert (p.scale, p.offset) == pytest.approx((1.3, 0.1))
    p.restore(p.points)  # a resumed job refits the same line from its saved points
    assert (p.scale, p.offset) == pytest.approx((1.3, 0.1))


def test_the_base_line_is_fitted_on_the_sampled_sub_networks_not_the_two_ends(macs_table):
    """The dense and smallest models read off the line the sub-networks jobs ask about lie on:
    they are checks, not calibration points."""
    samples = [p for p in macs_table.whole_models if p.role == "sample"]
    assert len(samples) >= 2 and {p.role for p in macs_table.whole_models[:2]} == {
        "dense",
        "smallest",
    }
    on_line = [p.model_copy(update={"measured_ms": 1.1 * p.table_ms + 0.05}) for p in samples]
    ends = [  # far off any line through the samples
        p.model_copy(update={"measured_ms": 3.0 * p.table_ms})
        for p in macs_table.whole_models
        if p.role != "sample"
    ]
    table = macs_table.model_copy(update={"whole_models": ends + on_line})
    p = LutPredictor(table)
    assert (p.base_scale, p.base_offset) == pytest.approx((1.1, 0.05), rel=1e-6)
    # a table built before roles were recorded marks no ends: every point is a sample
    old = table.model_copy(
        update={"whole_models": [q.model_copy(update={"role": "sample"}) for q in ends + on_line]}
    )
    assert LutPredictor(old).base_scale > 1.2


def test_attention_is_exact_on_its_three_slices_and_linear_between(macs_table):
    """Narrow q, k and v share one qkv matmul and hit kernel floors, so the slices' savings do
    not add (16/16 dims read 2.5x the sum's cost on a real CPU): a table with the diagonal
    measured reads it there, reads each slice where it was measured, and moves linearly in the
    wider width between them. A table without it keeps the additive rule."""
    from latency_tables.lookup import attention_ms

    att = macs_table.attention
    floor = [[[x + 0.05 for x in row] for row in plane] for plane in att.diag_ms]
    table = macs_table.model_copy(update={"attention": att.model_copy(update={"diag_ms": floor})})
    n, h, dims = att.tokens[-1], att.heads[-1], att.dims
    i, j, lo, full = len(att.tokens) - 1, len(att.heads) - 1, dims[0], dims[-1]
    assert attention_ms(table, n, h, lo, lo) == pytest.approx(floor[i][j][0])
    assert attention_ms(table, n, h, lo, full) == pytest.approx(att.qk_ms[i][j][0])
    assert attention_ms(table, n, h, full, lo) == pytest.approx(att.v_ms[i][j][0])
    mid = (lo + full) / 2
    halfway = (floor[i][j][0] + att.qk_ms[i][j][0]) / 2
    assert attention_ms(table, n, h, lo, mid) == pytest.approx(halfway)
    additive = att.qk_ms[i][j][0] + att.v_ms[i][j][0] - att.qk_ms[i][j][-1]
    old = macs_table.model_copy(update={"attention": att.model_copy(update={"diag_ms": None})})
    assert attention_ms(old, n, h, lo, lo) == pytest.approx(additive)
    assert attention_ms(table, n, h, lo, lo) > additive + 0.04

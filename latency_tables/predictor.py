"""Arch spec -> latency from a lookup table, calibrated on whole models measured on the device.

The table's raw sum is the fixed part, plus each block's attention and MLP as stacks of their
own kind measured them, times what a block on that many tokens costs inside a whole model over
its stack entry (`BlockContext`), plus the token selectors. A whole model still differs
slightly (blocks of mixed widths share caches differently, the runtime fuses across the
embedding); a line `measured = scale * raw + offset`, fitted on whole models measured on the
same device, absorbs that residual; it starts from the whole models the builder measured into
the table and learns from every model `add`ed later. The interface is LinearMacsPredictor's, so
the pipeline can use either. Torch-free, so the API and agents can run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from budgetprune.schemas.arch import ArchSpec
from latency_tables.lookup import attention_ms, fixed_ms, in_model, mlp_ms, selector_ms
from latency_tables.schema import LatencyTable, WholeModelPoint
from vitprune.cost import token_stages, tokens_per_block

__all__ = [
    "LutPredictor",
    "Breakdown",
    "calibration_models",
    "table_breakdown",
    "check_fits",
    "monotone",
]


@dataclass(frozen=True)
class Breakdown:
    """The table's raw estimate of one spec, by part (milliseconds)."""

    fixed_ms: float
    attention_ms: list[float]
    mlp_ms: list[float]
    selector_ms: list[float]

    @property
    def total_ms(self) -> float:
        return self.fixed_ms + sum(self.attention_ms) + sum(self.mlp_ms) + sum(self.selector_ms)


def check_fits(table: LatencyTable, spec: ArchSpec) -> None:
    """Refuse a spec the table was not measured for (another model, image or head size)."""
    mine = (table.model, table.img_size, table.num_classes)
    theirs = (spec.model, spec.img_size, spec.num_classes)
    if mine != theirs:
        raise ValueError(
            f"the table is for (model, img_size, num_classes) = {mine}, the spec is {theirs}; "
            "build a table for it with `budgetprune lut build`"
        )


def table_breakdown(
    table: LatencyTable, spec: ArchSpec, memo: dict[tuple[int, ...], float] | None = None
) -> Breakdown:
    """`memo` keeps block costs between calls on one table: a greedy search prices tens of
    thousands of specs that differ from each other in one block."""
    check_fits(table, spec)
    info = spec.info
    counts = tokens_per_block(spec)
    memo = {} if memo is None else memo
    attn, mlp = [], []
    for blk, n in zip(spec.blocks, counts, strict=True):
        a_key, m_key = (n, len(blk.heads), blk.qk_dim, blk.v_dim), (n, blk.mlp_hidden)
        if blk.attn and a_key not in memo:
            memo[a_key] = attention_ms(table, *a_key) * in_model(table, n)
        if blk.mlp and m_key not in memo:
            memo[m_key] = mlp_ms(table, *m_key) * in_model(table, n)
        attn.append(memo[a_key] if blk.attn else 0.0)
        mlp.append(memo[m_key] if blk.mlp else 0.0)
    selectors = [
        selector_ms(
            table,
            info.num_prefix_tokens + s.num_patches + int(s.has_package),
            s.make_package or s.has_package,
        )
        for s in token_stages(spec)
    ]
    full = info.num_prefix_tokens + info.num_patches(spec.img_size)
    return Breakdown(fixed_ms(table, counts[-1], full), attn, mlp, selectors)


def monotone(table: LatencyTable) -> LatencyTable:
    """The table with every cost made non-decreasing in tokens, heads, dims and neurons.

    Measured grids are noisy where blocks are cheap (a few tokens, tens of microseconds), and a
    grid point that reads lower than a smaller one tells a search that removing a head costs
    time: NetAdapt then finds nothing to remove. More work never takes less time, so each
    axis gets its running maximum (the noise is bounded by the neighbours instead)."""

    def up(values: list, axes: tuple[int, ...]) -> list:
        arr = np.asarray(values, dtype=float)
        for axis in axes:
            arr = np.maximum.accumulate(arr, axis=axis)
        return arr.tolist()

    att, mlp = table.attention, table.mlp
    update: dict[str, object] = {
        "attention": att.model_copy(
            update={
                "qk_ms": up(att.qk_ms, (2, 1, 0)),
                "v_ms": up(att.v_ms, (2, 1, 0)),
                "diag_ms": None if att.diag_ms is None else up(att.diag_ms, (2, 1, 0)),
            }
        ),
        "mlp": mlp.model_copy(update={"ms": up(mlp.ms, (1, 0))}),
        "head": table.head.model_copy(update={"ms": up(table.head.ms, (0,))}),
    }
    if table.selector is not None:
        sel = table.selector
        update["selector"] = sel.model_copy(
            update={"ms": up(sel.ms, (0,)), "package_ms": up(sel.package_ms, (0,))}
        )
    return table.model_copy(update=update)


@dataclass
class LutPredictor:
    """ms = scale * table sum + offset.

    The table's sampled whole models (measured when it was built, at its statistic) fit the
    base line. A job then `add`s what it measures on the device now, at its own percentile: one
    point rescales the base line by measured / expected (the device drifted since the build, or
    the job reads p90 where the table holds p50); two or more points that span a range fit the
    line on the job's points alone. Mixing the two kinds in one fit would mix days and
    percentiles.

    "Expected" is the base line's prediction, except for a model the table measured whole (a
    job's dense baseline is one): there it is that build-time measurement, so the ratio is the
    device's drift alone and not also the base line's own error at that model. Rescaling by
    the raw ratio at the dense model moved every prediction by the line's error at the dense
    end: on the 2026-12-05 benchmark (50 held-out deit_tiny specs) 26% within 5% after
    rescaling, against 90% when the dense model's build-time time is the reference."""

    table: LatencyTable
    use_table_models: bool = True
    # the job's (position on the base line's axis, measured); see `_position`
    points: list[tuple[float, float]] = field(default_factory=list)
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        self.table = monotone(self.table)
        self._memo: dict[tuple[int, ...], float] = {}
        base = (
            [(self.raw(p.arch), p.measured_ms) for p in calibration_models(self.table)]
            if self.use_table_models
            else []
        )
        self.base_scale, self.base_offset = _fit_line(base) if base else (1.0, 0.0)
        self._at_build = {p.arch.sha256(): p.measured_ms for p in self.table.whole_models}
        self._fit()

    def raw(self, spec: ArchSpec) -> float:
        return table_breakdown(self.table, spec, self._memo).total_ms

    def restore(self, points: list[tuple[float, float]] | list[list[float]]) -> None:
        """Reload the points a previous attempt of the same job measured."""
        self.points = [(float(t), float(ms)) for t, ms in points]
        self._fit()

    def add(self, spec: ArchSpec, measured_ms: float) -> None:
        self.points.append((self._position(spec), measured_ms))
        self._fit()

    def _position(self, spec: ArchSpec) -> float:
        """Where `spec` sits on the base line's axis: its table sum, or, for a model the table
        measured whole, the sum the base line would map to that measurement."""
        known = self._at_build.get(spec.sha256())
        if known is None or not self.use_table_models:
            return self.raw(spec)
        return (known - self.base_offset) / self.base_scale

    def _fit(self) -> None:
        xs = [x for x, _ in self.points]
        if len(self.points) >= 2 and max(xs) - min(xs) > 0.05 * max(max(xs), 1e-9):
            self.scale, self.offset = _fit_line(self.points)
            return
        scale, offset = self.base_scale, self.base_offset
        if self.points:
            ratios = [y / (scale * x + offset) for x, y in self.points if scale * x + offset > 0]
            r = float(np.median(ratios)) if ratios else 1.0
            scale, offset = r * scale, r * offset
        self.scale, self.offset = scale, offset

    def predict(self, spec: ArchSpec) -> float:
        return self.scale * self.raw(spec) + self.offset

    def describe(self) -> dict[str, object]:
        t = self.table
        return {
            "kind": "lookup-table",
            "model": t.model,
            "img_size": t.img_size,
            "device": t.device.model_dump(mode="json"),
            "statistic": t.statistic,
            "scale": self.scale,
            "offset_ms": self.offset,
            "table_line": {"scale": self.base_scale, "offset_ms": self.base_offset},
            "points": [{"table_ms": r, "measured_ms": m} for r, m in self.points],
        }


def calibration_models(table: LatencyTable) -> list[WholeModelPoint]:
    """The whole models the base line is fitted on: the random sub-networks, which look like
    what jobs ask about. The two ends read differently (the dense model is all full, grid-aligned
    widths; the smallest all per-op overhead) and, weighted by relative error, pulled the line
    off the middle: on the 2026-12-04 benchmark (bench/README.md) the line fitted on the table's
    4 samples alone puts 73% of the 30 held-out models within 5% (median error 3.4%), the line
    on all 6 points 50% (4.9%). Tables built before roles were recorded mark no ends and keep
    every point."""
    samples = [p for p in table.whole_models if p.role == "sample"]
    return samples if len(samples) >= 2 else list(table.whole_models)


def _fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares on RELATIVE error (rows weighted by 1/measured): the accuracy that matters
    is a percentage of each model's latency, not of the largest one's."""
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    if len(x) == 1 or np.ptp(x) < 1e-9 * max(x.max(), 1.0):
        return float(np.sum(y / x) / len(x)), 0.0
    a = np.stack([x, np.ones_like(x)], axis=1) / y[:, None]
    scale, offset = np.linalg.lstsq(a, np.ones_like(y), rcond=None)[0]
    if scale <= 0:  # noise tilted the line; latency never falls with more work
        return float(np.mean(y / x)), 0.0
    return float(scale), float(offset)

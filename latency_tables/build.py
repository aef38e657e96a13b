"""Measure a latency lookup table through a Measurer: locally, or on a device agent.

Every number comes from an ONNX graph sent through `Measurer.measure`, the same call the
pipeline uses for whole models, so a table can be built on any device an agent serves. Blocks
are costed in context, by the slope of latency over stacks of 1..k identical blocks; single
graphs (selector, head, embedding) have a trivial graph's run overhead subtracted. At the end
a few whole models are measured: their table sums check the table and calibrate the predictor.
Before them, models of full-width blocks at each token count price a block inside a whole model
against its stack entries (`BlockContext`). Build times are in bench/README.md ("Latency
predictor accuracy").
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from budgetprune.catalog import ModelInfo, get_model_info
from budgetprune.errors import MeasurementError
from budgetprune.schemas.arch import ArchSpec, BlockSpec, TokenSpec
from budgetprune.schemas.measurement import DeviceFingerprint, MeasureProtocol
from latency_tables import microbench as mb
from latency_tables.compact import compact
from latency_tables.lookup import attention_ms, mlp_ms
from latency_tables.predictor import table_breakdown
from latency_tables.schema import (
    AttentionGrid,
    BlockContext,
    Curve,
    DriftReading,
    LatencyTable,
    MlpGrid,
    SelectorGrid,
    Statistic,
    WholeModelPoint,
)
from latency_tables.side_by_side import between_references
from vitprune.export import export_onnx
from vitprune.extract import extract_subnet
from vitprune.models import create_model
from vitprune.sample import sample_arch
from worker.measurers import Measurer

__all__ = [
    "TableGrid",
    "build_table",
    "measure_context",
    "sample_level",
    "table_protocol",
    "smallest_spec",
]

Progress = Callable[[str], None]

DRIFT_WINDOW = 5  # reference readings a speed estimate is the median of
DRIFT_DEADBAND = 0.03  # speed changes smaller than this are taken as the reading's noise
WHOLE_RUNS = 200  # runs a whole model gets over its rounds: the least any is timed with
REFERENCE_RUNS = 50  # runs of one timing of the model the others are timed between


class TableGrid(BaseModel):
    """Where the table is measured, as fractions of the model's full sizes."""

    model_config = ConfigDict(extra="forbid")

    token_fractions: list[float] = Field(
        default=[1.0, 0.75, 0.5, 0.33, 0.2, 0.1, 0.03], description="of the patch tokens"
    )
    dim_fractions: list[float] = Field(
        default=[0.125, 0.25, 0.5, 1.0],
        description="of the head dim; 0.75 left out: 23% of the attention graphs, and "
        "interpolating it moved 300 random deit_small predictions by 0.08% (median), 1.4% (max)",
    )
    hidden_fractions: list[float] = Field(
        default=[1 / 96, 1 / 24, 1 / 12, 1 / 6, 1 / 3, 1 / 2, 2 / 3, 5 / 6, 1.0]
    )
    max_head_points: int = Field(6, ge=2, description="head counts measured (evenly spread)")
    stack_depths: list[int] = Field(default=[1, 3], min_length=2)
    deep_stack: int = Field(
        12,
        ge=0,
        description="a further stack depth, timed where the deepest of `stack_depths` adds less "
        "over the shallowest than the shallowest's graph takes (0: never); see `_Bench.slope`",
    )
    evict_bytes: int = Field(8 << 20, ge=0, description="weights every graph streams (0: none)")
    whole_models: int = Field(
        8, ge=0, description="random sub-networks measured whole, spread over the keep levels"
    )
    width_multiple: int = Field(8, ge=1, description="of the random whole models' widths")
    reference_every: int = Field(
        24, ge=0, description="graphs between two timings of the reference graph (0: none)"
    )
    whole_rounds: int = Field(
        2,
        ge=1,
        description="passes over the whole models, each timed between two timings of the "
        "dense model",
    )
    context_rounds: int = Field(
        2,
        ge=0,
        description="rounds of the models that price full-width blocks inside a whole model "
        "at each token count (`BlockContext`; 0: none)",
    )

    def tokens(self, info: ModelInfo, img_size: int) -> list[int]:
        patches = info.num_patches(img_size)
        kept = {max(1, round(f * patches)) for f in self.token_fractions}
        return sorted(info.num_prefix_tokens + k for k in kept)

    def heads(self, info: ModelInfo) -> list[int]:
        n = min(self.max_head_points, info.num_heads)
        return sorted({round(1 + i * (info.num_heads - 1) / max(n - 1, 1)) for i in range(n)})

    def dims(self, info: ModelInfo) -> list[int]:
        return _widths(self.dim_fractions, info.head_dim)

    def hidden(self, info: ModelInfo) -> list[int]:
        return _widths(self.hidden_fractions, info.mlp_hidden)


def _widths(fractions: list[float], full: int) -> list[int]:
    """Fractions of `full` as multiples of 8 where possible (the widths the engine produces)."""
    step = 8 if full >= 16 else 1
    out = {min(full, max(step, round(f * full / step) * step)) for f in fractions}
    return sorted(out | {full})


def sample_level(i: int, n: int) -> float:
    """Keep level of the i-th of n calibration sub-networks: evenly spread from small to nearly
    dense, so the calibration line sees the whole latency range (random levels can bunch)."""
    return 0.1 + 0.85 * (i + 0.5) / n


def table_protocol(threads: int, batch_size: int = 1) -> MeasureProtocol:
    """Short batches (graphs are many and small), repeated until their p50s agree within 5%."""
    return MeasureProtocol(
        warmup=10,
        runs=40,
        max_batches=3,
        stability_tolerance=0.05,
        threads=threads,
        batch_size=batch_size,
    )


def smallest_spec(model: str, img_size: int, num_classes: int) -> ArchSpec:
    """One head of 8 qk/v dims and 8 neurons per block: the low end of what the engine builds."""
    block = BlockSpec(heads=[0], qk_dim=8, v_dim=8, mlp_hidden=8)
    info = get_model_info(model)
    return ArchSpec(
        model=model,
        img_size=img_size,
        num_classes=num_classes,
        blocks=[block.model_copy() for _ in range(info.depth)],
    )


class _Bench:
    """Exports graphs and measures them through the measurer; one device for the whole table.

    A shared host's speed moves during a build (on a 2-vCPU VM, a whole slice of attention
    entries read 19% slow in one build and not in the next, while whole models timed minutes
    apart agreed within 0.5%: bench/README.md). So a fixed reference graph (one dense block)
    is timed every `reference_every` graphs and before each whole model, and every timing is
    divided by `speed`: the table is in the units of the device's speed at the start of its
    build, whatever the host did in between."""

    def __init__(
        self,
        measurer: Measurer,
        protocol: MeasureProtocol,
        statistic: Statistic,
        work_dir: Path,
        dim: int,
        evict_bytes: int,
        reference_every: int = 0,
    ) -> None:
        self.measurer = measurer
        self.protocol = protocol
        self.statistic = statistic
        self.work_dir = work_dir
        self.dim = dim
        self.evict_bytes = evict_bytes
        self.reference_every = reference_every
        self.reference: tuple[Path, list[int]] | None = None
        self.drift: list[DriftReading] = []
        self.device: DeviceFingerprint | None = None
        self.count = 0
        self.sent: dict[str, int] = {}  # bytes by file hash: an agent fetches each file once

    def set_reference(self, module: nn.Module, input_shape: list[int]) -> None:
        if self.reference_every:
            path = mb.export_graph(
                self._evicting(module), self.work_dir / "reference.onnx", input_shape
            )
            self.reference = (path, input_shape)
            self.read_reference()

    def read_reference(self) -> None:
        if self.reference is not None:
            path, shape = self.reference
            self.drift.append(DriftReading(after=self.count, ms=self._time(path, shape)))

    @property
    def speed(self) -> float:
        """How much slower the device reads now than at the start of the build: the median of
        the latest `DRIFT_WINDOW` readings over that of the first ones, 1.0 inside the dead
        band. One reading of the reference scatters about 3% on a quiet host; scaling by it
        would add that noise to every entry, while a slow stretch that lasts shows in the
        median."""
        ms = [r.ms for r in self.drift]
        if len(ms) < 2:
            return 1.0
        ratio = float(np.median(ms[-DRIFT_WINDOW:]) / np.median(ms[:DRIFT_WINDOW]))
        return ratio if abs(ratio - 1.0) > DRIFT_DEADBAND else 1.0

    def _evicting(self, module: nn.Module) -> nn.Module:
        return mb.Evicting(module, self.dim, self.evict_bytes) if self.evict_bytes else module

    def ms(self, module: nn.Module, input_shape: list[int], *, evict: bool = True) -> float:
        module = self._evicting(module) if evict else module
        path = mb.export_graph(module, self.work_dir / f"g{self.count}.onnx", input_shape)
        return self._measure(path, input_shape)

    def _measure(
        self, path: Path, input_shape: list[int], protocol: MeasureProtocol | None = None
    ) -> float:
        """One graph, in the units of the device's speed at the start of the build."""
        ms = self._timed(path, input_shape, protocol)
        path.unlink(missing_ok=True)
        return ms

    def _timed(
        self, path: Path, input_shape: list[int], protocol: MeasureProtocol | None = None
    ) -> float:
        if self.drift and self.count - self.drift[-1].after >= self.reference_every:
            self.read_reference()
        ms = self._time(path, input_shape, protocol)
        self.count += 1
        return ms / self.speed

    def _time(
        self, path: Path, input_shape: list[int], protocol: MeasureProtocol | None = None
    ) -> float:
        result = self.measurer.measure(path, protocol or self.protocol, input_shape)
        # keyed by the hash the device reports for what it ran: a graph sent again (the drift
        # reference, the dense model between whole models) is counted once, as an agent's model
        # cache downloads it once, and the file is not read again to hash it here
        self.sent.setdefault(result.model_sha256, path.stat().st_size)
        where = result.device.model_dump(exclude={"input_shape"})
        if self.device is None:
            self.device = result.device
        elif where != self.device.model_dump(exclude={"input_shape"}):
            raise MeasurementError(
                "the table's graphs were measured on different devices or settings: "
                f"{self.device.model_dump()} then {result.device.model_dump()}"
            )
        return float(getattr(result.stats, self.statistic))

    def _whole_graph(self, model: nn.Module, spec: ArchSpec, name: str, batch_size: int) -> Path:
        """The sub-network of `model` at `spec`, exported to the work folder and compacted: it
        is only timed."""
        path = self.work_dir / name
        subnet = extract_subnet(model, spec)
        export_onnx(subnet, path, img_size=spec.img_size, batch_size=batch_size)
        compact(path)
        return path

    def wholes(
        self, model: nn.Module, specs: list[ArchSpec], batch_size: int, rounds: int
    ) -> tuple[list[float], list[list[float]]]:
        """Whole models, `specs[0]` the dense one: each timed between two timings of the dense
        model, `rounds` times over, and put at its median ratio to the dense model times the
        dense model's median time. A slow phase of a shared host that outlasts one model hits
        the dense timings around it alike, so the calibration line and the dense anchor a job
        rescales on read one speed: timed one after another instead, the dense model read 2.8%
        slower than the line through the samples put it (30.15 against 29.31 ms) and every
        job's prediction came out 3.7% low (bench/README.md, 2026-12-06). Returns the times
        and each model's ratios (the dense model's: its timings over their median)."""
        shape = [batch_size, 3, specs[0].img_size, specs[0].img_size]
        paths = []
        for i, spec in enumerate(specs):
            paths.append(self._whole_graph(model, spec, f"whole{i}.onnx", batch_size))
        dense, ratios = self.side_by_side(paths[1:], paths[0], shape, rounds)
        dense_ms = float(np.median(dense))
        for path in paths:
            path.unlink()
        return (
            [dense_ms] + [float(np.median(r)) * dense_ms for r in ratios],
            [[ms / dense_ms for ms in dense], *ratios],
        )

    def side_by_side(
        self, paths: list[Path], reference: Path, shape: list[int], rounds: int
    ) -> tuple[list[float], list[list[float]]]:
        """`between_references` for whole models: each of `paths` timed with `WHOLE_RUNS` runs
        over the rounds, the reference with `REFERENCE_RUNS` a timing (it is timed once per
        model and round), one batch after at most 3 warm-up runs a timing. The reference's
        timings were the largest part of a deit_small build (19 of 110 runs at about 100 ms:
        some 210 of 777 s on an AMD host), and the host's speed, not the sample, is what
        moves a ratio there: a model's two rounds differed by up to 10% (0.308 against 0.339
        of the dense model) while consecutive 50-run p50s of the dense model spread 2.8% over
        400 runs (100-run ones 1.6%), and ONNX Runtime's first run after loading is already
        at speed (deit_small: 95 ms, then 95-106 ms)."""

        def timing(runs: int) -> MeasureProtocol:
            update = {"warmup": min(self.protocol.warmup, 3), "runs": runs, "max_batches": 1}
            return self.protocol.model_copy(update=update)

        model = timing(max(self.protocol.runs, math.ceil(WHOLE_RUNS / rounds)))
        ref = timing(max(self.protocol.runs, REFERENCE_RUNS))
        return between_references(
            lambda path: self._timed(path, shape, ref if path == reference else model),
            paths,
            reference,
            rounds,
        )

    def context(
        self, model: nn.Module, table: LatencyTable, batch_size: int, rounds: int
    ) -> BlockContext:
        """What a full-width block costs inside a whole model, over the table's entry for it, at
        each of the table's token counts. Two models per count, a selector in front of block 0
        cutting the tokens to that count: one with every block and one with a single block,
        run as deployed models run (no sweep). The short one is timed between two timings of
        the long one, `rounds` times, so the difference is read at one speed of the host: the
        first try took the slope of two timings minutes apart, and on a noisy host that slope
        was mostly noise (bench/README.md, 2026-12-06)."""
        full = ArchSpec.dense(table.model, table.img_size, table.num_classes)
        info, blocks = full.info, full.blocks
        patches = info.num_patches(table.img_size)
        image = [batch_size, 3, table.img_size, table.img_size]
        gone = BlockSpec(attn=False, mlp=False)
        b = blocks[0]
        factors = []
        for n in table.attention.tokens:
            kept = n - info.num_prefix_tokens
            cut = (
                TokenSpec(keep={0: kept / patches}, package_token=False) if kept < patches else None
            )
            paths = []
            for depth in (len(blocks), 1):
                spec = full.model_copy(
                    update={
                        "blocks": blocks[:depth] + [gone] * (len(blocks) - depth),
                        "tokens": cut,
                    }
                )
                paths.append(self._whole_graph(model, spec, f"context{depth}.onnx", batch_size))
            deep, [ratios] = self.side_by_side(paths[1:], paths[0], image, rounds)
            for path in paths:
                path.unlink()
            per_block = float(np.median(deep)) * (1 - float(np.median(ratios))) / (len(blocks) - 1)
            entry = attention_ms(table, n, len(b.heads), b.qk_dim, b.v_dim) + mlp_ms(
                table, n, b.mlp_hidden
            )
            factors.append(max(per_block, 1e-3 * entry) / entry)
        return BlockContext(tokens=table.attention.tokens, factor=factors, depths=[1, len(blocks)])

    def slope(
        self,
        make: Callable[[int], nn.Module],
        input_shape: list[int],
        depths: list[int],
        deep: int = 0,
    ) -> float:
        """Per-block cost: least-squares slope of latency over stack depth.

        Where the blocks added over the shallowest stack cost less than that stack's graph (its
        cache sweep and run overhead), the slope is mostly the graphs' noise: a 32-pixel
        deit_tiny table reads blocks of 3-200 us from graphs of ~100 us, and in two builds on
        one host 24% and 14% of its neighbouring entries fell as tokens, heads, dims or neurons
        were added (the searches that price cuts by the table then cut the wrong units). There
        a stack of `deep` blocks is timed too: 2.5% and 7% fell, and two builds' entries
        differed by 10% (median) instead of 16% (bench/README.md, 2026-12-07)."""
        t = [self.ms(make(k), input_shape) for k in depths]
        if deep > depths[-1] and t[-1] - t[0] < t[0]:
            depths = [*depths, deep]
            t.append(self.ms(make(deep), input_shape))
        # a block cheaper than the timing noise can come out negative: it costs ~nothing (the
        # deepest stack over its depth would charge it the graph's sweep and run overhead)
        return max(0.0, float(np.polyfit(depths, t, 1)[0]))


def build_table(
    model: str,
    img_size: int,
    measurer: Measurer,
    threads: int,
    *,
    num_classes: int | None = None,
    batch_size: int = 1,
    protocol: MeasureProtocol | None = None,
    statistic: Statistic = "p50_ms",
    grid: TableGrid | None = None,
    work_dir: Path | None = None,
    progress: Progress | None = None,
    seed: int = 0,
) -> LatencyTable:
    """Measure the lookup table of `model` at `img_size` with `measurer` (its runtime, `threads`
    compute threads, batch `batch_size`); the table records how long this took."""
    started = time.monotonic()
    info = get_model_info(model)
    grid = grid or TableGrid()
    protocol = protocol or table_protocol(threads, batch_size)
    if protocol.threads != threads or protocol.batch_size != batch_size:
        raise ValueError("the protocol's threads and batch size must be the table's")
    say = progress or (lambda _msg: None)
    torch.manual_seed(seed)
    dense = create_model(model, img_size=img_size, num_classes=num_classes)
    num_classes = dense.num_classes
    block = dense.blocks[0]
    d, b = info.embed_dim, batch_size
    tokens = grid.tokens(info, img_size)
    heads, dims, hidden = grid.heads(info), grid.dims(info), grid.hidden(info)
    depths, deep = grid.stack_depths, grid.deep_stack

    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        bench = _Bench(
            measurer, protocol, statistic, Path(tmp), d, grid.evict_bytes, grid.reference_every
        )
        bench.set_reference(mb.TokenStack([copy.deepcopy(block)]).eval(), [b, tokens[-1], d])
        overhead = [bench.ms(mb.overhead_graph(), [b, n, d]) for n in tokens]
        say(f"overhead: {dict(zip(tokens, overhead, strict=True))}")

        full = info.head_dim

        def attention(n: int, h: int, qk_dim: int, v_dim: int) -> float:
            return bench.slope(
                lambda depth: mb.attention_stack(
                    block, heads=h, qk_dim=qk_dim, v_dim=v_dim, depth=depth
                ),
                [b, n, d],
                depths,
                deep,
            )

        qk_ms = [[[0.0] * len(dims) for _ in heads] for _ in tokens]
        v_ms = [[[0.0] * len(dims) for _ in heads] for _ in tokens]
        diag_ms = [[[0.0] * len(dims) for _ in heads] for _ in tokens]
        for i, n in enumerate(tokens):
            for j, h in enumerate(heads):
                for k, dim in enumerate(dims):
                    qk_ms[i][j][k] = attention(n, h, dim, full)
                    if dim == full:  # the three slices' shared point: one graph
                        v_ms[i][j][k] = diag_ms[i][j][k] = qk_ms[i][j][k]
                    else:
                        v_ms[i][j][k] = attention(n, h, full, dim)
                        diag_ms[i][j][k] = attention(n, h, dim, dim)
            say(
                f"attention at {n} tokens: {bench.count} graphs, {time.monotonic() - started:.0f} s"
            )
        attention = AttentionGrid(
            tokens=tokens, heads=heads, dims=dims, qk_ms=qk_ms, v_ms=v_ms, diag_ms=diag_ms
        )

        mlp_ms = [
            [
                bench.slope(
                    lambda depth, k=k: mb.mlp_stack(block, hidden=k, depth=depth),
                    [b, n, d],
                    depths,
                    deep,
                )
                for k in hidden
            ]
            for n in tokens
        ]
        say(f"mlp: {bench.count} graphs, {time.monotonic() - started:.0f} s")

        def single(module: nn.Module, i: int, n: int) -> float:
            return max(0.0, bench.ms(module, [b, n, d]) - overhead[i])

        sel_tokens, sel_ms, sel_pkg = [], [], []
        for i, n in enumerate(tokens):
            patches = n - info.num_prefix_tokens
            if patches < 2:
                continue
            keep = max(1, math.ceil(patches / 2))
            common = {"num_prefix": info.num_prefix_tokens, "num_patches": patches, "keep": keep}
            sel_tokens.append(n)
            sel_ms.append(single(mb.selector_graph(block, package=False, **common), i, n))
            sel_pkg.append(single(mb.selector_graph(block, package=True, **common), i, n))
        selector = (
            SelectorGrid(tokens=sel_tokens, ms=sel_ms, package_ms=sel_pkg) if sel_tokens else None
        )
        head = Curve(
            tokens=tokens, ms=[single(mb.head_graph(dense), i, n) for i, n in enumerate(tokens)]
        )
        image = [b, 3, img_size, img_size]
        patch_embed = max(0.0, bench.ms(mb.embed_graph(dense), image) - overhead[-1])
        sweep = overhead[-1] - bench.ms(mb.overhead_graph(), [b, tokens[-1], d], evict=False)
        fixed = bench.ms(mb.no_block_model(dense), image) - max(0.0, sweep)
        say(f"selector, head, embedding: {bench.count} graphs, {time.monotonic() - started:.0f} s")

        table = LatencyTable(
            model=model,
            img_size=img_size,
            num_classes=num_classes,
            batch_size=batch_size,
            device=_device(bench),
            protocol=protocol,
            statistic=statistic,
            stack_depths=depths,
            deep_stack=deep,
            built_at=datetime.now(UTC),
            build_seconds=0.0,
            measurements=bench.count,
            evict_bytes=grid.evict_bytes,
            fixed_ms=fixed,
            patch_embed_ms=patch_embed,
            head=head,
            overhead=Curve(tokens=tokens, ms=overhead),
            attention=attention,
            mlp=MlpGrid(tokens=tokens, hidden=hidden, ms=mlp_ms),
            selector=selector,
        )
        if grid.context_rounds:
            context = bench.context(dense, table, batch_size, grid.context_rounds)
            table = table.model_copy(update={"context": context})
            say(
                f"blocks in whole models: x{', x'.join(f'{f:.2f}' for f in context.factor)} at "
                f"{context.tokens} tokens; {bench.count} graphs, "
                f"{time.monotonic() - started:.0f} s"
            )
        specs = [
            ("dense", ArchSpec.dense(model, img_size, num_classes)),
            ("smallest", smallest_spec(model, img_size, num_classes)),
        ]
        specs += [
            (
                "sample",
                sample_arch(
                    model,
                    seed=10**6 + seed + s,
                    img_size=img_size,
                    num_classes=num_classes,
                    width_multiple=grid.width_multiple,
                    tokens=selector is not None,
                    level=sample_level(s, grid.whole_models),
                ),
            )
            for s in range(grid.whole_models)
        ]
        times, ratios = bench.wholes(
            dense, [spec for _, spec in specs], batch_size, grid.whole_rounds
        )
        points = []
        for (role, spec), measured, rounds in zip(specs, times, ratios, strict=True):
            points.append(
                WholeModelPoint(
                    arch=spec,
                    measured_ms=measured,
                    table_ms=table_breakdown(table, spec).total_ms,
                    role=role,
                    over_dense=rounds,
                )
            )
            say(
                f"whole model {spec.summary()}: measured {measured:.3f} ms, "
                f"table {points[-1].table_ms:.3f} ms"
            )
    return table.model_copy(
        update={
            "whole_models": points,
            "measurements": bench.count,
            "graph_bytes": sum(bench.sent.values()),
            "build_seconds": time.monotonic() - started,
            "device": _device(bench),
            "drift": bench.drift,
        }
    )


def measure_context(
    table: LatencyTable,
    measurer: Measurer,
    *,
    rounds: int = 2,
    seed: int = 0,
    work_dir: Path | None = None,
) -> BlockContext:
    """`table`'s blocks priced inside whole models on `measurer`'s device (the table's protocol
    and statistic), for a table built without it or to re-measure it."""
    torch.manual_seed(seed)
    model = create_model(table.model, img_size=table.img_size, num_classes=table.num_classes)
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        bench = _Bench(measurer, table.protocol, table.statistic, Path(tmp), 0, 0)
        return bench.context(model, table, table.batch_size, rounds)


def _device(bench: _Bench) -> DeviceFingerprint:
    if bench.device is None:
        raise MeasurementError("no graph was measured")
    return bench.device.model_copy(update={"input_shape": []})

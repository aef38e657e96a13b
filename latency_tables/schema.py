"""The latency lookup table: measured block latencies of one model family on one device.

A table is only valid for the exact conditions it was measured under, so it carries them all
(the agent's full fingerprint, runtime and version, threads, batch size, the protocol and the
statistic) and `store.table_key` files it under them. Values are per-block costs taken from the
slope over stacks of identical blocks (see `build.py`), in milliseconds. Torch-free.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from budgetprune.schemas.arch import ArchSpec
from budgetprune.schemas.measurement import DeviceFingerprint, MeasureProtocol

__all__ = [
    "SCHEMA_VERSION",
    "Statistic",
    "Curve",
    "AttentionGrid",
    "MlpGrid",
    "SelectorGrid",
    "BlockContext",
    "WholeModelPoint",
    "DriftReading",
    "LatencyTable",
]

SCHEMA_VERSION = 1

Statistic = Literal["p50_ms", "p90_ms", "mean_ms", "min_ms"]


def _shape(name: str, values: list, dims: tuple[int, ...]) -> None:
    """Refuse a nested list whose shape differs from the axes it is indexed by."""
    if len(values) != dims[0]:
        raise ValueError(f"{name}: {len(values)} rows for an axis of {dims[0]}")
    if len(dims) > 1:
        for row in values:
            _shape(name, row, dims[1:])


def _ascending(name: str, axis: list[int]) -> None:
    if not axis or any(b <= a for a, b in zip(axis, axis[1:], strict=False)):
        raise ValueError(f"{name} must be a non-empty, strictly ascending grid, got {axis}")


class Curve(BaseModel):
    """Milliseconds as a function of the token count, interpolated linearly."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[int]
    ms: list[float]

    @model_validator(mode="after")
    def _check(self) -> Curve:
        _ascending("tokens", self.tokens)
        _shape("ms", self.ms, (len(self.tokens),))
        return self


class AttentionGrid(BaseModel):
    """Attention branch (norm1, qkv, scores, softmax, values, proj, residual) per block.

    Slices through the (tokens, heads, qk_dim, v_dim) space: `qk_ms[n][h][i]` varies qk_dim =
    dims[i] with v_dim full, `v_ms` varies v_dim with qk_dim full, and `diag_ms` both together
    (qk_dim = v_dim = dims[i]). The costs do not add: q, k and v come out of one qkv matmul,
    and narrow ones hit each kernel's floor, so adding the two slices' savings read a block at
    16/16 dims 2.5x too cheap at 65 tokens (bench/README.md, 2026-12-06). With the diagonal the
    predictor is exact on all three slices and linear in the wider width between them.
    """

    model_config = ConfigDict(extra="forbid")

    tokens: list[int]
    heads: list[int]
    dims: list[int]
    qk_ms: list[list[list[float]]]
    v_ms: list[list[list[float]]]
    diag_ms: list[list[list[float]]] | None = Field(
        None, description="qk_dim = v_dim = dims[i]; None in tables built before it was measured"
    )

    @model_validator(mode="after")
    def _check(self) -> AttentionGrid:
        for name in ("tokens", "heads", "dims"):
            _ascending(name, getattr(self, name))
        shape = (len(self.tokens), len(self.heads), len(self.dims))
        _shape("qk_ms", self.qk_ms, shape)
        _shape("v_ms", self.v_ms, shape)
        return self


class MlpGrid(BaseModel):
    """MLP branch (norm2, fc1, GELU, fc2, residual) per block: `ms[n][i]` at hidden[i]."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[int]
    hidden: list[int]
    ms: list[list[float]]

    @model_validator(mode="after")
    def _check(self) -> MlpGrid:
        _ascending("tokens", self.tokens)
        _ascending("hidden", self.hidden)
        _shape("ms", self.ms, (len(self.tokens), len(self.hidden)))
        return self


class SelectorGrid(BaseModel):
    """Token selector in front of a block, by incoming token count; with and without merging the
    dropped tokens into a package token. Measured at about half the patches kept: its cost is
    dominated by the norm and scores over all incoming tokens."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[int]
    ms: list[float]
    package_ms: list[float]

    @model_validator(mode="after")
    def _check(self) -> SelectorGrid:
        _ascending("tokens", self.tokens)
        _shape("ms", self.ms, (len(self.tokens),))
        _shape("package_ms", self.package_ms, (len(self.tokens),))
        return self


class BlockContext(BaseModel):
    """What a block costs inside a whole model over what the table's stacks charge for it, by
    token count.

    A stack is exact copies of a block behind a cache sweep, and the exporter merges their
    equal weights into one set, so its deeper blocks read them warm; a whole model is twelve
    different blocks, an embedding and a head, whose weights and activations meet the caches
    and the runtime's memory plan differently (copies with weights of their own measured
    x1.37-1.50 per block at 13 tokens on deit_small, and left this factor flat at x0.91-0.95:
    bench/README.md, "Stacks share their weights"). The gap grows as the tokens shrink: on a
    2-vCPU Xeon, x1.12 at 197 tokens and x1.60 at 7 for deit_small, and held-out specs that
    prune tokens hard and early read 11-16% low without it and within 6% with it (the common
    part of the gap goes into the calibration line either way; bench/README.md, 2026-12-06
    evening). Measured on models of full-width blocks behind a token cut, as the time of all
    blocks against one block (`depths`), the short model timed between two timings of the
    long one."""

    model_config = ConfigDict(extra="forbid")

    tokens: list[int]
    factor: list[float] = Field(description="in-model per-block cost over the table's, per count")
    depths: list[int] = Field(description="block counts of the whole models the slope is over")

    @model_validator(mode="after")
    def _check(self) -> BlockContext:
        _ascending("tokens", self.tokens)
        _shape("factor", self.factor, (len(self.tokens),))
        if any(f <= 0 for f in self.factor):
            raise ValueError("context factors must be positive")
        return self


class WholeModelPoint(BaseModel):
    """A whole sub-network measured on the same device: calibration and the table's check."""

    model_config = ConfigDict(extra="forbid")

    arch: ArchSpec
    measured_ms: float = Field(gt=0)
    table_ms: float = Field(description="the table's raw sum, before calibration")
    role: Literal["dense", "smallest", "sample"] = Field(
        "sample",
        description="sample: a random sub-network, what the calibration line is fitted on; "
        "dense and smallest: the two ends, kept as checks",
    )
    over_dense: list[float] | None = Field(
        None,
        description="its time over the dense model's timed around it, per round (the dense "
        "model: each timing over their median); measured_ms is the median ratio times the "
        "dense model's median time. None in tables built before whole models were interleaved",
    )


class DriftReading(BaseModel):
    """One timing of the build's reference graph, taken after `after` of the table's graphs."""

    model_config = ConfigDict(extra="forbid")

    after: int = Field(ge=0)
    ms: float = Field(gt=0)


class LatencyTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    model: str
    img_size: int
    num_classes: int
    batch_size: int = Field(ge=1)
    device: DeviceFingerprint = Field(description="the full fingerprint of the measuring agent")
    protocol: MeasureProtocol
    statistic: Statistic = "p50_ms"
    stack_depths: list[int] = Field(description="stacks of identical blocks; cost = slope")
    deep_stack: int = Field(
        0,
        ge=0,
        description="stack depth also timed where the others rose less than the shallowest's "
        "graph took (0: none; tables built before it)",
    )
    evict_bytes: int = Field(ge=0, description="weights each graph streamed to empty the caches")
    built_at: datetime
    build_seconds: float = Field(ge=0)
    measurements: int = Field(ge=0, description="ONNX graphs measured to build the table")
    graph_bytes: int = Field(
        0,
        ge=0,
        description="bytes of the distinct ONNX files the build sent to the device: what a "
        "remote agent downloads (0: tables built before it was counted)",
    )

    fixed_ms: float = Field(description="the model with no block: embedding, norm, head, I/O")
    patch_embed_ms: float
    head: Curve = Field(description="final norm and classifier by token count")
    overhead: Curve = Field(description="one run of a trivial graph: subtracted from single graphs")
    attention: AttentionGrid
    mlp: MlpGrid
    selector: SelectorGrid | None = None
    context: BlockContext | None = Field(
        None, description="blocks inside whole models (None: tables built before it; factor 1)"
    )
    whole_models: list[WholeModelPoint] = Field(default_factory=list)
    drift: list[DriftReading] = Field(
        default_factory=list,
        description="the reference graph, timed through the build; every value in the table "
        "is divided by the device's speed these readings show (latency_tables/build.py; "
        "empty: not corrected)",
    )

    @property
    def drift_ratio(self) -> float:
        """Slowest over fastest reading of the reference: how much the device's speed moved
        while the table was measured (1.0: not tracked)."""
        ms = [r.ms for r in self.drift]
        return max(ms) / min(ms) if ms else 1.0

    @property
    def runtime(self) -> str:
        return self.device.runtime

    @property
    def threads(self) -> int:
        return self.device.threads

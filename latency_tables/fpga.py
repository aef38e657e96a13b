"""Analytical latency of a ViT on an FPGA accelerator: a profile, since no board is attached.

The accelerator modelled is the common design of published ViT accelerators on FPGAs (e.g.
VAQF, Auto-ViT-Acc, HeatViT): one array of processing elements (PEs) that runs every matrix
product of the model in turn, weights streamed from off-chip DDR, activations kept in the on-chip
buffer while they fit. Per matrix product:

    compute = MACs / (pe_macs_per_cycle * utilisation * clock)
    memory  = (weight bytes + activation bytes that spill past the buffer) / bandwidth
    time    = max(compute, memory) + layer_overhead_cycles / clock      (double buffering)

plus, per block, the nonlinear units (softmax, LayerNorm, GELU) at `nonlinear_per_cycle`
elements a cycle, and a fixed cost per inference (image in, logits out, start-up). Everything
is in the profile's parameters; `utilisation` is the one fitted to a published latency
(`calibrate`). Estimates say `"measured": false` and name their profile, everywhere.

Calibration point (latency = 1 / frame rate, batch 1, 224x224):
- ZCU102 (`zcu102-int8`): VAQF, M. Sun et al., "VAQF: Fully Automatic Software-Hardware
  Co-Design Framework for Low-Bit Vision Transformer", arXiv:2201.06618 (2022): DeiT-base on the
  Xilinx ZCU102 meets 24 FPS with 8-bit activations and binary weights -> 41.7 ms. Checked in the
  paper's abstract. The clock and PE count are not in the abstract: 150 MHz and 4096 MAC units
  (binary-weight MACs are additions, built mostly from LUTs rather than the XCZU9EG's 2520 DSP
  slices) are our assumptions, and `utilisation` absorbs their error.
- Not used: Auto-ViT-Acc (Z. Li et al., FPL 2022, arXiv:2208.05163) reports DeiT-base at
  56.8 FPS (mixed-scheme quantisation) against 10.0 FPS for a 32-bit float baseline; we could not
  verify from what we could read which board those figures are for, so no profile rests on them.
- Kria KV260 (`kv260-int8`): datasheet parameters (XCK26: 1248 DSP slices, 144 BRAM36 and 64
  URAM blocks, 64-bit DDR4-2400) with 8-bit weights and the ZCU102 profile's utilisation. NO
  published ViT latency on this board was found to calibrate against: a rough guess, and its
  `calibration` field says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from budgetprune.schemas.arch import ArchSpec
from budgetprune.schemas.measurement import DeviceFingerprint
from latency_tables.onnx_shapes import MatMulShape, matmul_shapes, nonlinear_elements
from vitprune.cost import token_stages, tokens_per_block

__all__ = [
    "FpgaProfile",
    "FpgaEstimate",
    "PROFILES",
    "get_profile",
    "profile_devices",
    "arch_matmuls",
    "estimate",
    "estimate_onnx",
    "calibrate",
]


class FpgaProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    board: str
    pe_macs_per_cycle: int = Field(
        gt=0, description="multiply-accumulates the PE array does a cycle"
    )
    clock_mhz: float = Field(gt=0)
    buffer_bytes: int = Field(gt=0, description="on-chip activation buffer")
    bandwidth_gbs: float = Field(gt=0, description="off-chip memory bandwidth, GB/s")
    weight_bits: int = Field(ge=1, le=32)
    act_bits: int = Field(ge=1, le=32)
    utilisation: float = Field(1.0, gt=0, le=1, description="fitted: share of peak MACs reached")
    nonlinear_per_cycle: int = Field(64, gt=0, description="softmax/norm/GELU elements a cycle")
    layer_overhead_cycles: int = Field(2000, ge=0, description="per matrix product: set-up, drain")
    fixed_us: float = Field(500.0, ge=0, description="per inference: image in, logits out")
    calibration: str = Field(description="the published number this profile is fitted to")

    def fingerprint(self) -> DeviceFingerprint:
        """How an estimate appears where a measured device would: `measured` is false."""
        return DeviceFingerprint(
            device_class="fpga",
            cpu_model=self.board,
            runtime=f"analytical:{self.name}",
            runtime_version="1",
            measured=False,
            profile=self.model_dump(),
        )


class FpgaEstimate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: float
    measured: bool = False
    profile: str
    parameters: FpgaProfile
    compute_ms: float = Field(description="time in layers bound by the PE array")
    memory_ms: float = Field(description="time in layers bound by off-chip bandwidth")
    nonlinear_ms: float
    fixed_ms: float


def arch_matmuls(spec: ArchSpec) -> list[MatMulShape]:
    """The matrix products of the sub-network `spec` describes, as the extracted model runs
    them (patch embedding as a product of patches by kernels); MACs total `vitprune.cost.macs`."""
    info = spec.info
    d, p = info.embed_dim, info.patch_size
    out = [MatMulShape(1, info.num_patches(spec.img_size), 3 * p * p, d, weight=True)]
    stages = {s.block: s for s in token_stages(spec)}
    for b, (blk, n) in enumerate(zip(spec.blocks, tokens_per_block(spec), strict=True)):
        stage = stages.get(b)
        if stage is not None:
            n_in = info.num_prefix_tokens + stage.num_patches + int(stage.has_package)
            hd = info.head_dim
            out += [
                MatMulShape(1, 1, d, d, weight=True),  # class-token query
                MatMulShape(info.num_heads, 1, hd, d, weight=True),  # W_k^T q per head
                MatMulShape(info.num_heads, 1, d, n_in, weight=False),  # logits
            ]
        if blk.attn:
            h, qk, v = len(blk.heads), blk.qk_dim, blk.v_dim
            out += [
                MatMulShape(1, n, d, h * (2 * qk + v), weight=True),
                MatMulShape(h, n, qk, n, weight=False),
                MatMulShape(h, n, n, v, weight=False),
                MatMulShape(1, n, h * v, d, weight=True),
            ]
        if blk.mlp:
            out += [
                MatMulShape(1, n, d, blk.mlp_hidden, weight=True),
                MatMulShape(1, n, blk.mlp_hidden, d, weight=True),
            ]
    heads = 2 if info.num_prefix_tokens > 1 else 1
    out += [MatMulShape(1, 1, d, spec.num_classes, weight=True)] * heads
    return out


def _nonlinear_elements(spec: ArchSpec) -> int:
    """Softmax scores, LayerNorm and GELU inputs: the work of the nonlinear units."""
    d = spec.info.embed_dim
    total = 0
    for blk, n in zip(spec.blocks, tokens_per_block(spec), strict=True):
        if blk.attn:
            total += len(blk.heads) * n * n + n * d
        if blk.mlp:
            total += n * blk.mlp_hidden + n * d
    return total


def _layers_ms(profile: FpgaProfile, shapes: Iterable[MatMulShape]) -> tuple[float, float]:
    hz = profile.clock_mhz * 1e6
    peak = profile.pe_macs_per_cycle * profile.utilisation * hz
    bandwidth = profile.bandwidth_gbs * 1e9
    compute_ms = memory_ms = 0.0
    for s in shapes:
        compute = s.macs / peak
        a_bytes = s.batch * (s.m * s.k + s.m * s.n) * profile.act_bits / 8
        b_bytes = s.batch * s.k * s.n * (profile.weight_bits if s.weight else profile.act_bits) / 8
        spill = max(0.0, a_bytes + (0 if s.weight else b_bytes) - profile.buffer_bytes)
        memory = ((b_bytes if s.weight else 0.0) + spill) / bandwidth
        t = (max(compute, memory) + profile.layer_overhead_cycles / hz) * 1e3
        if compute >= memory:
            compute_ms += t
        else:
            memory_ms += t
    return compute_ms, memory_ms


def _estimate(profile: FpgaProfile, shapes: list[MatMulShape], nonlinear: int) -> FpgaEstimate:
    compute_ms, memory_ms = _layers_ms(profile, shapes)
    nonlinear_ms = nonlinear / (profile.nonlinear_per_cycle * profile.clock_mhz * 1e6) * 1e3
    fixed_ms = profile.fixed_us / 1e3
    return FpgaEstimate(
        latency_ms=compute_ms + memory_ms + nonlinear_ms + fixed_ms,
        profile=profile.name,
        parameters=profile,
        compute_ms=compute_ms,
        memory_ms=memory_ms,
        nonlinear_ms=nonlinear_ms,
        fixed_ms=fixed_ms,
    )


def estimate(spec: ArchSpec, profile: FpgaProfile | str) -> FpgaEstimate:
    profile = get_profile(profile) if isinstance(profile, str) else profile
    return _estimate(profile, arch_matmuls(spec), _nonlinear_elements(spec))


def estimate_onnx(path: Path, profile: FpgaProfile | str) -> FpgaEstimate:
    """From a model file: its MatMul/Gemm/Conv shapes, and its softmax, LayerNorm and GELU
    elements for the nonlinear units. What a job on an FPGA profile certifies: the file's own
    graph, not the spec it came from."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    return _estimate(profile, matmul_shapes(path), nonlinear_elements(path))


def calibrate(profile: FpgaProfile, spec: ArchSpec, latency_ms: float) -> FpgaProfile:
    """The profile with `utilisation` set so that `spec` takes `latency_ms` (bisection: the
    latency falls monotonically as utilisation rises)."""
    lo, hi = 1e-4, 1.0
    if estimate(spec, profile.model_copy(update={"utilisation": hi})).latency_ms > latency_ms:
        raise ValueError(f"{profile.name} cannot reach {latency_ms} ms even at full utilisation")
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        ms = estimate(spec, profile.model_copy(update={"utilisation": mid})).latency_ms
        lo, hi = (mid, hi) if ms > latency_ms else (lo, mid)
    return profile.model_copy(update={"utilisation": hi})


#: (model, published latency in ms) each calibrated profile is fitted to
CALIBRATION_POINTS: dict[str, tuple[str, float]] = {
    "zcu102-int8": ("deit_base_patch16_224", 1000 / 24),
}

_ZCU102 = {
    "board": "Xilinx ZCU102 (XCZU9EG)",
    "clock_mhz": 150.0,
    "buffer_bytes": 4 << 20,  # 912 BRAM36 = 32.1 Mb
    "bandwidth_gbs": 19.2,  # PS DDR4-2400, 64 bit
}

_ZCU102_INT8 = FpgaProfile(
    name="zcu102-int8",
    board="Xilinx ZCU102 (XCZU9EG)",
    pe_macs_per_cycle=4096,
    clock_mhz=150.0,
    buffer_bytes=(912 * 36 * 1024) // 8,  # 912 BRAM36
    bandwidth_gbs=19.2,  # PS DDR4-2400, 64 bit
    weight_bits=1,
    act_bits=8,
    calibration="VAQF (arXiv:2201.06618): DeiT-base on ZCU102 at 24 FPS (41.7 ms), 8-bit "
    "activations, binary weights",
)


def _calibrated() -> dict[str, FpgaProfile]:
    model, ms = CALIBRATION_POINTS[_ZCU102_INT8.name]
    out = {_ZCU102_INT8.name: calibrate(_ZCU102_INT8, ArchSpec.dense(model), ms)}
    kv260 = FpgaProfile(
        name="kv260-int8",
        board="AMD Kria KV260 (XCK26)",
        pe_macs_per_cycle=1024,
        clock_mhz=150.0,
        buffer_bytes=(144 * 36 * 1024 + 64 * 288 * 1024) // 8,  # BRAM + URAM
        bandwidth_gbs=19.2,
        weight_bits=8,
        act_bits=8,
        utilisation=out["zcu102-int8"].utilisation,
        calibration="uncalibrated: datasheet parameters, ZCU102 int8 utilisation",
    )
    out[kv260.name] = kv260
    return out


PROFILES: dict[str, FpgaProfile] = _calibrated()


def profile_devices() -> str:
    """The profiles as a job names them, for messages: 'fpga:kv260-int8, fpga:zcu102-int8'."""
    return ", ".join(f"fpga:{name}" for name in sorted(PROFILES))


def get_profile(name: str) -> FpgaProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"no FPGA profile {name!r}; profiles: {', '.join(sorted(PROFILES))}"
        ) from None

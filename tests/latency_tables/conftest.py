"""A device whose latency is known exactly: milliseconds proportional to the graph's MACs.

Building a table through it checks the plumbing (stack slopes, overhead subtraction, token
counts, the fixed part) against a ground truth with no measurement noise; real-runtime tests
check the rest.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch

from budgetprune.hashing import sha256_file
from budgetprune.schemas import DeviceFingerprint, MeasurementResult, MeasureProtocol
from device_agents.stats import latency_stats
from latency_tables.build import TableGrid, build_table
from latency_tables.onnx_shapes import matmul_shapes
from latency_tables.schema import LatencyTable

torch.set_num_threads(1)

TINY = "deit_tiny_patch16_224"
RUN_MS = 0.01  # what any run costs
MS_PER_MMAC = 0.001


class MacsMeasurer:
    """Measurer protocol; latency = RUN_MS + MACs of every MatMul/Gemm x MS_PER_MMAC. Other
    devices in the tests override `latency_ms` (every run of a timing reads that value).
    `received` holds the size of every distinct file it was sent, by hash, as an agent's model
    cache would."""

    def __init__(self, cpu_model: str = "fake-cpu", run_ms: float = RUN_MS) -> None:
        self.cpu_model = cpu_model
        self.run_ms = run_ms
        self.calls = 0
        self.received: dict[str, int] = {}

    def measure(
        self, onnx_path: Path, protocol: MeasureProtocol, input_shape: list[int]
    ) -> MeasurementResult:
        self.calls += 1
        sha = sha256_file(onnx_path)
        self.received[sha] = onnx_path.stat().st_size
        ms = self.latency_ms(onnx_path)
        return MeasurementResult(
            stats=latency_stats([ms] * protocol.runs, warmup=protocol.warmup),
            protocol=protocol,
            device=DeviceFingerprint(
                cpu_model=self.cpu_model,
                cores=2,
                os="test",
                runtime="fake",
                runtime_version="1",
                threads=protocol.threads,
                batch_size=protocol.batch_size,
                input_shape=input_shape,
            ),
            stable=True,
            model_sha256=sha,
        )

    def latency_ms(self, onnx_path: Path) -> float:
        return self.run_ms + sum(s.macs for s in matmul_shapes(onnx_path)) * MS_PER_MMAC / 1e6


def loaded_graph(path: Path, tmp_path: Path) -> tuple[list[str], list[tuple[int, ...]]]:
    """Op types and tensor shapes of `path` as ONNX Runtime runs it (as the agent loads it)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.loaded.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(options.optimized_model_filepath).graph
    return sorted(n.op_type for n in graph.node), sorted(tuple(t.dims) for t in graph.initializer)


SMALL_GRID = TableGrid(
    token_fractions=[1.0, 0.5, 0.25],
    dim_fractions=[0.125, 1.0],
    hidden_fractions=[1 / 96, 1.0],
    max_head_points=3,
    whole_models=2,
    evict_bytes=1 << 16,
    deep_stack=4,  # exact here at any depth; shallow keeps the exports quick
)


@pytest.fixture(scope="session")
def macs_device() -> MacsMeasurer:
    """The device `macs_table` was measured on."""
    return MacsMeasurer()


@pytest.fixture(scope="session")
def macs_table(macs_device: MacsMeasurer) -> LatencyTable:
    """deit_tiny at 64 px (16 patches) measured on the MACs device."""
    return build_table(TINY, 64, macs_device, threads=1, grid=SMALL_GRID)

"""ONNX Runtime on the CPU execution provider: the reference runtime of the project.

Settings aim at repeatable single-stream latency, not throughput: a fixed intra-op thread count
(the lease's), one inter-op thread and sequential execution so runs do not overlap, and every
graph optimisation on because deployments use them too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from budgetprune.errors import MeasurementError
from device_agents.runtimes.base import Runtime, Session
from device_agents.runtimes.onnx_file import check_self_contained
from device_agents.runtimes.registry import register_runtime

__all__ = ["OnnxRuntime", "OnnxRuntimeSession"]

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


class OnnxRuntimeSession(Session):
    def __init__(self, session: Any) -> None:
        inputs = session.get_inputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise MeasurementError(f"expected a model with one input, got {len(inputs)}: {names}")
        (inp,) = inputs
        if inp.type not in _DTYPES:
            raise MeasurementError(f"input {inp.name!r} has type {inp.type}; need a float tensor")
        self._session = session
        self._name: str = inp.name
        self.input_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in inp.shape)
        self.input_dtype = np.dtype(_DTYPES[inp.type])

    def run(self, x: np.ndarray) -> None:
        self._session.run(None, {self._name: x})

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._name: x})[0]


@register_runtime("onnxruntime")
class OnnxRuntime(Runtime):
    module = "onnxruntime"

    def version(self) -> str:
        import onnxruntime

        return str(onnxruntime.__version__)

    def load(self, path: Path, threads: int) -> Session:
        import onnxruntime as ort

        checked = check_self_contained(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings would flood the agent's log on every task
        try:
            session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            hint = "" if checked else " (if it uses external data: only self-contained files work)"
            raise MeasurementError(f"onnxruntime cannot load {path.name}{hint}: {exc}") from exc
        return OnnxRuntimeSession(session)

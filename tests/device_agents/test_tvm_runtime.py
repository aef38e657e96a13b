"""The TVM runtime plug-in on a tiny model (untuned build); skipped where tvm is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tvm")

from budgetprune.schemas.measurement import MeasureProtocol  # noqa: E402
from device_agents.measure import measure  # noqa: E402
from device_agents.runtimes import get_runtime, registered_names  # noqa: E402


def test_tvm_is_registered_and_says_its_version() -> None:
    assert "tvm" in registered_names()
    assert get_runtime("tvm").version().startswith("0.")


def test_tvm_measures_a_tiny_onnx_model(tiny_onnx: Path) -> None:
    protocol = MeasureProtocol(warmup=2, runs=10, max_batches=1, threads=1)
    result = measure(tiny_onnx, "tvm", protocol)
    assert result.device.runtime == "tvm"
    assert result.device.runtime_version == get_runtime("tvm").version()
    assert result.device.input_shape == [1, 16]
    assert result.stats.runs == 10 and 0 < result.stats.p50_ms < 100


def test_tvm_session_computes_the_models_function(tiny_onnx: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    session = get_runtime("tvm").load(tiny_onnx, threads=1)
    x = np.random.default_rng(0).standard_normal((1, 16), dtype=np.float32)
    out = session._vm["main"](session._to_tvm(x, device=session._device))
    want = ort.InferenceSession(str(tiny_onnx)).run(None, {"x": x})[0]
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)

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


def test_a_model_loaded_again_is_not_compiled_again(
    tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table build loads the dense model between every two others: one build per file and
    thread count, however often it is loaded; another thread count is built afresh."""
    from collections import OrderedDict

    import numpy as np
    import tvm

    from device_agents.runtimes import tvm as tvm_runtime

    monkeypatch.setattr(tvm_runtime, "_BUILDS", OrderedDict())
    monkeypatch.setenv("TVM_NUM_THREADS", "1")  # load() sets it; put back after the test
    compiled: list[int] = []
    real = tvm.compile

    def counting(*args, **kwargs):
        compiled.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tvm, "compile", counting)
    x = np.ones((1, 16), dtype=np.float32)
    first = get_runtime("tvm").load(tiny_onnx, threads=1).infer(x)
    again = get_runtime("tvm").load(tiny_onnx, threads=1).infer(x)
    assert len(compiled) == 1
    np.testing.assert_array_equal(first, again)
    get_runtime("tvm").load(tiny_onnx, threads=2)
    assert len(compiled) == 2

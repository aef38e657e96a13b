"""Tiny ONNX models built with onnx.helper: milliseconds to load and run, no torch import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def make_linear_model(features: int = 16, batch: int | str = 1) -> onnx.ModelProto:
    """y = relu(x @ W + b); `batch` as a string makes the batch dim dynamic."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((features, 8)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("Add", ["h", "B"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture
def tiny_onnx(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    onnx.save_model(make_linear_model(), str(path))
    return path


@pytest.fixture
def dynamic_onnx(tmp_path: Path) -> Path:
    path = tmp_path / "dynamic.onnx"
    onnx.save_model(make_linear_model(batch="N"), str(path))
    return path


@pytest.fixture
def external_data_onnx(tmp_path: Path) -> Path:
    path = tmp_path / "external.onnx"
    onnx.save_model(
        make_linear_model(),
        str(path),
        save_as_external_data=True,
        location="external.onnx.data",
        size_threshold=0,
    )
    return path

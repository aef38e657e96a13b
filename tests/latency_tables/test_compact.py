"""Timing graphs stored as tiles: much smaller files that run as the graphs stored whole."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from latency_tables import microbench as mb
from latency_tables.compact import compact
from latency_tables.onnx_shapes import matmul_shapes
from vitprune.export import export_onnx
from vitprune.models import create_model

from .conftest import TINY, loaded_graph

SHAPE = [1, 17, 192]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(TINY, img_size=64)


def _stack(model: torch.nn.Module, evict_bytes: int = 8 << 20) -> mb.Evicting:
    return mb.Evicting(mb.mlp_stack(model.blocks[0], hidden=768, depth=2), 192, evict_bytes)


def test_a_stack_graph_is_a_fraction_of_its_size_and_runs_as_the_whole_one(model, tmp_path):
    whole = mb.export_graph(_stack(model), tmp_path / "whole.onnx", SHAPE, compacted=False)
    small = mb.export_graph(_stack(model), tmp_path / "small.onnx", SHAPE)
    assert whole.stat().st_size > 9 << 20  # the 8 MiB sweep and 1.2 MB of weights
    assert small.stat().st_size < 1 << 20
    assert "Tile" in {n.op_type for n in onnx.load(str(small)).graph.node}
    ops, shapes = loaded_graph(small, tmp_path)
    assert (ops, shapes) == loaded_graph(whole, tmp_path)
    assert "Tile" not in ops and (192, 10922) in shapes  # folded back to the full sweep
    assert matmul_shapes(small) == matmul_shapes(whole)  # weights still read as stored


def test_a_whole_model_runs_as_the_one_stored_whole(model, tmp_path):
    whole = tmp_path / "whole.onnx"
    export_onnx(model, whole, img_size=64)
    small = tmp_path / "small.onnx"
    small.write_bytes(whole.read_bytes())
    assert compact(small) > 12  # at least each block's two MLP matrices
    assert small.stat().st_size < whole.stat().st_size / 5
    assert loaded_graph(small, tmp_path) == loaded_graph(whole, tmp_path)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64), dtype=np.float32)
    out = ort.InferenceSession(str(small), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )
    assert out[0].shape == (1, 1000) and np.isfinite(out[0]).all()


def test_small_tensors_are_left_as_they_are(model, tmp_path):
    path = mb.export_graph(
        _stack(model, evict_bytes=0), tmp_path / "g.onnx", SHAPE, compacted=False
    )
    block = mb.TokenStack([torch.nn.LayerNorm(192)]).eval()
    small = mb.export_graph(block, tmp_path / "ln.onnx", SHAPE, compacted=False)
    before = small.read_bytes()
    assert compact(small) == 0 and small.read_bytes() == before
    assert compact(path) == 2  # fc1 and fc2; norms and biases are under the threshold


def test_tvm_folds_the_tiles_at_build_time(model, tmp_path):
    pytest.importorskip("tvm")
    from device_agents.runtimes import tvm as tvm_runtime

    path = mb.export_graph(_stack(model, evict_bytes=1 << 20), tmp_path / "g.onnx", SHAPE)
    session = tvm_runtime.TvmRuntime().load(path, threads=1)
    program = next(reversed(tvm_runtime._BUILDS.values())).as_text()
    assert "strided_slice" in program  # the input's slice: the program is listed
    assert "tile" not in program  # no kernel repeats a tile at every run
    x = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"input": x}
    )
    np.testing.assert_allclose(session.infer(x), want[0], rtol=1e-4, atol=1e-4)

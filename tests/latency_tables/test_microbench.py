"""The cache sweep of the micro-benchmark graphs: stored as a tile, run as the full matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from latency_tables import microbench as mb
from vitprune.models import create_model

from .conftest import TINY

SHAPE = [1, 17, 192]


@pytest.fixture(scope="module")
def block() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(TINY, img_size=64).blocks[0]


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _graph(block: torch.nn.Module, evict_bytes: int, path: Path) -> tuple[mb.Evicting, Path]:
    module = mb.Evicting(mb.mlp_stack(block, hidden=768, depth=2), SHAPE[-1], evict_bytes)
    return module, mb.export_graph(module, path, SHAPE)


@pytest.mark.parametrize("evict_bytes", [8 << 20, 1 << 16], ids=["8MiB", "narrower-than-a-tile"])
def test_the_graph_computes_what_the_module_does(block, tmp_path, evict_bytes):
    module, path = _graph(block, evict_bytes, tmp_path / "g.onnx")
    x = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_ort(path, x), want, rtol=1e-4, atol=1e-4)


def test_the_file_holds_a_tile_and_onnx_runtime_folds_the_full_sweep_back(block, tmp_path):
    module, path = _graph(block, 8 << 20, tmp_path / "g.onnx")
    weights = 2 * 192 * 768 * 4  # the MLP's two matrices; the copies share them
    assert path.stat().st_size < weights + (1 << 20)  # the sweep alone is 8 MiB
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    loaded = onnx.load(str(tmp_path / "loaded.onnx"))
    assert "Tile" not in {n.op_type for n in loaded.graph.node}
    sweeps = [t for t in loaded.graph.initializer if tuple(t.dims) == tuple(module.sweep.shape)]
    assert len(sweeps) == 1


def test_tvm_folds_the_sweep_at_build_time(block, tmp_path):
    pytest.importorskip("tvm")
    from device_agents.runtimes import tvm as tvm_runtime

    _, path = _graph(block, 1 << 20, tmp_path / "g.onnx")
    session = tvm_runtime.TvmRuntime().load(path, threads=1)
    program = next(reversed(tvm_runtime._BUILDS.values())).as_text()
    assert "strided_slice" in program  # the input's slice: the program is listed
    assert "tile" not in program  # no kernel repeats the tile at every run
    x = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)
    np.testing.assert_allclose(session.infer(x), _ort(path, x), rtol=1e-4, atol=1e-4)

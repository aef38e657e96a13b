"""The micro-benchmark graphs: what the runtime is given to time."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from latency_tables import microbench as mb
from vitprune.models import create_model

from .conftest import TINY


def _weight_bytes(path) -> int:
    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer)


def test_each_block_of_a_stack_has_weights_of_its_own_in_the_graph(tmp_path):
    """The exporter merges initializers of equal value: a stack of exact copies would hand the
    runtime one set of weights, which every block after the first reads warm."""
    block = create_model(TINY, img_size=32).blocks[0]
    stacks = {
        "mlp": lambda depth: mb.mlp_stack(block, hidden=96, depth=depth),
        "attention": lambda depth: mb.attention_stack(
            block, heads=2, qk_dim=32, v_dim=16, depth=depth
        ),
    }
    for kind, make in stacks.items():
        sizes = {}
        for depth in (1, 3):
            path = mb.export_graph(make(depth), tmp_path / f"{kind}{depth}.onnx", [1, 5, 192])
            sizes[depth] = _weight_bytes(path)
            x = np.random.default_rng(0).standard_normal((1, 5, 192), dtype=np.float32)
            (out,) = ort.InferenceSession(str(path)).run(None, {"input": x})
            assert np.isfinite(out).all()
        assert sizes[3] == 3 * sizes[1], (kind, sizes)

"""The builder's stacks apply one pruned block `depth` times instead of copying it."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import torch

from budgetprune.schemas.arch import BlockSpec
from latency_tables import microbench as mb
from vitprune.extract import prune_block
from vitprune.models import create_model

from .conftest import TINY, loaded_graph

SHAPE = [1, 17, 192]


def test_a_stack_is_one_block_and_runs_as_a_stack_of_exact_copies(tmp_path):
    torch.manual_seed(0)
    block = create_model(TINY, img_size=64).blocks[0]
    stack = mb.attention_stack(block, heads=2, qk_dim=32, v_dim=16, depth=3)
    assert len(stack.parts) == 3 and len({id(b) for b in stack.parts}) == 1
    spec = BlockSpec(attn=True, heads=[0, 1], qk_dim=32, v_dim=16, mlp=False)
    with torch.no_grad():
        copies = mb.TokenStack([prune_block(copy.deepcopy(block), spec) for _ in range(3)])
    one = mb.export_graph(stack, tmp_path / "one.onnx", SHAPE, compacted=False)
    three = mb.export_graph(copies.eval(), tmp_path / "copies.onnx", SHAPE, compacted=False)
    assert loaded_graph(one, tmp_path) == loaded_graph(three, tmp_path)
    single = mb.export_graph(
        mb.attention_stack(block, heads=2, qk_dim=32, v_dim=16, depth=1),
        tmp_path / "single.onnx",
        SHAPE,
        compacted=False,
    )
    weights = [len(onnx.load(str(p)).graph.initializer) for p in (one, single)]
    assert weights[0] == weights[1], "the three blocks read one set of weights"
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    out = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        for p in (one, three)
    ]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-5)

"""Graphs that are only timed, stored small: every large float tensor as a tile of itself.

A table build sends its agent some 900 graphs (deit_tiny at 32 px) to 1300 (deit_small), and
their weights and cache sweep made them megabytes each: gigabytes a build, too much for a phone
on Wi-Fi. A float matrix product takes the same time whatever its values, so a graph that is
only timed can store each large tensor as a slice of itself and a `Tile` and a `Slice` node
that repeat it to full size. The runtimes fold constant subgraphs when they load a model (ONNX
Runtime above `ORT_DISABLE_ALL`; TVM in `FoldConstant`, which `device_agents.runtimes.tvm`
runs on untuned builds too), so the graph they run has the same nodes and shapes as the one
stored whole (bench/README.md, "Timing graphs travel as tiles"). The outputs differ, which is
why only the table builder's graphs are compacted: a model a job delivers or certifies is
measured on its exact bytes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["compact", "MIN_ELEMENTS", "TILE_ELEMENTS"]

MIN_ELEMENTS = 1 << 15  # 128 KiB of float32; smaller tensors stay as they are
TILE_ELEMENTS = 1 << 14  # what a tile holds, at least one element along the last axis


def _is_large_float(tensor: Any) -> bool:
    from onnx import TensorProto

    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    return tensor.data_type in floats and math.prod(tensor.dims) >= MIN_ELEMENTS


def _tiled(array: np.ndarray, name: str) -> tuple[list[Any], list[Any]] | None:
    """Nodes and initializers that make `name` from a tile of `array` along its last axis;
    None where the tile would be the whole tensor."""
    from onnx import helper, numpy_helper

    last = array.shape[-1]
    width = min(last, max(1, TILE_ELEMENTS // (array.size // last)))
    reps = math.ceil(last / width)
    if reps == 1:
        return None
    axis = array.ndim - 1
    consts = {
        f"{name}.tile": np.ascontiguousarray(array[..., :width]),
        f"{name}.reps": np.array([1] * axis + [reps], dtype=np.int64),
        f"{name}.starts": np.array([0], dtype=np.int64),
        f"{name}.ends": np.array([last], dtype=np.int64),
        f"{name}.axes": np.array([axis], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Tile", [f"{name}.tile", f"{name}.reps"], [f"{name}.tiled"]),
        helper.make_node(
            "Slice", [f"{name}.tiled", f"{name}.starts", f"{name}.ends", f"{name}.axes"], [name]
        ),
    ]
    return nodes, [numpy_helper.from_array(v, k) for k, v in consts.items()]


def compact(path: Path) -> int:
    """Rewrite the ONNX file at `path` with its large float initializers and Constant tensors
    stored as tiles; returns how many tensors were replaced."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inputs = {i.name for i in graph.input}  # an initializer listed as an input may be fed
    front: list[Any] = []
    added: list[Any] = []
    kept_inits = []
    for init in graph.initializer:
        made = None
        if init.name not in inputs and _is_large_float(init):
            made = _tiled(numpy_helper.to_array(init), init.name)
        if made is None:
            kept_inits.append(init)
        else:
            front += made[0]
            added += made[1]
    kept_nodes = []
    for node in graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        made = None
        if node.op_type == "Constant" and value is not None and _is_large_float(value):
            made = _tiled(numpy_helper.to_array(value), node.output[0])
        if made is None:
            kept_nodes.append(node)
        else:
            front += made[0]
            added += made[1]
    if not front:
        return 0
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + added)
    del graph.node[:]
    graph.node.extend(front + kept_nodes)  # the tiles' inputs are initializers: first is fine
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return len(front) // 2

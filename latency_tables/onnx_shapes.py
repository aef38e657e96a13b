"""The matrix products of an ONNX graph, with their shapes: what analytical cost models (the
FPGA profile, test doubles of a device) need from a model file. Convolutions count as the
products of their unfolded patches by their kernels (a ViT's patch embedding). Needs the `onnx`
package only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MatMulShape", "matmul_shapes", "nonlinear_elements"]

# What a ViT accelerator's nonlinear units run: softmax, LayerNorm, and GELU (exported from
# opset 17 as an Erf-based subgraph, or as one Gelu node from opset 20).
_NONLINEAR_OPS = frozenset({"Softmax", "LayerNormalization", "Erf", "Gelu"})


@dataclass(frozen=True)
class MatMulShape:
    """`batch` products of (m x k) by (k x n); `weight` when the right operand is a stored
    tensor (it must be fetched from memory) rather than an activation."""

    batch: int
    m: int
    k: int
    n: int
    weight: bool

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.k * self.n


def _shapes(model) -> dict[str, list[int]]:
    """Static shapes by tensor name. ONNX's inference loses the batch dim behind the class
    token's Expand; a leading dim it cannot tell is the batch of the graph's first input."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(model).graph
    out: dict[str, list[int]] = {t.name: list(t.dims) for t in graph.initializer}
    first = graph.input[0].type.tensor_type.shape.dim if graph.input else []
    batch = first[0].dim_value if first and first[0].HasField("dim_value") else 1
    for info in [*graph.value_info, *graph.input, *graph.output]:
        dims = info.type.tensor_type.shape.dim
        shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        if shape and shape[0] is None:
            shape[0] = batch
        if None not in shape:
            out[info.name] = shape
    return out


def _stored(graph) -> set[str]:
    """Tensors a graph stores rather than computes from its inputs: initializers, Constants,
    and what nodes make from those alone (a compacted graph's tiles, `latency_tables.compact`;
    the runtime folds them at load)."""
    stored = {t.name for t in graph.initializer}
    for node in graph.node:
        if all(not name or name in stored for name in node.input):
            stored.update(node.output)
    return stored


def matmul_shapes(path: Path) -> list[MatMulShape]:
    """Every MatMul, Gemm and Conv of the model at `path`, in graph order (static shapes)."""
    import onnx

    model = onnx.load(str(path))
    shapes = _shapes(model)
    weights = _stored(model.graph)
    result = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            result.append(_conv(node, shapes, weights))
            continue
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        a, b = node.input[0], node.input[1]
        if a not in shapes or b not in shapes:
            raise ValueError(f"{path}: {node.op_type} {node.name!r} has no static input shapes")
        sa, sb = shapes[a], shapes[b]
        if node.op_type == "Gemm":
            attrs = {x.name: x.i for x in node.attribute}
            m, k = (sa[1], sa[0]) if attrs.get("transA") else (sa[0], sa[1])
            n = sb[0] if attrs.get("transB") else sb[1]
            batch = 1
        else:
            sa = [1] * (2 - len(sa)) + sa if len(sa) < 2 else sa
            m, k, n = sa[-2], sa[-1], sb[-1]
            lead_a, lead_b = sa[:-2], sb[:-2] if len(sb) > 1 else []
            batch = max(math.prod(lead_a), math.prod(lead_b)) if lead_a or lead_b else 1
        result.append(MatMulShape(batch, m, k, n, weight=b in weights))
    return result


def nonlinear_elements(path: Path) -> int:
    """Input elements of every softmax, LayerNorm and GELU of the model at `path`: the work
    of an accelerator's nonlinear units, counted as `latency_tables.fpga` counts it from a spec."""
    import onnx

    model = onnx.load(str(path))
    shapes = _shapes(model)
    total = 0
    for node in model.graph.node:
        if node.op_type in _NONLINEAR_OPS:
            shape = shapes.get(node.input[0])
            if shape is None:
                raise ValueError(f"{path}: {node.op_type} {node.name!r} has no static input shape")
            total += math.prod(shape)
    return total


def _conv(node, shapes: dict[str, list[int]], weights: set[str]) -> MatMulShape:
    groups = next((a.i for a in node.attribute if a.name == "group"), 1) or 1
    w, y = shapes[node.input[1]], shapes[node.output[0]]
    cout, cin_g = w[0], w[1]
    return MatMulShape(
        batch=y[0] * groups,
        m=math.prod(y[2:]),
        k=cin_g * math.prod(w[2:]),
        n=cout // groups,
        weight=node.input[1] in weights,
    )

"""Checks on ONNX files before any runtime sees them.

Agents measure exactly the bytes whose sha256 the server certifies. A model with external data
would pull weights from sibling files that the hash does not cover (and that the agent never
downloaded), so only self-contained files are accepted.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from budgetprune.errors import MeasurementError

__all__ = ["check_self_contained"]


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor a graph holds, including Constant attributes and nested subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def check_self_contained(path: Path) -> bool:
    """Raise MeasurementError for external data; False when onnx is not installed to check.

    Without the `onnx` package (phones, boards) the runtime's own load error is what catches an
    external-data file, because the sibling data file is not next to a downloaded model.
    """
    if importlib.util.find_spec("onnx") is None:
        return False
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise MeasurementError(f"{path.name} is not a readable ONNX file: {exc}") from exc
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise MeasurementError(
                f"{path.name} stores tensor {tensor.name!r} as external data; "
                "only self-contained ONNX files (weights inside the file) can be measured"
            )
    return True

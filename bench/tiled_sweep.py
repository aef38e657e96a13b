"""Does a table graph whose cache sweep is stored as a tile time as one that stores it whole?
(issue 4)

Every micro-benchmark graph streams an 8 MiB matrix first (`latency_tables.microbench.Evicting`).
`export_graph` now stores a 256-column tile of it and the Tile and Slice nodes that repeat it,
which the runtime folds back at load; this rebuilds the old file from the same module (the full
matrix as one Constant, as the exporter wrote it) and times both, for full-width attention and
MLP stacks of 1 and 3 blocks, alternately in `--rounds` rounds (the order flipped every round;
p50 of 100 runs after 20 warm-up runs, 1 thread), and reports each graph's size, its median
tiled/stored ratio and the per-block slopes of both. It also checks that ONNX Runtime's
optimised graphs of the two (`ORT_ENABLE_ALL`, as the agent loads them) hold the same nodes and
the same tensors: timing differences are then the host's noise.

    .venv/bin/python bench/tiled_sweep.py --out bench/results/tiled_sweep_2026-12-07.json \\
        --cases deit_tiny_patch4_32:32:17 deit_tiny_patch4_32:32:65 \\
        deit_small_patch16_224:224:13 deit_small_patch16_224:224:197

Results: bench/README.md, "The cache sweep travels as a tile".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from budgetprune.schemas import MeasureProtocol  # noqa: E402
from latency_tables import microbench as mb  # noqa: E402
from vitprune.models import create_model  # noqa: E402
from worker.measurers import LocalMeasurer  # noqa: E402

DEPTHS = (1, 3)
EVICT_BYTES = 8 << 20  # TableGrid's default


def _stack(block: torch.nn.Module, kind: str, depth: int) -> torch.nn.Module:
    if kind == "mlp":
        return mb.mlp_stack(block, hidden=block.mlp.fc1.out_features, depth=depth)
    heads, dim = block.attn.num_heads, block.attn.qkv.in_features
    return mb.attention_stack(
        block, heads=heads, qk_dim=dim // heads, v_dim=dim // heads, depth=depth
    )


def _stored(tiled: Path, module: mb.Evicting, out: Path) -> Path:
    """`tiled` as the exporter wrote it before: the sweep one Constant, no Tile or Slice."""
    model = onnx.load(str(tiled))
    graph = model.graph
    tile = next(n for n in graph.node if n.op_type == "Tile")
    cut = next(n for n in graph.node if n.op_type == "Slice" and n.input[0] == tile.output[0])
    at = list(graph.node).index(tile)
    used = set(tile.input) | set(cut.input[1:])
    for node in (tile, cut):
        graph.node.remove(node)
    constant = helper.make_node(
        "Constant", [], [cut.output[0]], value=numpy_helper.from_array(module.sweep.numpy())
    )
    graph.node.insert(at, constant)
    keep = [t for t in graph.initializer if t.name not in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.save(model, str(out))
    return out


def _loaded(path: Path) -> tuple[list[str], list[tuple[tuple[int, ...], str]]]:
    """Op types and tensors (shape, hash of the values) of `path` as ONNX Runtime runs it."""
    import onnxruntime as ort

    out = path.with_suffix(".loaded.onnx")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the optimised file holds hardware-specific kernels: fine
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(out)).graph
    tensors = [
        (tuple(t.dims), hashlib.sha256(numpy_helper.to_array(t).tobytes()).hexdigest())
        for t in graph.initializer
    ]
    return sorted(n.op_type for n in graph.node), sorted(tensors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", required=True, help="model:img_size:tokens")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    measurer = LocalMeasurer(args.runtime)
    protocol = MeasureProtocol(warmup=20, runs=100, max_batches=1, threads=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            name, img, tokens = case.split(":")
            model = create_model(name, img_size=int(img))
            block, dim = model.blocks[0], model.embed_dim
            shape = [1, int(tokens), dim]
            for kind in ("attention", "mlp"):
                graphs = {}
                for d in DEPTHS:
                    module = mb.Evicting(_stack(block, kind, d), dim, EVICT_BYTES)
                    tiled = mb.export_graph(module, Path(tmp) / f"tiled{d}.onnx", shape)
                    graphs[("tiled", d)] = tiled
                    graphs[("stored", d)] = _stored(tiled, module, Path(tmp) / f"stored{d}.onnx")
                ms: dict[tuple[str, int], list[float]] = {key: [] for key in graphs}
                for r in range(args.rounds):
                    for key in list(graphs)[:: 1 if r % 2 == 0 else -1]:
                        ms[key].append(measurer.measure(graphs[key], protocol, shape).stats.p50_ms)
                row: dict = {"model": name, "img_size": int(img), "tokens": int(tokens)}
                row["kind"] = kind
                for variant in ("tiled", "stored"):
                    t = [float(np.median(ms[(variant, d)])) for d in DEPTHS]
                    row[variant] = {
                        "mib": [graphs[(variant, d)].stat().st_size / 2**20 for d in DEPTHS],
                        "ms": dict(zip(map(str, DEPTHS), t, strict=True)),
                        "slope_ms": float(np.polyfit(DEPTHS, t, 1)[0]),
                    }
                row["tiled_over_stored"] = {
                    str(d): float(np.median(np.divide(ms[("tiled", d)], ms[("stored", d)])))
                    for d in DEPTHS
                }
                row["slope_ratio"] = row["tiled"]["slope_ms"] / row["stored"]["slope_ms"]
                row["same_after_load"] = all(
                    _loaded(graphs[("tiled", d)]) == _loaded(graphs[("stored", d)]) for d in DEPTHS
                )
                print(json.dumps(row), flush=True)
                rows.append(row)
    from device_agents.fingerprint import cpu_model
    from device_agents.runtimes import get_runtime

    body = {
        "command": " ".join(["bench/tiled_sweep.py", *sys.argv[1:]]),
        "cpu_model": cpu_model(),
        "runtime": f"{args.runtime} {get_runtime(args.runtime).version()}",
        "threads": 1,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(body, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Do a table's stacks share their weights, and what does it cost? (issue 4)

A table's stack applies one block `depth` times (`latency_tables.microbench`; it was exact
copies before, which `torch.onnx.export` merges into the same graph, initializers of equal
value being stored once), so the runtime gets one set of weights: every block after the first
reads it warm. This times full-width attention and MLP stacks of 1, 3 and 12 blocks, as the
builder does (behind its 8 MB sweep), with the copies exact ("shared") and with each copy
nudged by 1e-4 so it keeps weights of its own ("own"), alternately in `--rounds` rounds
(median p50 of 100 runs each, 1 thread), and reports the per-block slopes.

    .venv/bin/python bench/stack_weights.py --out bench/results/stack_weights_2026-12-07.json \\
        --cases deit_tiny_patch4_32:32:65 deit_tiny_patch4_32:32:17 \\
        deit_small_patch16_224:224:197 deit_small_patch16_224:224:50 deit_small_patch16_224:224:13

Results: bench/README.md, "Stacks share their weights".
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compact_graphs import stack_case  # noqa: E402
from budgetprune.schemas import MeasureProtocol  # noqa: E402
from latency_tables import microbench as mb  # noqa: E402
from worker.measurers import LocalMeasurer  # noqa: E402

DEPTHS = (1, 3, 12)
EVICT_BYTES = 8 << 20  # TableGrid's default


def _own(stack: mb.TokenStack) -> mb.TokenStack:
    """Each block a copy of its own, nudged by 1e-4: the builder's stack applies one block."""
    stack = mb.TokenStack([copy.deepcopy(block) for block in stack.parts]).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in stack.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 1e-4)
    return stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", required=True, help="model:img_size:tokens")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    measurer = LocalMeasurer("onnxruntime")
    protocol = MeasureProtocol(warmup=20, runs=100, max_batches=1, threads=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.onnx"
        for case in args.cases:
            row0, block, shape = stack_case(case)
            dim = shape[-1]
            for kind in ("attention", "mlp"):
                ms: dict[str, dict[int, list[float]]] = {
                    w: {d: [] for d in DEPTHS} for w in ("shared", "own")
                }
                inits = {}
                for _ in range(args.rounds):
                    for d in DEPTHS:
                        for weights in ("shared", "own"):
                            stack = mb.full_width_stack(block, kind, d)
                            stack = stack if weights == "shared" else _own(stack)
                            mb.export_graph(mb.Evicting(stack, dim, EVICT_BYTES), path, shape)
                            inits[(weights, d)] = len(onnx.load(str(path)).graph.initializer)
                            ms[weights][d].append(
                                measurer.measure(path, protocol, shape).stats.p50_ms
                            )
                row = row0 | {"kind": kind}
                for weights, by_depth in ms.items():
                    t = [float(np.median(by_depth[d])) for d in DEPTHS]
                    row[weights] = {
                        "ms": dict(zip(map(str, DEPTHS), t, strict=True)),
                        "slope_ms": float(np.polyfit(DEPTHS, t, 1)[0]),
                        "initializers": [inits[(weights, d)] for d in DEPTHS],
                    }
                row["own_over_shared"] = row["own"]["slope_ms"] / row["shared"]["slope_ms"]
                print(json.dumps(row), flush=True)
                rows.append(row)
    from device_agents.fingerprint import cpu_model

    body = {
        "command": " ".join(["bench/stack_weights.py", *sys.argv[1:]]),
        "cpu_model": cpu_model(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(body, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

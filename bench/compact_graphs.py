"""Do the table builder's compacted graphs time as the graphs stored whole? (issue 4)

The builder's graphs are only timed, so `latency_tables.compact` stores every large float
tensor (weights, the 8 MiB cache sweep) as a tile of itself that `Tile` + `Slice` nodes repeat;
the runtime folds them at load. This exports each graph both ways: full-width attention and MLP
stacks of 1 and 3 blocks behind the sweep (`--cases`), and each model's dense whole graph, as
the build times them (`--models`). It times the two alternately in `--rounds` rounds (the order
flipped every round; p50 of 100 runs after 20 warm-up runs, 1 thread), and reports sizes, the
median compacted/whole ratio per graph, the stacks' per-block slopes, and whether ONNX Runtime's
optimised graphs of the two (`ORT_ENABLE_ALL`, as the agent loads them) have the same nodes and
tensor shapes: then only the values differ, and a float product's time does not depend on them.

    .venv/bin/python bench/compact_graphs.py --rounds 9 \\
        --out bench/results/compact_graphs_2026-12-07.json \\
        --cases deit_tiny_patch4_32:32:17 deit_tiny_patch4_32:32:65 \\
        deit_small_patch16_224:224:13 deit_small_patch16_224:224:197 \\
        --models deit_tiny_patch4_32:32 deit_small_patch16_224:224

Results: bench/README.md, "Timing graphs travel as tiles". (Its first run, of the sweep alone
stored as a tile: bench/results/tiled_sweep_2026-12-07.json, by this script's first version.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from budgetprune.schemas import MeasureProtocol  # noqa: E402
from latency_tables import microbench as mb  # noqa: E402
from latency_tables.compact import compact  # noqa: E402
from vitprune.export import export_onnx  # noqa: E402
from vitprune.models import create_model  # noqa: E402
from worker.measurers import LocalMeasurer  # noqa: E402

DEPTHS = (1, 3)
EVICT_BYTES = 8 << 20  # TableGrid's default


def stack_case(case: str) -> tuple[dict[str, object], torch.nn.Module, list[int]]:
    """A `model:img_size:tokens` case: its fields for a result row, the model's first block
    (every block has its shape) and the input shape of a stack of it."""
    name, img, tokens = case.split(":")
    model = create_model(name, img_size=int(img))
    row = {"model": name, "img_size": int(img), "tokens": int(tokens)}
    return row, model.blocks[0], [1, int(tokens), model.embed_dim]


def _loaded(path: Path) -> tuple[list[str], list[tuple[int, ...]]]:
    """Op types and tensor shapes of `path` as ONNX Runtime runs it."""
    import onnxruntime as ort

    out = path.with_suffix(".loaded.onnx")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the optimised file holds hardware-specific kernels: fine
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(out)).graph
    out.unlink()
    return sorted(n.op_type for n in graph.node), sorted(tuple(t.dims) for t in graph.initializer)


def _compacted_copy(path: Path) -> Path:
    small = path.with_name(f"{path.stem}.compact.onnx")
    shutil.copyfile(path, small)
    compact(small)
    return small


def _time(measurer, graphs: dict, shape: list[int], rounds: int) -> dict:
    protocol = MeasureProtocol(warmup=20, runs=100, max_batches=1, threads=1)
    ms: dict = {key: [] for key in graphs}
    for r in range(rounds):
        for key in list(graphs)[:: 1 if r % 2 == 0 else -1]:
            ms[key].append(measurer.measure(graphs[key], protocol, shape).stats.p50_ms)
    return ms


def _row(graphs: dict, ms: dict, depths: tuple[int, ...]) -> dict:
    row: dict = {}
    for variant in ("compact", "whole"):
        t = [float(np.median(ms[(variant, d)])) for d in depths]
        row[variant] = {
            "mib": [graphs[(variant, d)].stat().st_size / 2**20 for d in depths],
            "ms": dict(zip(map(str, depths), t, strict=True)),
        }
        if len(depths) > 1:
            row[variant]["slope_ms"] = float(np.polyfit(depths, t, 1)[0])
    row["compact_over_whole"] = {
        str(d): float(np.median(np.divide(ms[("compact", d)], ms[("whole", d)]))) for d in depths
    }
    if len(depths) > 1:
        row["slope_ratio"] = row["compact"]["slope_ms"] / row["whole"]["slope_ms"]
    row["same_after_load"] = all(
        _loaded(graphs[("compact", d)]) == _loaded(graphs[("whole", d)]) for d in depths
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="*", default=[], help="model:img_size:tokens")
    parser.add_argument("--models", nargs="*", default=[], help="model:img_size (dense, whole)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    measurer = LocalMeasurer(args.runtime)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            row0, block, shape = stack_case(case)
            dim = shape[-1]
            for kind in ("attention", "mlp"):
                graphs = {}
                for d in DEPTHS:
                    module = mb.Evicting(mb.full_width_stack(block, kind, d), dim, EVICT_BYTES)
                    whole = Path(tmp) / f"{kind}{d}.onnx"
                    mb.export_graph(module, whole, shape, compacted=False)
                    graphs[("whole", d)] = whole
                    graphs[("compact", d)] = _compacted_copy(whole)
                row = row0 | {"kind": kind}
                row |= _row(graphs, _time(measurer, graphs, shape, args.rounds), DEPTHS)
                print(json.dumps(row), flush=True)
                rows.append(row)
        for case in args.models:
            name, img = case.split(":")
            whole = Path(tmp) / "dense.onnx"
            export_onnx(create_model(name, img_size=int(img)), whole, img_size=int(img))
            graphs = {("whole", 0): whole, ("compact", 0): _compacted_copy(whole)}
            shape = [1, 3, int(img), int(img)]
            row = {"model": name, "img_size": int(img), "kind": "dense whole model"}
            row |= _row(graphs, _time(measurer, graphs, shape, args.rounds), (0,))
            print(json.dumps(row), flush=True)
            rows.append(row)
    from device_agents.fingerprint import cpu_model
    from device_agents.runtimes import get_runtime

    body = {
        "command": " ".join(["bench/compact_graphs.py", *sys.argv[1:]]),
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

"""Does the lookup table price uniformly narrow networks right? (issue 4; found in issue 5's jobs)

Builds the table of `--model` at `--img-size` on this machine (or loads `--table`), and scores
it, and any `--compare-table`, on uniformly narrow networks (every block at the same head dims
and MLP width: what a uniform cut produces) and random sub-networks. Each predictor is the
job-style one (rescaled on the dense model, so a ratio to it); the truth is each model's time
over the dense model's timed around it, in 3 rounds (median; `latency_tables.side_by_side`).

    .venv/bin/python bench/narrow_widths.py --out bench/results/narrow_widths_2026-12-06.json \\
        --compare-table bench/results/acc-work/tables/<the accuracy run's table>.json

Results: bench/README.md, "Narrow head dims".
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from budgetprune.schemas import ArchSpec, MeasureProtocol  # noqa: E402
from budgetprune.schemas.arch import BlockSpec  # noqa: E402
from latency_tables import LutPredictor, load_table, save_table  # noqa: E402
from latency_tables.build import build_table  # noqa: E402
from latency_tables.side_by_side import between_references  # noqa: E402
from vitprune.export import export_onnx  # noqa: E402
from vitprune.extract import extract_subnet  # noqa: E402
from vitprune.models import create_model  # noqa: E402
from vitprune.sample import sample_arch  # noqa: E402
from worker.measurers import LocalMeasurer  # noqa: E402

UNIFORM = ["8:112", "16:112", "16:240", "32:384", "48:512", "64:112"]  # head dims:neurons


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="deit_tiny_patch4_32")
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--table", type=Path, help="score this table instead of building one")
    parser.add_argument("--compare-table", type=Path, nargs="*", default=[])
    parser.add_argument("--random", type=int, default=14, help="random sub-networks (seeds 0..)")
    parser.add_argument(
        "--uniform",
        nargs="*",
        default=UNIFORM,
        help="uniform networks as DIMS:NEURONS (every block, all heads); a scan of DIMS at one "
        "NEURONS shows widths that run slower than a wider one",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    measurer = LocalMeasurer("onnxruntime")
    if args.table:
        table = load_table(args.table)
    else:
        table = build_table(args.model, args.img_size, measurer, 1, num_classes=args.num_classes)
        save_table(table, args.out.with_suffix(".table.json"))
    tables = {"table": table} | {p.stem: load_table(p) for p in args.compare_table}
    dense = ArchSpec.dense(args.model, args.img_size, args.num_classes)
    predictors = {}
    for name, t in tables.items():
        predictors[name] = LutPredictor(t)
        predictors[name].add(dense, 1.0)
    heads = list(range(len(dense.blocks[0].heads)))
    specs = [
        (f"uniform {dim}/{dense.blocks[0].qk_dim} dims, {hidden} neurons",
         dense.model_copy(update={"blocks": [
             BlockSpec(heads=heads, qk_dim=dim, v_dim=dim, mlp_hidden=hidden) for _ in dense.blocks
         ]}))
        for dim, hidden in (map(int, u.split(":")) for u in args.uniform)
    ]  # fmt: skip
    specs += [
        (f"random seed {s}", sample_arch(args.model, seed=s, img_size=args.img_size,
                                         num_classes=args.num_classes, width_multiple=8))
        for s in range(args.random)
    ]  # fmt: skip
    model = create_model(args.model, img_size=args.img_size, num_classes=args.num_classes)
    protocol = MeasureProtocol(warmup=20, runs=100, max_batches=1, threads=1)
    shape = [1, 3, args.img_size, args.img_size]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dense_path, path = Path(tmp) / "dense.onnx", Path(tmp) / "m.onnx"
        export_onnx(model, dense_path, img_size=args.img_size)
        for label, spec in specs:
            export_onnx(extract_subnet(model, spec), path, img_size=args.img_size)
            _, [ratios] = between_references(
                lambda p: measurer.measure(p, protocol, shape).stats.p50_ms, [path], dense_path, 3
            )
            truth = float(np.median(ratios))
            errors = {n: p.predict(spec) / truth - 1 for n, p in predictors.items()}
            rows.append({"spec": label, "ratio": truth, "rounds": ratios, "error": errors})
            print(label, f"{truth:.3f}", {n: f"{100 * e:+.1f}%" for n, e in errors.items()},
                  file=sys.stderr, flush=True)  # fmt: skip
    summary = {}
    for name in tables:
        e = np.abs([r["error"][name] for r in rows]) * 100
        summary[name] = {
            "median_ape_pct": float(np.median(e)),
            "max_ape_pct": float(e.max()),
            "within_5pct": float(np.mean(e <= 5)),
            "within_10pct": float(np.mean(e <= 10)),
        }
    from device_agents.fingerprint import cpu_model

    body = {
        "command": " ".join(["bench/narrow_widths.py", *sys.argv[1:]]),
        "cpu_model": cpu_model(),
        "table_build_seconds": table.build_seconds,
        "table_measurements": table.measurements,
        "summary": summary,
        "rows": rows,
    }
    args.out.write_text(json.dumps(body, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

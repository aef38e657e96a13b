"""How far two builds of one lookup table differ on this machine, with and without the drift
reference (issue 4: a table's entries must be reproducible for its predictions to be).

Builds the table of `--model` at 224 `--pairs` times per variant, alternating (without, with,
without, with, ...), so both variants see the same stretch of the host. For each variant it
reports, over the held-out specs of bench/predictor_accuracy.py (seeds 0..N-1, tokens
included), how far the table sums, the calibrated predictions and the job-style predictions
(rescaled on the dense model, as a job does: ratios to it) of consecutive builds differ, and
the reference's readings in the builds that took them.

    .venv/bin/python bench/table_repeatability.py --out bench/results/table_repeatability.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from budgetprune.schemas import ArchSpec  # noqa: E402
from latency_tables import LutPredictor  # noqa: E402
from latency_tables.build import TableGrid, build_table  # noqa: E402
from vitprune.sample import sample_arch  # noqa: E402
from worker.measurers import LocalMeasurer  # noqa: E402

VARIANTS = {"without_reference": 0, "with_reference": TableGrid().reference_every}


def spread(a: list[float], b: list[float]) -> dict[str, float]:
    """How far two builds' values differ, as is and once their common scale is divided out:
    jobs rescale a table on the dense model they measure (the device's speed now), which
    cancels a scale the whole table shares, but not an error in one slice of it."""
    ratio = np.array(a) / np.array(b)
    scale = float(np.median(ratio))
    d, d_scaled = np.abs(ratio - 1.0) * 100, np.abs(ratio / scale - 1.0) * 100
    return {
        "median_pct": float(np.median(d)),
        "p95_pct": float(np.percentile(d, 95)),
        "max_pct": float(d.max()),
        "scale": scale,
        "median_pct_after_scale": float(np.median(d_scaled)),
        "p95_pct_after_scale": float(np.percentile(d_scaled, 95)),
        "max_pct_after_scale": float(d_scaled.max()),
    }


def summarise(builds: dict[str, list[dict]]) -> dict:
    return {
        name: {
            key: [spread(a[field], b[field]) for a, b in zip(runs, runs[1:], strict=False)]
            for key, field in (
                ("table_sums", "table_ms"),
                ("calibrated", "predicted_ms"),
                ("job_style", "job_ratio"),
            )
        }
        for name, runs in builds.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="deit_tiny_patch16_224")
    parser.add_argument("--pairs", type=int, default=2, help="builds per variant")
    parser.add_argument("--n", type=int, default=50, help="held-out specs")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from onnxruntime import __version__ as ort_version

    from device_agents.fingerprint import cpu_model

    specs = [
        sample_arch(args.model, seed=s, img_size=224, width_multiple=8, tokens=True)
        for s in range(args.n)
    ]
    builds: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for _ in range(args.pairs):
        for name, every in VARIANTS.items():
            started = time.time()
            table = build_table(
                args.model,
                224,
                LocalMeasurer("onnxruntime"),
                1,
                grid=TableGrid(reference_every=every),
            )
            predictor = LutPredictor(table)
            job = LutPredictor(table)  # as a job rescales it: on its dense model, here 1
            job.add(ArchSpec.dense(args.model, 224), 1.0)
            builds[name].append(
                {
                    "started": started,
                    "seconds": table.build_seconds,
                    "measurements": table.measurements,
                    "reference_ms": [r.ms for r in table.drift],
                    "table_ms": [predictor.raw(s) for s in specs],
                    "predicted_ms": [predictor.predict(s) for s in specs],
                    "job_ratio": [job.predict(s) for s in specs],
                }
            )
            print(f"{name}: built in {table.build_seconds:.0f} s", file=sys.stderr, flush=True)
    summary = summarise(builds)
    body = {
        "command": " ".join(["bench/table_repeatability.py", *sys.argv[1:]]),
        "cpu_model": cpu_model(),
        "os": platform.platform(),
        "onnxruntime": ort_version,
        "threads": 1,
        "summary": summary,
        "builds": builds,
    }
    Path(args.out).write_text(json.dumps(body, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

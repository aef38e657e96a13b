"""How long the greedy width search takes to price its way to a goal, on a measured table.

NetAdapt's `propose` (also toast's and token's width cuts, give-back, and every shrink of the
certification loop) prices each candidate step of each round with the latency predictor: tens
of thousands of specs per call on deit_tiny. A data job calls it once per exchange-rate pair
(12) in its fit. Times one call per goal on a committed lookup table, best of `--repeats`.

    .venv/bin/python bench/search_speed.py

See bench/README.md, "Search speed", for the results.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from budgetprune.schemas import ArchSpec  # noqa: E402
from latency_tables.predictor import LutPredictor  # noqa: E402
from latency_tables.store import load_table  # noqa: E402
from vitprune.importance import dim_scores, head_scores, mlp_scores  # noqa: E402
from vitprune.models import create_model  # noqa: E402
from vitprune.strategies.base import SearchContext  # noqa: E402
from vitprune.strategies.netadapt import NetAdapt  # noqa: E402

TABLE = ROOT / "bench/results/tables/2026-12-05"
MODEL = "deit_tiny_patch16_224"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goals", type=float, nargs="+", default=[0.7, 0.5, 0.35])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    (path,) = TABLE.glob(f"*{MODEL}*.json")
    dense = ArchSpec.dense(MODEL, 224)
    model = create_model(MODEL, 224)
    scores = {"head_scores": head_scores(model), "dim_scores": dim_scores(model)}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    for fraction in args.goals:
        times, spec = [], None
        for _ in range(args.repeats):
            predictor = LutPredictor(load_table(path))  # a fresh one: no costs kept from before
            ctx = SearchContext(
                dense=dense, mlp_scores=mlp_scores(model), predict_ms=predictor.predict, **scores
            )
            goal = predictor.predict(dense) * fraction
            started = time.perf_counter()
            spec = NetAdapt().propose(ctx, dense, goal)
            times.append(time.perf_counter() - started)
        row = {
            "goal_fraction": fraction,
            "best_s": round(min(times), 4),
            "times_s": [round(t, 4) for t in times],
            "spec_sha256": spec.sha256()[:12],
            "predicted_ms": round(predictor.predict(spec), 4),
            "commit": commit,
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

"""Do blocks cost inside a whole model what the table's stacks charge? Measure it, then
re-score a predictor run with and without it, on that run's own truth.

The deit_small predictor run of 2026-12-06 (bench/README.md) read its token-heavy specs 12-16%
low while the same widths without tokens were within 3% (`bench/token_misses.py`): the table
underprices blocks on few tokens. This measures, at each of the table's token counts, a
full-width block inside a whole model against the table's entry (`measure_context`), stores a
copy of the table with it, and predicts every held-out spec of `--accuracy` (regenerated from
its seed) job-style with and without it, against the interleaved ratios that run measured.

    .venv/bin/python bench/block_context.py --table <table.json> \
        --accuracy bench/results/predictor_accuracy_small_2026-12-06_diag.json --out <new table>
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.predictor_accuracy import held_out_spec, summary  # noqa: E402
from budgetprune.schemas import ArchSpec  # noqa: E402
from device_agents.fingerprint import cpu_model  # noqa: E402
from latency_tables import LutPredictor, load_table, save_table  # noqa: E402
from latency_tables.build import measure_context  # noqa: E402
from worker.measurers import LocalMeasurer  # noqa: E402


def score(predicted: list[float], truth: list[float]) -> dict[str, float]:
    signed = float(np.median(np.array(predicted) / np.array(truth) - 1.0) * 100)
    return summary(predicted, truth) | {"signed_median_pct": signed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--accuracy", type=Path, help="a bench/predictor_accuracy.py result")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--width-multiple", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True, help="the table with its context")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = load_table(args.table)
    if table.device.cpu_model != cpu_model():
        parser.error(f"the table is of {table.device.cpu_model}, this is {cpu_model()}")
    started = time.monotonic()
    context = measure_context(table, LocalMeasurer("onnxruntime"), rounds=args.rounds)
    seconds = time.monotonic() - started
    with_context = table.model_copy(update={"context": context})
    save_table(with_context, args.out)
    print(f"context in {seconds:.0f} s:")
    for n, f in zip(context.tokens, context.factor, strict=True):
        print(f"  {n:4d} tokens: x{f:.3f}")
    if args.accuracy is None:
        return 0
    rows = json.loads(args.accuracy.read_text())["results"][0]["rows"]
    dense = ArchSpec.dense(table.model, img_size=table.img_size)
    predictors = {}
    for name, t in {"with context": with_context, "without": table}.items():
        predictors[name] = LutPredictor(t)
        predictors[name].add(dense, 1.0)  # job-style: a ratio to the dense model
    truth, predicted = [], {name: [] for name in predictors}
    for row in rows:
        spec = held_out_spec(table.model, row["seed"], table.img_size, args.width_multiple)
        if spec.summary() != row["arch"]:
            parser.error(f"seed {row['seed']} is not the spec the run measured")
        truth.append(row["ratio"]["median"])
        for name, p in predictors.items():
            predicted[name].append(p.predict(spec))
        errs = "  ".join(
            f"{name} {100 * (predicted[name][-1] / truth[-1] - 1):+6.1f}%" for name in predictors
        )
        print(f"  seed {row['seed']}: measured {truth[-1]:.3f}  {errs}")
    for name in predictors:
        print(name, json.dumps(score(predicted[name], truth)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

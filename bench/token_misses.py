"""Where the lookup table misreads token-pruned models: held-out specs timed with and without
their token schedule (same widths), side by side with the dense model.

Found from the deit_small predictor run of 2026-12-06 (bench/README.md, "deit_small with the
diagonal table"): its misses over 10% were all specs that prune tokens hard and early. If the
same widths without tokens predict well, the error is in what the table charges for running
blocks on few tokens, not in the widths.

    .venv/bin/python bench/token_misses.py --seeds 56 61 57 \
        --table bench/results/tables/2026-12-06e-small/<table>.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.predictor_accuracy import held_out_spec  # noqa: E402
from budgetprune.schemas import ArchSpec, MeasureProtocol  # noqa: E402
from latency_tables import LutPredictor, load_table  # noqa: E402
from latency_tables.side_by_side import between_references  # noqa: E402
from vitprune.export import export_onnx  # noqa: E402
from vitprune.extract import extract_subnet  # noqa: E402
from vitprune.models import create_model  # noqa: E402
from worker.measurers import LocalMeasurer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--width-multiple", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = load_table(args.table)
    dense_spec = ArchSpec.dense(table.model, img_size=table.img_size)
    job = LutPredictor(table)
    job.add(dense_spec, 1.0)  # as a job's predictor after its dense baseline: ratios
    dense = create_model(table.model, img_size=table.img_size)
    measurer = LocalMeasurer("onnxruntime")
    protocol = MeasureProtocol(
        warmup=10, runs=args.runs, max_batches=1, stability_tolerance=0.03, threads=1
    )
    shape = [1, 3, table.img_size, table.img_size]
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "dense.onnx"
        export_onnx(dense, ref, img_size=table.img_size)
        for seed in args.seeds:
            spec = held_out_spec(table.model, seed, table.img_size, args.width_multiple)
            pair = {"tokens": spec, "no tokens": spec.model_copy(update={"tokens": None})}
            paths = []
            for name, s in pair.items():
                path = Path(tmp) / f"{seed}-{name.replace(' ', '-')}.onnx"
                export_onnx(extract_subnet(dense, s), path, img_size=table.img_size)
                paths.append(path)
            _, ratios = between_references(
                lambda p: measurer.measure(p, protocol, shape).stats.p50_ms,
                paths,
                ref,
                args.rounds,
            )
            for (name, s), r in zip(pair.items(), ratios, strict=True):
                measured, predicted = float(np.median(r)), job.predict(s)
                keep = s.tokens.model_dump()["keep"] if s.tokens else ""
                print(
                    f"seed {seed} {name}: {measured:.4f} of dense, predicted {predicted:.4f} "
                    f"({(predicted / measured - 1) * 100:+.1f}%) {keep}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

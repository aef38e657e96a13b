"""Does a small step in width cost what the latency table says? (issue 5's give-back)

In the accuracy benchmark, networks the give-back grew from a certified one by 6-13% of
predicted time read 24-36% slower than it, timed right before and right after them
(bench/README.md, 2026-12-07 night). This times a certified network's architecture and the
same architecture grown in small steps (MLP neurons added to every block, or the same number
added to half of the blocks only, as the give-back does, and head dims), all cut from the
teacher and timed side by side in rounds: per round every model once, each a batch of 300 runs
after 30 warm-up runs (the certification protocol's size), ONNX Runtime, 1 thread. With
`--delivered`, the job's delivered bytes (fine-tuned weights) are timed too, against the same
architecture cut from the teacher: weights alone should not change the time. Per model: median
p50 and p90 over the rounds, the median of its per-round ratio to the base, and the table's
predicted ratio.

    .venv/bin/python bench/width_steps.py --arch JOB/out/arch.json --delivered JOB/out/model.onnx \
        --table TABLE.json --rounds 6 --out bench/results/width_steps_2026-12-07.json
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

from bench.cpu_pinning import batch_p50_p90  # noqa: E402
from budgetprune.schemas import ArchSpec  # noqa: E402
from device_agents.runtimes.registry import get_runtime  # noqa: E402
from latency_tables.predictor import LutPredictor  # noqa: E402
from latency_tables.store import load_table  # noqa: E402
from vitprune.export import export_onnx  # noqa: E402
from vitprune.extract import extract_subnet  # noqa: E402
from vitprune.models import create_model  # noqa: E402

TEACHER = ROOT / "bench/teachers/deit_tiny_patch4_32/model.safetensors"


def _grown(base: ArchSpec, neurons: int = 0, dims: int = 0, half: bool = False) -> ArchSpec:
    """`base` with `neurons` more MLP neurons and `dims` more qk/v dims per head in every
    block, or (`half`) twice that in every other block: the same total, ragged."""
    blocks = []
    for i, b in enumerate(base.blocks):
        k = (2 if i % 2 == 0 else 0) if half else 1
        blocks.append(
            b.model_copy(
                update={
                    "mlp_hidden": b.mlp_hidden + k * neurons,
                    "qk_dim": b.qk_dim + k * dims,
                    "v_dim": b.v_dim + k * dims,
                }
            )
        )
    return base.model_copy(update={"blocks": blocks})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=Path, required=True, help="a job's out/arch.json")
    parser.add_argument("--delivered", type=Path, help="that job's out/model.onnx")
    parser.add_argument("--table", type=Path, help="the device's latency table (predictions)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = ArchSpec.model_validate_json(args.arch.read_text())
    variants = {
        "base": base,
        "+16 neurons": _grown(base, neurons=16),
        "+32 neurons": _grown(base, neurons=32),
        "+32 neurons, half the blocks": _grown(base, neurons=16, half=True),
        "+8 dims per head": _grown(base, dims=8),
    }
    predictor = LutPredictor(load_table(args.table)) if args.table else None
    teacher = create_model(
        base.model, img_size=base.img_size, num_classes=base.num_classes, checkpoint=str(TEACHER)
    ).eval()
    runtime = get_runtime("onnxruntime")
    x = np.random.default_rng(0).standard_normal((1, 3, base.img_size, base.img_size))
    x = x.astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, arch in variants.items():
            paths[name] = Path(tmp) / f"{len(paths)}.onnx"
            export_onnx(extract_subnet(teacher, arch).eval(), paths[name], img_size=base.img_size)
        if args.delivered:
            paths["base, delivered weights"] = args.delivered
        sessions = {k: runtime.load(p, threads=1) for k, p in paths.items()}
        p50s: dict[str, list[float]] = {k: [] for k in sessions}
        p90s: dict[str, list[float]] = {k: [] for k in sessions}
        for r in range(args.rounds):
            for k, session in sessions.items():
                p50, p90 = batch_p50_p90(session, x, args.runs, warmup=30)
                p50s[k].append(p50)
                p90s[k].append(p90)
            print(f"round {r + 1}: " + ", ".join(f"{p90s[k][-1]:.3f}" for k in sessions))
    rows = {}
    for k in sessions:
        arch = variants.get(k, base)
        rows[k] = {
            "p50_ms": float(np.median(p50s[k])),
            "p90_ms": float(np.median(p90s[k])),
            "p50_over_base": float(np.median(np.array(p50s[k]) / np.array(p50s["base"]))),
            "p90_over_base": float(np.median(np.array(p90s[k]) / np.array(p90s["base"]))),
            "predicted_over_base": predictor.predict(arch) / predictor.predict(base)
            if predictor
            else None,
            "arch": arch.summary(),
        }
        print(f"{k:30s} " + json.dumps({n: v for n, v in rows[k].items() if n != "arch"}))
    from device_agents.fingerprint import cpu_model

    meta = {"cpu_model": cpu_model(), "rounds": args.rounds, "runs": args.runs}
    meta |= {"runtime": runtime.version(), "arch": str(args.arch), "table": str(args.table)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "models": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

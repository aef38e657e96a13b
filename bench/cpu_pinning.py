"""Does pinning the measuring process to one vCPU steady ONNX Runtime's timings? (issue 4)

Latency tables and certificates are measured at 1 thread; the scheduler may still move that
thread between the VM's vCPUs, and a moved thread finds a cold L2. This times each dense model
(`--models model:img_size`) in `--rounds` rounds, each round one batch per mode in turn: free
(the process's own affinity, every vCPU), then pinned to each vCPU alone
(`os.sched_setaffinity`); a batch is the p50 of 100 runs after 10 warm-up runs, ONNX Runtime
1 thread (which runs on the calling thread). Per mode: the median, the max/min of the batch
p50s, and the share of consecutive batches within 3% of each other (the agent's stability
rule for certificates).

    .venv/bin/python bench/cpu_pinning.py --rounds 12 \\
        --out bench/results/cpu_pinning_2026-12-07.json \\
        --models deit_tiny_patch16_224:224 deit_tiny_patch16_224:64

Results: bench/README.md, "Pinning the measuring thread to one vCPU".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_agents.runtimes.registry import get_runtime  # noqa: E402
from vitprune.export import export_onnx  # noqa: E402
from vitprune.models import create_model  # noqa: E402

TOLERANCE = 0.03  # MeasureProtocol.certify's stability tolerance


def batch_p50_p90(session, x: np.ndarray, runs: int = 100, warmup: int = 10) -> tuple[float, float]:
    """One batch of `runs` timed runs after `warmup`: its p50 and p90 in ms."""
    for _ in range(warmup):
        session.run(x)
    times = np.empty(runs)
    for i in range(runs):
        started = time.perf_counter()
        session.run(x)
        times[i] = time.perf_counter() - started
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 90) * 1e3)


def batch_p50(session, x: np.ndarray, runs: int = 100, warmup: int = 10) -> float:
    return batch_p50_p90(session, x, runs, warmup)[0]


def _summary(p50s: list[float]) -> dict[str, float]:
    v = np.array(p50s)
    return {
        "median_ms": float(np.median(v)),
        "max_over_min": float(v.max() / v.min()),
        "consecutive_within_3pct": float(np.mean(np.abs(v[1:] / v[:-1] - 1) <= TOLERANCE)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="model:img_size")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    own = os.sched_getaffinity(0)
    modes = {"free": own} | {f"cpu{c}": {c} for c in sorted(own)}
    runtime = get_runtime("onnxruntime")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.models:
            name, img = case.split(":")
            path = Path(tmp) / f"{name}_{img}.onnx"
            export_onnx(create_model(name, img_size=int(img)), path, img_size=int(img))
            session = runtime.load(path, threads=1)
            x = np.random.default_rng(0).standard_normal((1, 3, int(img), int(img)))
            x = x.astype(np.float32)
            p50s: dict[str, list[float]] = {m: [] for m in modes}
            try:
                for _ in range(args.rounds):
                    for mode, cpus in modes.items():
                        os.sched_setaffinity(0, cpus)
                        p50s[mode].append(batch_p50(session, x))
            finally:
                os.sched_setaffinity(0, own)
            row = {"model": name, "img_size": int(img), "p50_ms": p50s}
            row |= {mode: _summary(v) for mode, v in p50s.items()}
            print(json.dumps({k: v for k, v in row.items() if k != "p50_ms"}), flush=True)
            rows.append(row)
    from device_agents.fingerprint import cpu_model

    meta = {"cpu_model": cpu_model(), "rounds": args.rounds, "runtime": runtime.version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

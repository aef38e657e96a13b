"""Do timings read slow right after training? (issue 5's certification loop)

A job times its networks between bursts of training on both cores (fit, fine-tuning). In the
accuracy benchmark on a Zen 4 host, search candidates timed right after a fit read 37-39% over
the table while the dense model, timed minutes later, read 5% slow, and one certified network
read 2.12 ms at its certification and 2.80-2.90 minutes later (bench/README.md, 2026-12-07
night). This times a pruned and the dense model alternately (batches of 300 runs after 30
warm-up, ONNX Runtime, 1 thread): first idle, then right after `--train-s` seconds of training
the dense model on random data with torch on all cores, as a job does. Per batch: seconds since
the phase began, p50 and p90.

    .venv/bin/python bench/after_training.py --out bench/results/after_training_2026-12-07.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.co_load import IMG, dense_and_pruned  # noqa: E402
from bench.cpu_pinning import batch_p50_p90  # noqa: E402
from device_agents.runtimes.registry import get_runtime  # noqa: E402

PRUNED = (16, 208)  # dims per head, MLP neurons: uniform's pick at 35% on the Zen 4 host


def _train(model: torch.nn.Module, seconds: float) -> int:
    """Distillation-sized steps (batch 64) on random images, as many as fit in `seconds`."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    steps, until = 0, time.monotonic() + seconds
    while time.monotonic() < until:
        x = torch.randn(64, 3, IMG, IMG)
        loss = model(x).logsumexp(dim=1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    model.eval()
    return steps


def _series(sessions: dict, x: np.ndarray, batches: int) -> list[dict[str, float]]:
    t0, rows = time.monotonic(), []
    for _ in range(batches):
        for name, session in sessions.items():
            p50, p90 = batch_p50_p90(session, x, runs=300, warmup=30)
            rows.append({"model": name, "t_s": time.monotonic() - t0, "p50_ms": p50, "p90_ms": p90})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=8, help="per model and phase")
    parser.add_argument("--train-s", type=float, default=60.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    phases: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dense_model, sessions, x = dense_and_pruned(Path(tmp), PRUNED, ("pruned", "dense"))
        phases["idle"] = _series(sessions, x, args.batches)
        steps = _train(dense_model, args.train_s)
        phases["after training"] = _series(sessions, x, args.batches)
    for phase, rows in phases.items():
        for name in sessions:
            p90 = [r["p90_ms"] for r in rows if r["model"] == name]
            print(f"{phase:15s} {name:7s} p90 " + " ".join(f"{v:.2f}" for v in p90))
    from device_agents.fingerprint import cpu_model

    meta = {"cpu_model": cpu_model(), "runtime": get_runtime("onnxruntime").version()}
    meta |= {"train_steps": steps}
    meta |= {"train_s": args.train_s, "torch_threads": torch.get_num_threads()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "phases": phases}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

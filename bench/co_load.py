"""Does load on the other vCPU slow a dense model more than a pruned one? (issues 4 and 5)

The certification loop scales a pruned network's reading by the dense model's drift (its time
now over its time at the job's baseline), which assumes a slow phase slows both alike. In the
accuracy benchmark the side-by-side ratios of pruned models sat well under their budget
fractions, as if the dense model (22 MB of weights at 32 px) lost more to whatever slowed the
host than a pruned one (bench/README.md, 2026-12-07 afternoon). This times both, alternating
batches, on vCPU 0 while vCPU 1 is idle, runs a cache-resident loop (a small matmul), or streams
memory (copies of a buffer far larger than the L3); a batch is the p50 of 200 runs after 20
warm-up runs, ONNX Runtime 1 thread. Per condition: the median batch of each model and the
pruned over dense ratio of each round.

    .venv/bin/python bench/co_load.py --rounds 8 --out bench/results/co_load_2026-12-07.json

Results: bench/README.md, "Accuracy at budget", 2026-12-07 evening.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cpu_pinning import batch_p50  # noqa: E402
from budgetprune.schemas import ArchSpec  # noqa: E402
from device_agents.runtimes.registry import get_runtime  # noqa: E402
from vitprune.export import export_onnx  # noqa: E402
from vitprune.extract import extract_subnet  # noqa: E402
from vitprune.models import create_model  # noqa: E402
from vitprune.strategies.ratio_search import uniform_spec  # noqa: E402

MODEL, IMG, CLASSES = "deit_tiny_patch4_32", 32, 10
PRUNED = (16, 240)  # dims per head, MLP neurons: uniform's pick at 35% on a Zen 5 host


def _neighbour(kind: str, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    if kind == "compute":
        a = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
        while True:
            a = np.tanh(a @ a)
    src = np.ones(64 * 2**20 // 8)  # 64 MiB: twice the L3 of the hosts seen here
    dst = np.empty_like(src)
    while True:
        np.copyto(dst, src)


def dense_and_pruned(
    tmp: Path, pruned: tuple[int, int], order: tuple[str, str] = ("dense", "pruned")
) -> tuple[torch.nn.Module, dict, np.ndarray]:
    """The dense model (random weights: speed does not depend on them), its uniform cut to
    `pruned` (dims per head, MLP neurons), both exported to `tmp` and loaded as 1-thread ONNX
    Runtime sessions keyed in `order` (the order they are timed in), and the input."""
    runtime = get_runtime("onnxruntime")
    dense_model = create_model(MODEL, img_size=IMG, num_classes=CLASSES).eval()
    dense = ArchSpec.dense(MODEL, img_size=IMG, num_classes=CLASSES)
    models = {
        "dense": dense_model,
        "pruned": extract_subnet(dense_model, uniform_spec(dense, *pruned)),
    }
    sessions = {}
    for name in order:
        export_onnx(models[name].eval(), Path(tmp) / f"{name}.onnx", img_size=IMG)
        sessions[name] = runtime.load(Path(tmp) / f"{name}.onnx", threads=1)
    x = np.random.default_rng(0).standard_normal((1, 3, IMG, IMG)).astype(np.float32)
    return dense_model, sessions, x


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    own = os.sched_getaffinity(0)
    cpus = sorted(own)
    if len(cpus) < 2:
        raise SystemExit("needs two vCPUs: one to measure on, one for the neighbour")
    os.sched_setaffinity(0, {cpus[0]})
    conditions: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        _, sessions, x = dense_and_pruned(Path(tmp), PRUNED)
        for kind in ("idle", "compute", "memory", "idle again"):
            proc = None
            if kind in ("compute", "memory"):
                proc = mp.get_context("spawn").Process(
                    target=_neighbour, args=(kind, cpus[1]), daemon=True
                )
                proc.start()
                time.sleep(1.0)
            p50s: dict[str, list[float]] = {k: [] for k in sessions}
            try:
                for _ in range(args.rounds):
                    for k, session in sessions.items():
                        p50s[k].append(batch_p50(session, x, runs=200, warmup=20))
            finally:
                if proc is not None:
                    proc.terminate()
                    proc.join()
            conditions[kind] = p50s
            ratios = np.array(p50s["pruned"]) / np.array(p50s["dense"])
            print(
                f"{kind:10s} dense {np.median(p50s['dense']):.3f} ms, pruned "
                f"{np.median(p50s['pruned']):.3f} ms, pruned/dense median {np.median(ratios):.3f} "
                f"({ratios.min():.3f}-{ratios.max():.3f})",
                flush=True,
            )
    os.sched_setaffinity(0, own)
    from device_agents.fingerprint import cpu_model

    meta = {
        "cpu_model": cpu_model(),
        "rounds": args.rounds,
        "runtime": get_runtime("onnxruntime").version(),
        "pruned": {"dims_per_head": PRUNED[0], "mlp_hidden": PRUNED[1]},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "p50_ms": conditions}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

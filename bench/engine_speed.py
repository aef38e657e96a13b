"""Is a pruned model really faster? Measured speedup over dense vs the MACs reduction.

For random arch specs of each model: extract the physical sub-network, export it to ONNX the way
the service does, and time it against the dense model in ONNX Runtime (1 and 2 threads) and in
PyTorch eager. Dense and pruned are timed in alternating rounds, so drift in a shared machine's
load hits both alike. realised/theoretical = (dense ms / pruned ms) / (dense MACs / pruned MACs).

    .venv/bin/python bench/engine_speed.py --out bench/results/engine_speed.json

See bench/README.md for the results and how to read them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from budgetprune.schemas.arch import ArchSpec  # noqa: E402
from vitprune.cost import macs  # noqa: E402
from vitprune.export import export_onnx  # noqa: E402
from vitprune.extract import extract_subnet  # noqa: E402
from vitprune.importance import sort_by_magnitude_  # noqa: E402
from vitprune.models import create_model  # noqa: E402
from vitprune.sample import sample_arch  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ort_runner(path: Path, threads: int, x: np.ndarray):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {"input": x}
    return lambda: sess.run(None, feed)


def eager_runner(model: torch.nn.Module, x: np.ndarray):
    t = torch.from_numpy(x)

    def run() -> None:
        with torch.inference_mode():
            model(t)

    return run


def timed(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def paired(dense, pruned, warmup: int, runs: int, rounds: int) -> tuple[list[float], list[float]]:
    """Alternate dense and pruned in `rounds` rounds of runs/rounds calls each."""
    timed(dense, warmup)
    timed(pruned, warmup)
    a: list[float] = []
    b: list[float] = []
    per = max(1, runs // rounds)
    for _ in range(rounds):
        a += timed(dense, per)
        b += timed(pruned, per)
    return a, b


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q))


def describe(spec: ArchSpec) -> dict[str, object]:
    info = spec.info
    kept = [b for b in spec.blocks if b.attn]
    widths = [b.qk_dim for b in kept] + [b.v_dim for b in kept]
    widths += [b.mlp_hidden for b in spec.blocks if b.mlp]
    return {
        "heads": sum(len(b.heads) for b in kept),
        "dropped_attn": sum(not b.attn for b in spec.blocks),
        "dropped_mlp": sum(not b.mlp for b in spec.blocks),
        "min_qk_dim": min((b.qk_dim for b in kept), default=0),
        "min_v_dim": min((b.v_dim for b in kept), default=0),
        "mlp_hidden": [b.mlp_hidden for b in spec.blocks],
        "widths_mult8": round(sum(w % 8 == 0 for w in widths) / max(len(widths), 1), 3),
        "head_dim": info.head_dim,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--models", nargs="+", default=["deit_tiny_patch16_224", "deit_small_patch16_224"]
    )
    ap.add_argument("--n", type=int, default=30, help="random specs per model")
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--percentile", type=float, default=50.0)
    ap.add_argument("--width-multiple", type=int, default=1)
    ap.add_argument("--tokens", action="store_true", help="also draw token keep ratios")
    ap.add_argument("--no-eager", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/engine_speed.json")
    args = ap.parse_args()

    torch.manual_seed(0)
    rows: list[dict[str, object]] = []
    load_before = os.getloadavg()
    started = time.time()
    x = np.random.default_rng(0).standard_normal((1, 3, args.img_size, args.img_size))
    x = x.astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        for name in args.models:
            dense = create_model(name, img_size=args.img_size)
            sort_by_magnitude_(dense)
            dense_spec = ArchSpec.dense(name, args.img_size)
            dense_path = tmpdir / f"{name}.onnx"
            export_onnx(dense, dense_path, img_size=args.img_size)
            dense_runners = {t: ort_runner(dense_path, t, x) for t in args.threads}
            for seed in range(args.seed0, args.seed0 + args.n):
                spec = sample_arch(
                    name,
                    seed,
                    img_size=args.img_size,
                    width_multiple=args.width_multiple,
                    tokens=args.tokens,
                )
                sub = extract_subnet(dense, spec).eval()
                path = tmpdir / "sub.onnx"
                export_onnx(sub, path, img_size=args.img_size)
                theo = macs(dense_spec) / macs(spec)
                row: dict[str, object] = {
                    "model": name,
                    "seed": seed,
                    "macs": macs(spec),
                    "macs_fraction": macs(spec) / macs(dense_spec),
                    "theoretical_speedup": theo,
                    "spec": describe(spec),
                    "tokens": spec.tokens.model_dump() if spec.tokens else None,
                }
                engines = [
                    (f"ort_{t}t", dense_runners[t], ort_runner(path, t, x), t) for t in args.threads
                ]
                if not args.no_eager:
                    for t in args.threads:
                        engines.append(
                            (f"eager_{t}t", eager_runner(dense, x), eager_runner(sub, x), t)
                        )
                for label, run_dense, run_sub, threads in engines:
                    torch.set_num_threads(threads)
                    a, b = paired(run_dense, run_sub, args.warmup, args.runs, args.rounds)
                    da, db = pct(a, args.percentile), pct(b, args.percentile)
                    row[label] = {
                        "dense_ms": da,
                        "pruned_ms": db,
                        "speedup": da / db,
                        "ratio": (da / db) / theo,
                        "dense_cv": statistics.pstdev(a) / statistics.fmean(a),
                        "pruned_cv": statistics.pstdev(b) / statistics.fmean(b),
                    }
                rows.append(row)
                summary = "  ".join(
                    f"{k}: {row[k]['speedup']:.2f}x ({row[k]['ratio']:.2f})"
                    for k in row
                    if k.startswith(("ort_", "eager_"))
                )
                print(f"{name} seed {seed}: theory {theo:.2f}x  {summary}", flush=True)
    load_after = os.getloadavg()
    engines_seen = [k for k in rows[0] if k.startswith(("ort_", "eager_"))]
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "img_size": args.img_size,
        "batch": 1,
        "warmup": args.warmup,
        "runs": args.runs,
        "rounds": args.rounds,
        "percentile": args.percentile,
        "width_multiple": args.width_multiple,
        "tokens": args.tokens,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "wall_s": round(time.time() - started, 1),
        "summary": summarise(rows, engines_seen, args.models),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))


def summarise(rows, engines: list[str], models: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        for engine in engines:
            ratios = [r[engine]["ratio"] for r in mine]
            dense_ms = [r[engine]["dense_ms"] for r in mine]
            out[f"{model}/{engine}"] = {
                "median_ratio": statistics.median(ratios),
                "min_ratio": min(ratios),
                "below_0.9": sum(r < 0.9 for r in ratios),
                "dense_ms_median": statistics.median(dense_ms),
                # spread of the dense model's own timing across the run: the machine's noise
                "dense_ms_spread": (max(dense_ms) - min(dense_ms)) / statistics.median(dense_ms),
                "median_cv": statistics.median(r[engine]["dense_cv"] for r in mine),
            }
    return out


if __name__ == "__main__":
    main()

"""Tuned TVM against ONNX Runtime, on a dense and a pruned ViT, with the tuning time.

The TVM builds are what an agent with BUDGETPRUNE_TVM_DB_DIR runs: FastMath, the "zero"
pipeline, MetaSchedule with one database for the device. The dense model is tuned first; the
pruned one then tunes only the kernels whose shapes it adds (the database is shared), which is
the cost a job's sub-network pays. Both runtimes then time both models with the agent's own
measurement procedure, in alternating rounds so a shared machine's drift hits all alike.

    .venv/bin/python bench/tvm_vs_ort.py --trials-per-task 32 --out bench/results/tvm_vs_ort.json

See bench/README.md for the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pruned(dense_spec, heads: int, mlp_hidden: int):
    blocks = [
        b.model_copy(update={"heads": list(range(heads)), "mlp_hidden": mlp_hidden})
        for b in dense_spec.blocks
    ]
    return dense_spec.model_copy(update={"blocks": blocks})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="deit_tiny_patch16_224")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--heads", type=int, default=2, help="kept heads per block (pruned)")
    parser.add_argument("--mlp-hidden", type=int, default=384, help="kept MLP neurons (pruned)")
    parser.add_argument("--trials-per-task", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--db", help="tuning database folder (default: a fresh temporary one)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    db = Path(args.db or tempfile.mkdtemp(prefix="tvm-db-"))
    os.environ["BUDGETPRUNE_TVM_DB_DIR"] = str(db)  # what the agent's TVM runtime reads
    os.environ["BUDGETPRUNE_TVM_TRIALS_PER_TASK"] = "0"  # timing must not tune

    import onnx

    from budgetprune.schemas import MeasureProtocol
    from budgetprune.schemas.arch import ArchSpec
    from device_agents.fingerprint import cpu_model
    from device_agents.measure import measure
    from device_agents.runtimes import get_runtime
    from device_agents.runtimes.tvm_tuning import prepare, tune
    from vitprune.cost import macs
    from vitprune.export import export_onnx
    from vitprune.extract import extract_subnet
    from vitprune.models import create_model

    work = Path(tempfile.mkdtemp(prefix="tvm-bench-"))
    model = create_model(args.model, img_size=args.img_size).eval()
    dense_spec = ArchSpec.dense(args.model, img_size=args.img_size)
    specs = {"dense": dense_spec, "pruned": _pruned(dense_spec, args.heads, args.mlp_hidden)}
    paths: dict[str, Path] = {}
    tuning: dict[str, object] = {}
    for name, spec in specs.items():
        paths[name] = work / f"{name}.onnx"
        export_onnx(extract_subnet(model, spec).eval(), paths[name], img_size=args.img_size)
    for name, path in paths.items():  # dense first: the pruned model reuses its records
        mod, target = prepare(onnx.load(str(path)), args.threads)
        report = tune(mod, target, db, args.trials_per_task)
        tuning[name] = dataclasses.asdict(report)
        print(f"tuned {name}: {report}", flush=True)

    protocol = MeasureProtocol.certify(args.threads)
    rows: list[dict[str, object]] = []
    for r in range(args.rounds):
        for name, path in paths.items():
            for runtime in ("onnxruntime", "tvm"):
                result = measure(path, runtime, protocol)
                s = result.stats
                rows.append(
                    {
                        "round": r,
                        "model": name,
                        "runtime": runtime,
                        "version": result.device.runtime_version,
                        "p50_ms": s.p50_ms,
                        "p90_ms": s.p90_ms,
                        "runs": s.runs,
                        "stable": result.stable,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)

    def best(name: str, runtime: str, key: str) -> float:
        return min(float(x[key]) for x in rows if x["model"] == name and x["runtime"] == runtime)

    summary = {
        name: {
            "gmacs": macs(spec) / 1e9,
            "ort_p50_ms": best(name, "onnxruntime", "p50_ms"),
            "tvm_p50_ms": best(name, "tvm", "p50_ms"),
            "tvm_over_ort_p50": best(name, "tvm", "p50_ms") / best(name, "onnxruntime", "p50_ms"),
            "tuning_s": tuning[name]["seconds"],
            "tuned_tasks": len(tuning[name]["new_tasks"]),
            "tasks": tuning[name]["tasks"],
        }
        for name, spec in specs.items()
    }
    body = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "model": args.model,
        "img_size": args.img_size,
        "threads": args.threads,
        "trials_per_task": args.trials_per_task,
        "tvm_version": get_runtime("tvm").version(),
        "protocol": protocol.model_dump(),
        "pruned": {"heads": args.heads, "mlp_hidden": args.mlp_hidden},
        "tuning": tuning,
        "rows": rows,
        "summary": summary,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(body, indent=2) + "\n")


if __name__ == "__main__":
    main()

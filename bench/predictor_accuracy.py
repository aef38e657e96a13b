"""How well does the lookup-table predictor predict whole pruned models? (issue 4's headline)

For each model: build (or load) its latency table on this machine, then for held-out random arch
specs (`sample_arch` seeds 0..N-1, token pruning included; the table's own calibration models use
seeds from 10**6 on) predict the latency, export the physical sub-network, measure it with ONNX
Runtime here and compare. Reports the median and 95th-percentile absolute percentage error and
the share within 5% and 10%, for the calibrated predictor, the raw table sum and, as a baseline,
the linear-in-MACs predictor fitted on the same calibration models.

With `--again`, every held-out model is exported and measured a second time after the first
pass (in reverse order, so each pair is minutes apart): how well the device agrees with itself
is the ceiling for any predictor (a perfect one of the first pass is right against the second
only as often), and the predictors are also scored against the mean of the two measurements.

With `--rounds R`, each held-out model is also timed in R short rounds between two timings of
the dense model (one batch of `--runs` each, `latency_tables.side_by_side`), and its latency
taken as the median over rounds of its time over the mean of the dense timings around it: a
slow phase of the host that outlasts the three timings hits all alike (runs before 2026-12-06
evening divided by the one dense timing after the model). The predictors are scored on that
ratio too (the job-style predictor rescaled to the dense model is a ratio predictor). A table
that measured blocks inside whole models (`BlockContext`) is scored without that too, on the
same truth ("table without context").

    .venv/bin/python bench/predictor_accuracy.py --out bench/results/predictor_accuracy.json

Results and conditions: bench/README.md, section "Latency predictor accuracy".
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

from budgetprune.schemas import ArchSpec, MeasureProtocol  # noqa: E402
from latency_tables import LinearMacsPredictor, LutPredictor, load_table, save_table  # noqa: E402
from latency_tables.build import build_table  # noqa: E402
from latency_tables.predictor import calibration_models  # noqa: E402
from latency_tables.side_by_side import between_references  # noqa: E402
from latency_tables.store import table_key  # noqa: E402
from vitprune.export import export_onnx  # noqa: E402
from vitprune.extract import extract_subnet  # noqa: E402
from vitprune.models import create_model  # noqa: E402
from vitprune.sample import sample_arch  # noqa: E402
from worker.measurers import LocalMeasurer  # noqa: E402


def held_out_spec(model: str, seed: int, img_size: int, width_multiple: int) -> ArchSpec:
    """The held-out spec of `seed`: the one definition the benchmarks that re-score or re-time a
    run's models regenerate them from."""
    return sample_arch(
        model, seed=seed, img_size=img_size, width_multiple=width_multiple, tokens=True
    )


def summary(predicted: list[float], measured: list[float]) -> dict[str, float]:
    ape = np.abs(np.array(predicted) / np.array(measured) - 1.0) * 100
    return {
        "median_ape_pct": float(np.median(ape)),
        "p95_ape_pct": float(np.percentile(ape, 95)),
        "max_ape_pct": float(ape.max()),
        "within_5pct": float(np.mean(ape <= 5.0)),
        "within_10pct": float(np.mean(ape <= 10.0)),
    }


def table_for(
    model: str, img: int, measurer, threads: int, table_dir: Path, rebuild: bool, statistic: str
):
    from device_agents.fingerprint import cpu_model

    for path in sorted(table_dir.glob(f"*__{model}__{img}__*.json")):
        table = load_table(path)
        same_device = table.device.cpu_model == cpu_model()  # a table of another CPU says nothing
        if (
            not rebuild
            and same_device
            and table.threads == threads
            and table.statistic == statistic
        ):
            print(f"{model}: table {path}", file=sys.stderr)
            return table, path
    table = build_table(
        model,
        img,
        measurer,
        threads,
        progress=lambda msg: print(f"{model}: {msg}", file=sys.stderr, flush=True),
    )
    path = save_table(table, table_dir / f"{table_key(table.device, model, img, statistic)}.json")
    print(f"{model}: built {path} in {table.build_seconds:.0f} s", file=sys.stderr)
    return table, path


def run_model(args, model: str) -> dict:
    measurer = LocalMeasurer("onnxruntime")
    table, path = table_for(
        model, args.img_size, measurer, args.threads, args.table_dir, args.rebuild, args.statistic
    )
    lut = LutPredictor(table)
    linear = LinearMacsPredictor()
    for p in calibration_models(table):
        linear.add(p.arch, p.measured_ms)
    protocol = MeasureProtocol(
        warmup=args.warmup,
        runs=args.runs,
        max_batches=3,
        stability_tolerance=0.03,
        threads=args.threads,
    )
    dense = create_model(model, img_size=args.img_size)
    dense_spec = ArchSpec.dense(model, img_size=args.img_size)
    shape = [1, 3, args.img_size, args.img_size]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, ref_path = Path(tmp) / "m.onnx", Path(tmp) / "dense.onnx"
        export_onnx(dense, ref_path, img_size=args.img_size)

        def reference() -> float:
            stats = measurer.measure(ref_path, protocol, shape).stats
            return float(getattr(stats, table.statistic))

        def held_out(seed: int) -> ArchSpec:
            """Held-out spec `seed`, its sub-network exported to `onnx_path`."""
            spec = held_out_spec(model, seed, args.img_size, args.width_multiple)
            export_onnx(extract_subnet(dense, spec), onnx_path, img_size=args.img_size)
            return spec

        def timed(chosen: MeasureProtocol = protocol, path: Path = onnx_path):
            return measurer.measure(path, chosen, shape)

        short = protocol.model_copy(update={"max_batches": 1})

        def interleaved() -> dict:
            """The model at `onnx_path` over the dense model timed around it, round by round."""
            _, [ratios] = between_references(
                lambda p: getattr(timed(short, p).stats, table.statistic),
                [onnx_path],
                ref_path,
                args.rounds,
            )
            return {"median": float(np.median(ratios)), "rounds": ratios}

        # ratio predictors, by table: anchored as a job is (the dense model's build-time time)
        # and on the calibration line's own dense prediction
        tables = {"table": table} | {p.stem: load_table(p) for p in args.compare_table}
        if table.context is not None:  # what the whole-model context buys, on the same truth
            tables["table without context"] = table.model_copy(update={"context": None})
        anchored: dict[str, tuple[LutPredictor, LutPredictor]] = {}
        for name, t in tables.items():
            anchored[name] = (LutPredictor(t), LutPredictor(t))
            anchored[name][0].add(dense_spec, 1.0)  # its predictions are ratios now

        def ratio_predictions(spec: ArchSpec) -> dict[str, dict[str, float]]:
            return {
                name: {
                    "job": job.predict(spec),
                    "line": line.predict(spec) / line.predict(dense_spec),
                }
                for name, (job, line) in anchored.items()
            }

        ref_before = reference() if args.reference else None
        for seed in range(args.first_seed, args.first_seed + args.n):
            spec = held_out(seed)
            result = timed()
            measured = float(getattr(result.stats, table.statistic))
            ref_after = reference() if args.reference else None
            rebased = None
            if ref_before is not None and ref_after is not None:
                # what a job's predictor says once it has measured its dense baseline: here the
                # dense model timed just before and after this one (the device's speed now)
                job = LutPredictor(table)
                job.add(dense_spec, (ref_before + ref_after) / 2)
                rebased = job.predict(spec)
            rows.append(
                {
                    "seed": seed,
                    "arch": spec.summary(),
                    "tokens": spec.tokens.model_dump() if spec.tokens else None,
                    "measured_ms": measured,
                    "stable": result.stable,
                    "p50_ms": result.stats.p50_ms,
                    "min_ms": result.stats.min_ms,
                    "batch_p50_ms": result.batch_p50_ms,
                    "predicted_ms": lut.predict(spec),
                    "table_ms": lut.raw(spec),
                    "linear_ms": linear.predict(spec),
                    "reference_ms": [ref_before, ref_after] if args.reference else None,
                    "rebased_ms": rebased,
                    "ratio": interleaved() if args.rounds else None,
                    "predicted_ratio": anchored["table"][0].predict(spec),
                    "ratio_predictions": ratio_predictions(spec),
                    "linear_ratio": linear.predict(spec) / linear.predict(dense_spec),
                }
            )
            ref_before = ref_after
            r = rows[-1]
            print(
                f"{model} seed {seed}: measured {measured:.3f} predicted {r['predicted_ms']:.3f} "
                f"({100 * (r['predicted_ms'] / measured - 1):+.1f}%)",
                file=sys.stderr,
                flush=True,
            )
        if args.again:
            _measure_again(
                rows, args, model, held_out, timed, table.statistic, reference, interleaved
            )
    measured = [r["measured_ms"] for r in rows]
    return {
        "model": model,
        "table": str(path),
        "table_build_seconds": table.build_seconds,
        "table_measurements": table.measurements,
        "calibration": {
            "scale": lut.scale,
            "offset_ms": lut.offset,
            "models": len(calibration_models(table)),
        },
        "lut": summary([r["predicted_ms"] for r in rows], measured),
        "table_raw": summary([r["table_ms"] for r in rows], measured),
        "linear_macs": summary([r["linear_ms"] for r in rows], measured),
        **(_drift(rows, measured, lut.predict(dense_spec)) if args.reference else {}),
        **(_self_agreement(rows) if args.again else {}),
        **(_ratios(rows, args.again) if args.rounds else {}),
        "rows": rows,
    }


def _measure_again(
    rows, args, model, held_out, timed, statistic: str, reference, interleaved
) -> None:
    """Every held-out model a second time, in reverse order (each pair minutes apart), with
    the dense reference timed after each as in the first pass (when the first pass did)."""
    ref_before = reference() if args.reference else None
    for r in reversed(rows):
        held_out(r["seed"])
        again = timed()
        r["measured_again_ms"] = float(getattr(again.stats, statistic))
        r["stable_again"] = again.stable
        if args.reference:
            ref_after = reference()
            r["reference_again_ms"] = [ref_before, ref_after]
            ref_before = ref_after
        if args.rounds:
            r["ratio_again"] = interleaved()
        print(
            f"{model} seed {r['seed']}: again {r['measured_again_ms']:.3f} "
            f"({100 * (r['measured_again_ms'] / r['measured_ms'] - 1):+.1f}%)",
            file=sys.stderr,
            flush=True,
        )


def _ratios(rows: list[dict], again: bool) -> dict:
    """The predictors against the interleaved ratio to the dense model, and (with `again`)
    that ratio against itself."""
    first = [r["ratio"]["median"] for r in rows]
    out = {
        "ratio_lut": summary([r["predicted_ratio"] for r in rows], first),
        "ratio_linear": summary([r["linear_ratio"] for r in rows], first),
        "ratio_by_table": {
            name: {
                anchor: summary([r["ratio_predictions"][name][anchor] for r in rows], first)
                | {"signed_median_pct": _signed(rows, name, anchor, first)}
                for anchor in ("job", "line")
            }
            for name in rows[0]["ratio_predictions"]
        },
    }
    if again:
        second = [r["ratio_again"]["median"] for r in rows]
        mean = [(a + b) / 2 for a, b in zip(first, second, strict=True)]
        out["ratio_self"] = summary(first, second)
        out["ratio_lut_vs_mean"] = summary([r["predicted_ratio"] for r in rows], mean)
    return out


def _signed(rows: list[dict], name: str, anchor: str, truth: list[float]) -> float:
    predicted = [r["ratio_predictions"][name][anchor] for r in rows]
    return float(np.median(np.array(predicted) / np.array(truth) - 1) * 100)


def _self_agreement(rows: list[dict]) -> dict:
    """The device against itself (the second pass as the truth for the first), and the
    predictors against the mean of both passes (half the measurement noise in the truth)."""
    first = [r["measured_ms"] for r in rows]
    second = [r["measured_again_ms"] for r in rows]
    mean = [(a + b) / 2 for a, b in zip(first, second, strict=True)]
    out = {
        "device_self": summary(first, second),
        "lut_vs_mean": summary([r["predicted_ms"] for r in rows], mean),
        "linear_vs_mean": summary([r["linear_ms"] for r in rows], mean),
    }
    if rows and rows[0]["rebased_ms"] is not None:
        out["lut_rebased_vs_mean"] = summary([r["rebased_ms"] for r in rows], mean)
        # each measurement over the dense reference timed around it: the host's speed at that
        # moment divided out, as a job's rescale on its dense baseline does
        ratio = [m / (sum(r["reference_ms"]) / 2) for m, r in zip(first, rows, strict=True)]
        again = [m / (sum(r["reference_again_ms"]) / 2) for m, r in zip(second, rows, strict=True)]
        out["device_self_over_reference"] = summary(ratio, again)
    return out


def _drift(rows: list[dict], measured: list[float], dense_predicted: float) -> dict:
    """The device's own drift, from the dense reference measured between held-out models, and
    the predictor rebased on it."""
    refs = [rows[0]["reference_ms"][0]] + [r["reference_ms"][1] for r in rows]
    steps = np.abs(np.diff(refs) / np.array(refs[:-1])) * 100
    return {
        "lut_rebased": summary([r["rebased_ms"] for r in rows], measured),
        "reference": {
            "dense_predicted_ms": dense_predicted,
            "min_ms": float(min(refs)),
            "max_ms": float(max(refs)),
            "max_over_min": float(max(refs) / min(refs)),
            "median_step_pct": float(np.median(steps)),
            "p95_step_pct": float(np.percentile(steps, 95)),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models", nargs="+", default=["deit_tiny_patch16_224", "deit_small_patch16_224"]
    )
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width-multiple", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--table-dir", type=Path, default=ROOT / "bench" / "results" / "tables")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="do not time the dense model between held-out models (no drift figures)",
    )
    parser.add_argument("--statistic", default="p50_ms", choices=["p50_ms", "min_ms"])
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="also time each model in this many rounds alternating with the dense model",
    )
    parser.add_argument(
        "--again",
        action="store_true",
        help="measure every held-out model a second time: the device's agreement with itself",
    )
    parser.add_argument(
        "--compare-table",
        type=Path,
        nargs="*",
        default=[],
        help="more tables of the same model to score on the same measurements (with --rounds)",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import onnxruntime

    from device_agents.fingerprint import host_info

    started, load_before = time.time(), os.getloadavg()
    results = [run_model(args, m) for m in args.models]
    host = host_info()
    body = {
        "command": " ".join(sys.argv),
        "cpu_model": host.cpu_model,
        "cores": host.cores,
        "os": host.os,
        "onnxruntime": onnxruntime.__version__,
        "threads": args.threads,
        "statistic": args.statistic,
        "protocol": {
            "warmup": args.warmup,
            "runs_per_batch": args.runs,
            "max_batches": 3,
            "stability_tolerance": 0.03,
        },
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "wall_seconds": time.time() - started,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(body, indent=1))
    for r in results:
        print(r["model"], "lut", r["lut"], "raw", r["table_raw"], "linear", r["linear_macs"])
        if "lut_rebased" in r:
            print(r["model"], "rebased", r["lut_rebased"], "reference", r["reference"])
        for key in ("ratio_lut", "ratio_linear", "ratio_self", "ratio_lut_vs_mean"):
            if key in r:
                print(r["model"], key, r[key])
        for name, anchors in r.get("ratio_by_table", {}).items():
            for anchor, score in anchors.items():
                print(r["model"], name, f"anchored on the {anchor}'s dense", score)
        if "device_self" in r:
            print(r["model"], "device against itself", r["device_self"])
            if "device_self_over_reference" in r:
                print(r["model"], "over the reference", r["device_self_over_reference"])
            print(r["model"], "lut vs mean", r["lut_vs_mean"])
            if "lut_rebased_vs_mean" in r:
                print(r["model"], "rebased vs mean", r["lut_rebased_vs_mean"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

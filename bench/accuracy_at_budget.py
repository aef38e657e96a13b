"""Accuracy at a latency budget on CIFAR-10 (issue 5's benchmark).

A dense teacher (`deit_tiny_patch4_32`, trained once with `budgetprune train-teacher` and kept
under bench/teachers/) is measured here (ONNX Runtime, 1 thread, certification protocol, the
worse of two repeats); each strategy then runs the whole job pipeline (the device's latency
lookup table, built once through the same measurer; fit; measuring loop; certification on this
CPU; distillation) at 70/50/35% of that p90, and the certified latency and top-1 after pruning
are recorded. Every delivered model sees the same number of training steps: 2 x
--finetune-steps (a fitting strategy's fit plus the job's final fine-tuning; the strategies that
do not train before the certification loop, `TRAINING_FREE`, get all of it as final
fine-tuning). Baselines: `uniform` (one keep ratio for attention dims and FFN neurons, same
stages and fine-tuning as ratio_search), `uniform_1x` (that cut made at once, then only
fine-tuning, as netadapt and toast are) and Torch-Pruning's
magnitude pruner, its channel ratio bisected on MEASURED latency to the same target the pipeline
certifies at (budget less the 5% margin), then distilled for as many steps as a training
strategy's delivered model saw (fit + recovery) and measured with the certification protocol.

At the end every row's model is timed again between two timings of the dense model
(--side-by-side rounds, median p50 ratio): the certified times were taken minutes to hours apart on
a host whose speed drifts (on one 2-core VM consecutive dense timings read 0.87-1.42x their
median), so the rows compare by that ratio, and the plot puts them at it times the dense p90.

Rows are appended to --out as they finish; a rerun with the same --out skips the done ones,
except the methods named by --redo, whose old rows are kept under `superseded`.

    .venv/bin/python bench/accuracy_at_budget.py --out bench/results/accuracy_at_budget.json
    .venv/bin/python bench/accuracy_at_budget.py --smoke --out /tmp/acc_smoke.json  # plumbing

Results and conditions: bench/README.md, section "Accuracy at budget".
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
import zipfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from budgetprune.errors import InfeasibleBudgetError  # noqa: E402
from budgetprune.hashing import sha256_file  # noqa: E402
from budgetprune.plots import scatter_chart  # noqa: E402
from budgetprune.schemas import ArchSpec, JobCreate, MeasureProtocol  # noqa: E402
from budgetprune.signing import CertificateSigner  # noqa: E402
from latency_tables.side_by_side import between_references  # noqa: E402
from vitprune.data import balanced_subset, loader, open_split  # noqa: E402
from vitprune.export import export_onnx  # noqa: E402
from vitprune.models import create_model  # noqa: E402
from vitprune.strategies import (  # noqa: E402
    Fitted,
    SearchContext,
    TrainContext,
    register_strategy,
)
from vitprune.strategies.ratio_search import RatioPair, RatioSearch, uniform_spec  # noqa: E402
from vitprune.train import TrainConfig, evaluate, finetune  # noqa: E402
from worker.measurers import LocalMeasurer  # noqa: E402
from worker.pipeline import run_pipeline  # noqa: E402

MODEL = "deit_tiny_patch4_32"
STRATEGIES = (
    "netadapt",
    "hiap",
    "hiap_token",
    "token",
    "toast",
    "ratio_search",
    "uniform",
    "uniform_1x",
)
# no training before the certification loop: their final fine-tuning is the whole budget
TRAINING_FREE = frozenset({"netadapt", "toast", "uniform_1x"})


@register_strategy("uniform")
class Uniform(RatioSearch):
    """Baseline: the same keep ratio for attention dims and FFN neurons (benchmark only)."""

    def pair_for(
        self, ctx: SearchContext, goal_ms: float, loss=None, base=None
    ) -> RatioPair | None:
        """One ratio for both parts: `loss` has nothing to choose between."""
        base = base or ctx.dense
        info = ctx.dense.info
        m = ctx.width_multiple

        def pair(r: float) -> RatioPair:
            dims = min(info.head_dim, max(m, round(r * info.head_dim / m) * m))
            return dims, min(info.mlp_hidden, max(m, round(r * info.mlp_hidden / m) * m))

        lo, hi = 0.0, 1.0
        if ctx.predict_ms(uniform_spec(base, *pair(lo))) > goal_ms:
            return None
        for _ in range(14):
            mid = (lo + hi) / 2
            ok = ctx.predict_ms(uniform_spec(base, *pair(mid))) <= goal_ms
            lo, hi = (mid, hi) if ok else (lo, mid)
        return pair(lo)

    def probe_candidates(self, ctx, goal_ms, loss, base) -> list[RatioPair]:
        """One ratio: no pairs to probe between."""
        return []


@register_strategy("uniform_1x")
class UniformOnce(Uniform):
    """Baseline at the fine-tuning budget of the strategies that do not train before the
    certification loop (netadapt, toast): the uniform spec cut at once, then only the job's
    final fine-tuning (benchmark only)."""

    def fit(self, ctx: TrainContext, goal_ms: float) -> Fitted:
        search = ctx.search
        pair = self.pair_for(search, goal_ms)
        spec = (
            uniform_spec(search.dense, *pair)
            if pair is not None
            else self.propose(search, search.dense, goal_ms)
        )
        return Fitted(spec, copy.deepcopy(ctx.model), [], ["one uniform cut, no staged tuning"])


def subset_zip(src: Path, dst: Path, train_per_class: int, val_per_class: int) -> Path:
    """A class-balanced, seeded subset of the CIFAR-10 zip (train/ and test/ -> val/)."""
    if dst.exists():
        return dst
    tmp = dst.with_suffix(".part")
    with zipfile.ZipFile(src) as zin:
        by: dict[tuple[str, str], list[str]] = defaultdict(list)
        for name in zin.namelist():
            parts = PurePosixPath(name).parts
            if len(parts) == 3 and parts[0] in ("train", "test") and name.endswith(".jpg"):
                by[(parts[0], parts[1])].append(name)
        rng = random.Random(0)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zout:
            for (split, cls), names in sorted(by.items()):
                n = train_per_class if split == "train" else val_per_class
                for name in rng.sample(sorted(names), min(n, len(names))):
                    out_split = "train" if split == "train" else "val"
                    zout.writestr(f"{out_split}/{cls}/{PurePosixPath(name).name}", zin.read(name))
    tmp.replace(dst)
    return dst


def ensure_teacher(data: Path, out: Path, steps: int, batch_size: int) -> dict:
    """The teacher in `out`, trained there first if it is not (resumable: train-teacher keeps a
    checkpoint beside it)."""
    summary = out / "teacher.json"
    if (out / "model.safetensors").exists() and summary.exists():
        return json.loads(summary.read_text())
    cmd = [str(ROOT / ".venv/bin/budgetprune"), "train-teacher", "--model", MODEL]
    cmd += ["--dataset", str(data), "--out", str(out), "--steps", str(steps)]
    cmd += ["--batch-size", str(batch_size), "--json"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(summary.read_text())


def measured_p90(path: Path, protocol: MeasureProtocol, repeats: int = 2) -> dict:
    """The certification rule without a certificate: the worse p90 of `repeats` measurements."""
    measurer = LocalMeasurer("onnxruntime")
    results = [measurer.measure(path, protocol, [1, 3, 32, 32]) for _ in range(repeats)]
    return {
        "p90_ms": max(r.stats.p90_ms for r in results),
        "p50_ms": max(r.stats.p50_ms for r in results),
        "repeats_p90": [r.stats.p90_ms for r in results],
        "stable": all(r.stable for r in results),
    }


def dense_latency(checkpoint: Path, work: Path) -> dict:
    model = create_model(MODEL, num_classes=10, checkpoint=str(checkpoint)).eval()
    path = work / "dense.onnx"
    export_onnx(model, path, img_size=32)
    return measured_p90(path, MeasureProtocol.certify(1))


def run_strategy(
    strategy: str, budget_ms: float, args, data: Path, ckpt: Path, work: Path, seed: int
):
    recovery = (2 if strategy in TRAINING_FREE else 1) * args.finetune_steps
    spec = JobCreate(
        model=MODEL,
        num_classes=10,
        budget_ms=budget_ms,
        strategy=strategy,
        dataset=str(data),
        checkpoint=str(ckpt),
        finetune_steps=recovery,
        batch_size=args.batch_size,
        eval_per_class=args.val_per_class,
        latency_table="auto",
        seed=seed,
    )
    job = job_dir(work, strategy, budget_ms, seed)
    shutil.rmtree(job, ignore_errors=True)  # a job cut off by an interrupted run starts over
    t0 = time.monotonic()
    try:
        result = run_pipeline(
            job_id=job.name,
            spec=spec,
            out_dir=job / "out",
            measurer=LocalMeasurer("onnxruntime"),
            signer=CertificateSigner.load_or_create(work / "key"),
            report=lambda *a, **k: None,
            tables_dir=work / "tables",
        )
    except InfeasibleBudgetError as exc:
        return {"strategy": strategy, "state": "infeasible", "best_ms": exc.best_latency_ms}
    report = result.report
    fit = report["strategy_fit"] or {}
    trained = sum(1 for c in fit.get("curve", []) if "step" in c) if fit else 0
    return {
        "strategy": strategy,
        "state": "certified" if result.certificate.passed else "failed",
        "certified_ms": result.certificate.certified_ms,
        "top1_before": report["accuracy"]["before"],
        "top1_after": report["accuracy"]["after"],
        "pruned_gmacs": report["cost"]["pruned_gmacs"],
        "arch": ArchSpec.model_validate_json((job / "out" / "arch.json").read_text()).summary(),
        "tokens": json.loads((job / "out" / "arch.json").read_text()).get("tokens"),
        "fit_steps": trained,
        "recovery_steps": recovery,
        "rounds": len(report["rounds"]),
        "notes": fit.get("notes", []),
        "seconds": round(time.monotonic() - t0, 1),
    }


def _tp_pruned(ckpt: Path, ratio: float):
    """Torch-Pruning's MagnitudePruner on qkv and fc1 outputs (head dims and MLP neurons)."""
    import torch_pruning as tp

    model = create_model(MODEL, num_classes=10, checkpoint=str(ckpt))
    if ratio <= 0:
        return model
    num_heads = {blk.attn.qkv: blk.attn.num_heads for blk in model.blocks}
    pruner = tp.pruner.MagnitudePruner(
        model,
        torch.randn(1, 3, 32, 32),
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=[model.head, model.patch_embed, *[b.attn.proj for b in model.blocks]]
        + [b.mlp.fc2 for b in model.blocks],
        num_heads=num_heads,
        prune_head_dims=True,
        prune_num_heads=False,
    )
    pruner.step()
    for blk in model.blocks:
        blk.attn.attn_dim = blk.attn.qkv.out_features // 3
        blk.attn.head_dim = blk.attn.attn_dim // blk.attn.num_heads
    return model


def torch_pruning_row(
    budget_ms: float, args, data: Path, ckpt: Path, work: Path, name: str, seed: int
) -> dict:
    """Bisect the channel ratio on measured p90 (quick protocol) to the largest model under the
    pipeline's target, confirm it with the certification rule (latency does not depend on the
    weights, so before training), distil it, then measure it as a certificate would be.

    `torch_pruning` distils for 2 x finetune_steps, the total a fitting strategy's delivered
    model saw (fit + recovery); `torch_pruning_1x` for finetune_steps, what every job's
    delivered model gets after its last pruning (netadapt and toast get only that)."""
    t0 = time.monotonic()
    target = budget_ms * (1 - JobCreate.model_fields["margin"].default)
    path = model_path(work, name, budget_ms, seed)
    path.parent.mkdir(parents=True, exist_ok=True)

    def p90_at(ratio: float, protocol: MeasureProtocol) -> float:
        export_onnx(_tp_pruned(ckpt, ratio).eval(), path, img_size=32)
        return measured_p90(path, protocol, repeats=1)["p90_ms"]

    quick = MeasureProtocol.quick(1)
    lo, hi = 0.0, 0.95  # removed share of channels: lo is known to be too slow, hi fast enough
    if p90_at(hi, quick) > target:
        return {"strategy": name, "state": "infeasible at 95% of channels removed"}
    if p90_at(lo, quick) > target:
        for _ in range(args.tp_bisect_steps):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if p90_at(mid, quick) <= target else (mid, hi)
    ratio = hi
    while ratio < 0.95 and p90_at(ratio, MeasureProtocol.certify(1)) > target:
        ratio = min(0.95, ratio + 0.02)
    teacher = create_model(MODEL, num_classes=10, checkpoint=str(ckpt)).eval()
    model = _tp_pruned(ckpt, ratio)
    steps = (1 if name.endswith("_1x") else 2) * args.finetune_steps
    torch.manual_seed(seed)  # the data order, as a job's seed sets it
    train = loader(open_split(data, "train", 32, train=True), args.batch_size, shuffle=True)
    if steps:
        cfg = TrainConfig(steps=steps, lr=2e-4, warmup_steps=min(20, steps // 10))
        finetune(model, train, cfg, teacher=teacher)
    val = loader(balanced_subset(open_split(data, "val", 32), args.val_per_class), 100, False)
    export_onnx(model.eval(), path, img_size=32)
    m = measured_p90(path, MeasureProtocol.certify(1))
    return {
        "strategy": name,
        "state": "under target" if m["p90_ms"] <= target else "over target",
        "certified_ms": m["p90_ms"],
        "measured": m,
        "top1_after": evaluate(model, val),
        "channel_ratio_removed": round(ratio, 4),
        "params": sum(p.numel() for p in model.parameters()),
        "fit_steps": 0,
        "recovery_steps": steps,
        "seconds": round(time.monotonic() - t0, 1),
    }


def job_dir(work: Path, method: str, budget_ms: float, seed: int) -> Path:
    """A row's folder (seed 0 unsuffixed: the rows from before `--seeds`)."""
    return work / "jobs" / (f"{method}-{budget_ms:.3f}" + (f"-seed{seed}" if seed else ""))


def model_path(work: Path, method: str, budget_ms: float, seed: int) -> Path:
    """Where a row's delivered ONNX model is kept (a job's own output for the strategies)."""
    job = job_dir(work, method, budget_ms, seed)
    return job / "model.onnx" if method in BASELINES else job / "out" / "model.onnx"


def side_by_side(body: dict, work: Path, rounds: int) -> None:
    """Time every row's model between two timings of the dense model, `rounds` times, and
    record its median p50 ratio (and that ratio at the dense p90 the budgets came from): the
    certified times were taken minutes to hours apart, on a host whose speed drifts. The p50,
    not the p90: on a 2-core VM the p90 ratios of one model ranged 0.32-0.49 over 5 rounds."""
    protocol = MeasureProtocol(warmup=10, runs=200, max_batches=1, threads=1)
    measurer = LocalMeasurer("onnxruntime")
    rows = [r for r in body["rows"] if r.get("top1_after") is not None]
    paths = [model_path(work, r["strategy"], r["budget_ms"], r["seed"]) for r in rows]
    kept = [(r, p) for r, p in zip(rows, paths, strict=True) if p.exists()]
    if not kept:
        return
    dense_ms, ratios = between_references(
        lambda path: measurer.measure(path, protocol, [1, 3, 32, 32]).stats.p50_ms,
        [p for _, p in kept],
        work / "dense.onnx",
        rounds,
    )
    for (row, _), r in zip(kept, ratios, strict=True):
        over = float(np.median(r))
        row["side_by_side"] = {
            "p50_over_dense": round(over, 4),
            "rounds": [round(x, 4) for x in r],
            "ms_at_dense_p90": round(over * body["dense"]["p90_ms"], 4),
        }
    body["side_by_side"] = {
        "rounds": rounds,
        "protocol": protocol.model_dump(),
        "dense_p50_ms": [round(x, 4) for x in dense_ms],
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "commit": _commit(),
    }


BASELINES = ("torch_pruning", "torch_pruning_1x")
METHODS = (*STRATEGIES, *BASELINES)
COLOURS = {
    "netadapt": "#2f6fde",
    "hiap": "#c62828",
    "hiap_token": "#8e24aa",
    "token": "#e08a1e",
    "toast": "#2e7d32",
    "ratio_search": "#00838f",
    "uniform": "#616161",
    "uniform_1x": "#9e9e9e",
    "torch_pruning": "#000000",
    "torch_pruning_1x": "#8d6e63",
}


def pareto_svg(body: dict) -> str:
    rows = [r for r in body["rows"] if r.get("top1_after") is not None]
    paired = all("side_by_side" in r for r in rows)

    def x(r: dict) -> float:
        return r["side_by_side"]["ms_at_dense_p90"] if paired else r["certified_ms"]

    series = []
    for method in METHODS:
        pts = sorted((x(r), 100 * r["top1_after"]) for r in rows if r["strategy"] == method)
        if pts:
            series.append((method, COLOURS[method], pts))
    dense = (body["dense"]["p90_ms"], 100 * body["teacher"]["top1"])
    series.append(("dense teacher", "#ff00ff", [dense]))
    return scatter_chart(
        series,
        title=f"CIFAR-10 (JPEG copy): top-1 against measured p90, {MODEL}",
        xlabel=(
            "p50 over the dense model's, timed side by side, x the dense p90, ms"
            if paired
            else "p90 latency measured here, ms"
        )
        + " (ONNX Runtime, 1 thread)",
        ylabel="top-1 %",
    )


def markdown(body: dict) -> str:
    lines = [
        "| budget | method | seed | state | p90 ms | side by side: p50 / dense (x dense p90, ms) "
        "| top-1 | GMACs | arch |",
        "|" + "---|" * 9,
    ]
    for r in body["rows"]:
        top1 = f"{100 * r['top1_after']:.2f}%" if r.get("top1_after") is not None else "-"
        ms = r.get("certified_ms") or r.get("best_ms")
        gm = f"{r['pruned_gmacs']:.4f}" if "pruned_gmacs" in r else "-"
        sbs = r.get("side_by_side")
        paired = f"{sbs['p50_over_dense']:.3f} ({sbs['ms_at_dense_p90']:.2f})" if sbs else "-"
        lines.append(
            f"| {r['budget_fraction']:.0%} ({r['budget_ms']:.2f} ms) | {r['strategy']} | "
            f"{r['seed']} | {r['state']} | {ms:.2f} | {paired} | {top1} | {gm} | "
            f"{r.get('arch', '-')} |"
        )
    return "\n".join(lines + seed_means(body["rows"]))


def seed_means(rows: list[dict]) -> list[str]:
    """Mean top-1 over seeds per budget and method, where any ran more than one seed."""
    top1 = defaultdict(list)
    for r in rows:
        if r.get("top1_after") is not None:
            top1[(r["budget_fraction"], r["strategy"])].append(100 * r["top1_after"])
    if all(len(v) < 2 for v in top1.values()):
        return []
    lines = ["", "| budget | method | seeds | mean top-1 | min-max |", "|" + "---|" * 5]
    for (fraction, method), v in sorted(top1.items()):
        lines.append(
            f"| {fraction:.0%} | {method} | {len(v)} | {np.mean(v):.2f}% | "
            f"{min(v):.2f}-{max(v):.2f}% |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10-jpeg.zip"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default=str(ROOT / "bench/results/acc-work"))
    parser.add_argument("--teacher", default=str(ROOT / f"bench/teachers/{MODEL}"))
    parser.add_argument("--smoke", action="store_true", help="tiny run: plumbing only")
    parser.add_argument("--train-per-class", type=int, default=5000)
    parser.add_argument("--val-per-class", type=int, default=1000)
    parser.add_argument("--teacher-steps", type=int, default=8000)
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--tp-bisect-steps", type=int, default=6)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.7, 0.5, 0.35])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="run each method once per seed (the job's `seed`: data order, augmentation, gate "
        "noise): two seeds moved one row by 1.9 points (bench/README.md)",
    )
    parser.add_argument(
        "--redo",
        nargs="+",
        default=[],
        choices=METHODS,
        help="run these methods again at --budgets (after a change to them); their earlier "
        "rows move to `superseded`, kept with the commit they ran",
    )
    parser.add_argument(
        "--side-by-side",
        type=int,
        default=5,
        metavar="ROUNDS",
        help="at the end, time every row's model between two timings of the dense model, this "
        "many rounds (0: not)",
    )
    args = parser.parse_args()
    work = Path(args.work)
    if args.smoke:
        args.train_per_class, args.val_per_class = 30, 10
        args.teacher_steps, args.finetune_steps, args.batch_size = 20, 4, 16
        args.tp_bisect_steps = 2
        work, args.teacher = work / "smoke", str(work / "smoke" / "teacher")
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    # Jobs evaluate on `val_per_class` images of each class themselves; a subset zip is only
    # needed to train on fewer images (named by its sizes, so other settings never reuse it).
    data = (
        Path(args.data)
        if args.train_per_class >= 5000
        else subset_zip(
            Path(args.data),
            work / f"data-{args.train_per_class}-{args.val_per_class}.zip",
            args.train_per_class,
            args.val_per_class,
        )
    )
    teacher = ensure_teacher(data, Path(args.teacher), args.teacher_steps, args.batch_size)
    ckpt = Path(args.teacher) / "model.safetensors"
    body = json.loads(out.read_text()) if out.exists() else {}
    if body and body["machine"]["cpu"] != _cpu():
        parser.error(
            f"{out} holds rows measured on {body['machine']['cpu']}, this is {_cpu()}: "
            "budgets are fractions of that machine's dense p90; give another --out"
        )
    for row in body.get("rows", []):
        row.setdefault("seed", 0)  # rows from before `--seeds` ran with the job's default
    if body.get("teacher_sha256") != sha256_file(ckpt) or body.get("args") != _key(args):
        body = {}  # another teacher or other settings: the old rows say nothing about this run
    if not body:
        body = {
            "smoke": args.smoke,
            "model": MODEL,
            "args": _key(args),
            "teacher_sha256": sha256_file(ckpt),
            "teacher": {k: teacher[k] for k in ("steps", "batch_size", "top1", "val_images")},
            "dense": dense_latency(ckpt, work),
            "machine": {
                "cpu": _cpu(),
                "cores": os.cpu_count(),
                "python": platform.python_version(),
            },
            "runtime": "onnxruntime 1 thread; certified = worse p90 of 2 certification runs",
            "started_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "rows": [],
        }
    dense_ms = body["dense"]["p90_ms"]
    print(f"teacher top-1 {teacher['top1']:.4f}, dense p90 {dense_ms:.3f} ms", file=sys.stderr)
    if set(args.redo) - set(args.methods):
        parser.error("--redo names methods that --methods does not run")
    redo = {(f, m, seed) for f in args.budgets for m in args.redo for seed in args.seeds}
    stale = [r for r in body["rows"] if _row_key(r) in redo]
    body.setdefault("superseded", []).extend(stale)
    body["rows"] = [r for r in body["rows"] if r not in stale]
    done = {_row_key(r) for r in body["rows"]}
    commit = _commit()  # the code this process loaded
    for fraction in args.budgets:
        budget = fraction * dense_ms
        for seed in args.seeds:
            for method in args.methods:
                if (fraction, method, seed) in done:
                    continue
                try:
                    if method in BASELINES:
                        row = torch_pruning_row(budget, args, data, ckpt, work, method, seed)
                    else:
                        row = run_strategy(method, budget, args, data, ckpt, work, seed)
                except Exception as exc:  # one method failing must not lose the other rows
                    row = {"strategy": method, "state": f"error: {type(exc).__name__}: {exc}"}
                row |= {"seed": seed, "commit": commit}
                body["rows"].append({"budget_fraction": fraction, "budget_ms": budget, **row})
                body["seconds"] = round(sum(r.get("seconds", 0) for r in body["rows"]), 1)
                _save(out, body)
                print(json.dumps(body["rows"][-1]), file=sys.stderr, flush=True)
    if args.side_by_side:
        print(f"timing {len(body['rows'])} models side by side", file=sys.stderr, flush=True)
        side_by_side(body, work, args.side_by_side)
        _save(out, body)
    out.with_suffix(".svg").write_text(pareto_svg(body))
    out.with_suffix(".md").write_text(markdown(body) + "\n")
    print(markdown(body))
    return 0


def _row_key(row: dict) -> tuple[float, str, int]:
    return row["budget_fraction"], row["strategy"], row["seed"]


def _key(args) -> dict:
    keep = ("train_per_class", "val_per_class", "finetune_steps", "batch_size", "smoke")
    return {k: getattr(args, k) for k in keep}


def _cpu() -> str:
    from device_agents.fingerprint import cpu_model

    return cpu_model()


def _commit() -> str:
    """The code a run loaded (rows of one file may span commits when a run is resumed)."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "-uno"], capture_output=True, text=True)
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _save(path: Path, body: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2))
    tmp.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())

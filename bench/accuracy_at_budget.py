"""Accuracy at a latency budget on CIFAR-10 (issue 5's benchmark).

A dense teacher is trained with `budgetprune train-teacher`; its p90 latency is measured here
(ONNX Runtime, 1 thread, certification protocol); each strategy then runs the whole job
pipeline (fit, measuring loop, certification on this CPU, distillation) at 70/50/35% of that
p90, and the certified latency and top-1 after pruning are recorded. Baselines: one uniform
ratio for attention and FFN (same stages and fine-tuning as ratio_search), and Torch-Pruning's
magnitude pruner at the uniform ratio's cut when `torch_pruning` is importable (its model is
measured the same way but is not an arch spec, so it is not certified by the pipeline).

Full run (hours on a CPU):
    .venv/bin/python bench/accuracy_at_budget.py --out bench/results/accuracy_at_budget.json
Smoke run (minutes; proves the plumbing, says nothing about accuracy):
    .venv/bin/python bench/accuracy_at_budget.py --smoke --out /tmp/acc_smoke.json

Results and conditions: bench/README.md, section "Accuracy at budget".
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from budgetprune.errors import InfeasibleBudgetError  # noqa: E402
from budgetprune.schemas import ArchSpec, JobCreate, MeasureProtocol  # noqa: E402
from budgetprune.signing import CertificateSigner  # noqa: E402
from vitprune.data import balanced_subset, loader, open_split  # noqa: E402
from vitprune.export import export_onnx  # noqa: E402
from vitprune.models import create_model  # noqa: E402
from vitprune.strategies import SearchContext, register_strategy  # noqa: E402
from vitprune.strategies.ratio_search import RatioPair, RatioSearch, uniform_spec  # noqa: E402
from vitprune.train import TrainConfig, evaluate, finetune  # noqa: E402
from worker.measurers import LocalMeasurer  # noqa: E402
from worker.pipeline import run_pipeline  # noqa: E402

MODEL = "deit_tiny_patch4_32"
STRATEGIES = ("netadapt", "hiap", "hiap_token", "token", "toast", "ratio_search", "uniform")


@register_strategy("uniform")
class Uniform(RatioSearch):
    """Baseline: the same keep ratio for attention dims and FFN neurons (benchmark only)."""

    def pair_for(
        self, ctx: SearchContext, scores: Sequence[Sequence[float]], goal_ms: float
    ) -> RatioPair | None:
        info = ctx.dense.info
        m = ctx.width_multiple

        def pair(r: float) -> RatioPair:
            dims = min(info.head_dim, max(m, round(r * info.head_dim / m) * m))
            return dims, min(info.mlp_hidden, max(m, round(r * info.mlp_hidden / m) * m))

        lo, hi = 0.0, 1.0
        if ctx.predict_ms(uniform_spec(ctx.dense, *pair(lo))) > goal_ms:
            return None
        for _ in range(14):
            mid = (lo + hi) / 2
            ok = ctx.predict_ms(uniform_spec(ctx.dense, *pair(mid))) <= goal_ms
            lo, hi = (mid, hi) if ok else (lo, mid)
        return pair(lo)


def subset_zip(src: Path, dst: Path, train_per_class: int, val_per_class: int) -> Path:
    """A class-balanced, seeded subset of the CIFAR-10 zip (train/ and test/ -> val/)."""
    with zipfile.ZipFile(src) as zin:
        by: dict[tuple[str, str], list[str]] = defaultdict(list)
        for name in zin.namelist():
            parts = PurePosixPath(name).parts
            if len(parts) == 3 and parts[0] in ("train", "test") and name.endswith(".jpg"):
                by[(parts[0], parts[1])].append(name)
        rng = random.Random(0)
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
            for (split, cls), names in sorted(by.items()):
                n = train_per_class if split == "train" else val_per_class
                for name in rng.sample(sorted(names), min(n, len(names))):
                    out_split = "train" if split == "train" else "val"
                    zout.writestr(f"{out_split}/{cls}/{PurePosixPath(name).name}", zin.read(name))
    return dst


def train_teacher(data: Path, out: Path, steps: int, batch_size: int) -> dict:
    cmd = [str(ROOT / ".venv/bin/budgetprune"), "train-teacher", "--model", MODEL]
    cmd += ["--dataset", str(data), "--out", str(out), "--steps", str(steps)]
    cmd += ["--batch-size", str(batch_size), "--json"]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


def dense_p90(checkpoint: Path, work: Path) -> float:
    model = create_model(MODEL, num_classes=10, checkpoint=str(checkpoint)).eval()
    path = work / "dense.onnx"
    export_onnx(model, path, img_size=32)
    result = LocalMeasurer("onnxruntime").measure(path, MeasureProtocol.certify(1), [1, 3, 32, 32])
    return result.stats.p90_ms


def run_strategy(strategy: str, budget_ms: float, args, data: Path, ckpt: Path, work: Path):
    spec = JobCreate(
        model=MODEL,
        num_classes=10,
        budget_ms=budget_ms,
        strategy=strategy,
        dataset=str(data),
        checkpoint=str(ckpt),
        finetune_steps=args.finetune_steps,
        batch_size=args.batch_size,
        eval_per_class=args.val_per_class,
    )
    job = work / f"{strategy}-{budget_ms:.3f}"
    t0 = time.monotonic()
    try:
        result = run_pipeline(
            job_id=job.name,
            spec=spec,
            out_dir=job / "out",
            measurer=LocalMeasurer("onnxruntime"),
            signer=CertificateSigner.load_or_create(work / "key"),
            report=lambda *a, **k: None,
        )
    except InfeasibleBudgetError as exc:
        return {"strategy": strategy, "state": "infeasible", "best_ms": exc.best_latency_ms}
    report = result.report
    return {
        "strategy": strategy,
        "state": "certified" if result.certificate.passed else "failed",
        "certified_ms": result.certificate.certified_ms,
        "top1_before": report["accuracy"]["before"],
        "top1_after": report["accuracy"]["after"],
        "pruned_gmacs": report["cost"]["pruned_gmacs"],
        "arch": ArchSpec.model_validate_json((job / "out" / "arch.json").read_text()).summary(),
        "rounds": len(report["rounds"]),
        "seconds": round(time.monotonic() - t0, 1),
    }


def torch_pruning_row(ratio: float, budget_ms: float, args, data: Path, ckpt: Path, work: Path):
    """Torch-Pruning's MagnitudePruner on qkv/fc1 outputs (head dims and MLP neurons), at
    `ratio` of the channels removed, distilled with the same steps, measured like the rest."""
    import torch_pruning as tp

    teacher = create_model(MODEL, num_classes=10, checkpoint=str(ckpt)).eval()
    model = create_model(MODEL, num_classes=10, checkpoint=str(ckpt))
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
    train = loader(open_split(data, "train", 32, train=True), args.batch_size, shuffle=True)
    val = loader(balanced_subset(open_split(data, "val", 32), args.val_per_class), 100, False)
    if args.finetune_steps:
        finetune(model, train, TrainConfig(steps=args.finetune_steps, lr=2e-4), teacher=teacher)
    path = work / f"tp-{ratio:.3f}.onnx"
    export_onnx(model.eval(), path, img_size=32)
    ms = LocalMeasurer("onnxruntime").measure(path, MeasureProtocol.certify(1), [1, 3, 32, 32])
    p90 = ms.stats.p90_ms
    return {
        "strategy": "torch_pruning",
        "state": "under budget" if p90 <= budget_ms else "over budget",
        "measured_ms": p90,
        "top1_after": evaluate(model, val),
        "channel_ratio_removed": ratio,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/cifar10-jpeg.zip"))
    parser.add_argument("--out", required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny run: plumbing only")
    parser.add_argument("--train-per-class", type=int, default=5000)
    parser.add_argument("--val-per-class", type=int, default=1000)
    parser.add_argument("--teacher-steps", type=int, default=30000)
    parser.add_argument("--finetune-steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.7, 0.5, 0.35])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    args = parser.parse_args()
    if args.smoke:
        args.train_per_class, args.val_per_class = 30, 10
        args.teacher_steps, args.finetune_steps, args.batch_size = 20, 4, 16
    torch.set_num_threads(1)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="acc-at-budget-") as tmp:
        work = Path(tmp)
        data = subset_zip(
            Path(args.data), work / "data.zip", args.train_per_class, args.val_per_class
        )
        teacher = train_teacher(data, work / "teacher", args.teacher_steps, args.batch_size)
        ckpt = work / "teacher" / "model.safetensors"
        dense_ms = dense_p90(ckpt, work)
        print(f"teacher top-1 {teacher['top1']:.3f}, dense p90 {dense_ms:.3f} ms", file=sys.stderr)
        rows = []
        for fraction in args.budgets:
            budget = fraction * dense_ms
            for strategy in args.strategies:
                row = run_strategy(strategy, budget, args, data, ckpt, work)
                rows.append({"budget_fraction": fraction, "budget_ms": budget, **row})
                print(json.dumps(rows[-1]), file=sys.stderr)
            try:
                row = torch_pruning_row(1 - fraction, budget, args, data, ckpt, work)
            except ImportError:
                row = {"strategy": "torch_pruning", "state": "skipped: not installed"}
            except Exception as exc:  # a baseline failing must not lose the other rows
                row = {"strategy": "torch_pruning", "state": f"error: {exc}"}
            rows.append({"budget_fraction": fraction, "budget_ms": budget, **row})
            print(json.dumps(rows[-1]), file=sys.stderr)
    body = {
        "smoke": args.smoke,
        "model": MODEL,
        "data": {"train_per_class": args.train_per_class, "val_per_class": args.val_per_class},
        "teacher": {k: teacher[k] for k in ("steps", "top1", "val_images")},
        "dense_p90_ms": dense_ms,
        "finetune_steps": args.finetune_steps,
        "runtime": "onnxruntime, 1 thread, certification protocol",
        "rows": rows,
        "seconds": round(time.monotonic() - started, 1),
    }
    Path(args.out).write_text(json.dumps(body, indent=2))
    print(json.dumps(body, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

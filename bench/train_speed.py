"""Seconds per training step where the worker trains: the distillation step every fine-tune
and strategy fit takes (student forward and backward, teacher forward, AdamW), on
`vitprune.compute.train_device()` (a GPU when there is one) at its automatic precision.

The accuracy benchmark's cost is steps x this; the numbers say what a job's `finetune_steps`
cost on a CPU worker against a GPU one. Synthetic batches: data loading is not timed (for
CIFAR-10 JPEGs here it is ~75 ms per batch of 128, one core, against 1.7 s of compute).

    .venv/bin/python bench/train_speed.py --out bench/results/train_speed_cpu.json
    BUDGETPRUNE_TRAIN_DEVICE=cuda python3 bench/train_speed.py --out $OUT/train_speed_gpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vitprune.compute import autocast, placed, resolved_precision  # noqa: E402
from vitprune.models import create_model  # noqa: E402
from vitprune.train import TrainConfig, distill_loss  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_seconds(model_name: str, img: int, batch: int, warmup: int, steps: int) -> dict:
    torch.manual_seed(0)
    student = create_model(model_name, img_size=img, num_classes=10)
    teacher = create_model(model_name, img_size=img, num_classes=10).eval()
    cfg = TrainConfig(steps=steps)
    with placed(student, teacher) as device:
        optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
        x = torch.randn(batch, 3, img, img, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        times = []
        for i in range(warmup + steps):
            _sync(device)
            t0 = time.perf_counter()
            with autocast(device):
                with torch.no_grad():
                    teacher_logits = teacher(x).float()
                loss = distill_loss(student(x).float(), y, teacher_logits, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu()
    return {
        "model": model_name,
        "img_size": img,
        "batch_size": batch,
        "device": str(device),
        "device_name": name,
        "precision": resolved_precision(device),
        "threads": torch.get_num_threads(),
        "median_s_per_step": statistics.median(times),
        "min_s_per_step": min(times),
        "steps_timed": steps,
        "warmup": warmup,
    }


def _cpu() -> str:
    from device_agents.fingerprint import cpu_model

    return cpu_model()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="deit_tiny_patch4_32")
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out")
    args = parser.parse_args()
    rows = [
        step_seconds(args.model, args.img_size, b, args.warmup, args.steps)
        for b in args.batch_sizes
    ]
    body = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(body, indent=2))
    for r in rows:
        print(
            f"{r['model']} batch {r['batch_size']} on {r['device_name']} ({r['precision']}, "
            f"{r['threads']} threads): {r['median_s_per_step'] * 1000:.1f} ms/step median"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

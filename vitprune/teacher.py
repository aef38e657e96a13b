"""Train the small dense teachers the benchmarks prune (for example DeiT-Tiny shapes on 32x32
CIFAR-10 with patch 4), saved as safetensors with the accuracy they reached.

Resumable: a checkpoint is written atomically every `checkpoint_every` steps beside the output,
and a rerun of the same command continues from it.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from vitprune.compute import resolved_precision, train_device
from vitprune.data import balanced_subset, loader, num_classes, open_split
from vitprune.models import create_model
from vitprune.train import StepLog, TrainConfig, evaluate, finetune

__all__ = ["train_teacher"]


def train_teacher(
    model_name: str,
    dataset: Path,
    out_dir: Path,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    eval_per_class: int | None = None,
    workers: int = 0,
    on_log: Callable[[StepLog], None] | None = None,
) -> dict[str, object]:
    out_dir.mkdir(parents=True, exist_ok=True)
    train = open_split(dataset, "train", img_size=_img_size(model_name), train=True)
    val = open_split(dataset, "val", img_size=_img_size(model_name))
    if eval_per_class:
        val = balanced_subset(val, eval_per_class)
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=num_classes(train))
    cfg = TrainConfig(
        steps=steps,
        lr=lr,
        warmup_steps=min(500, steps // 10),
        checkpoint_every=max(steps // 20, 50),
        log_every=20,
    )
    started = time.monotonic()
    curve = finetune(
        model,
        loader(train, batch_size, shuffle=True, workers=workers),
        cfg,
        on_log=on_log,
        checkpoint=out_dir / "checkpoint.pt",
    )
    accuracy = evaluate(model, loader(val, 256, shuffle=False, workers=workers))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(out_dir / "model.safetensors"),
    )
    summary: dict[str, object] = {
        "model": model_name,
        "num_classes": num_classes(train),
        "data_set": str(dataset),
        "steps": steps,
        "batch_size": batch_size,
        "top1": accuracy,
        "val_images": len(val),
        "train_seconds_this_run": round(time.monotonic() - started, 1),
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": str(train_device()),
        "precision": resolved_precision(train_device()),
        "curve": [{"step": s.step, "loss": s.loss} for s in curve],
    }
    (out_dir / "teacher.json").write_text(json.dumps(summary, indent=2))
    return summary


def _img_size(model_name: str) -> int:
    from budgetprune.catalog import get_model_info

    return get_model_info(model_name).img_size

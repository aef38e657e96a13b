"""Training loops the strategies share: evaluation, distillation fine-tuning, teacher training.

Each loop takes a step budget rather than epochs, so a job states its cost up front, and reports
every step to a callback (the job's progress and its training curve).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from vitprune.compute import Precision, autocast, placed

__all__ = [
    "StepLog",
    "TrainConfig",
    "distill_loss",
    "evaluate",
    "finetune",
    "forever",
    "checkpoint_due",
    "load_checkpoint",
    "resume",
    "save_checkpoint",
]


@dataclass
class StepLog:
    step: int
    loss: float
    lr: float


@dataclass
class TrainConfig:
    steps: int
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 0
    label_smoothing: float = 0.1
    distill_alpha: float = 0.5  # share of the loss from the teacher's soft labels
    temperature: float = 1.0
    checkpoint_every: int = 0
    log_every: int = 10
    precision: Precision | None = None  # None: BUDGETPRUNE_TRAIN_PRECISION, else auto


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, max_batches: int | None = None) -> float:
    """Top-1 accuracy in [0, 1], in fp32 on the model's own device."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = total = 0
    for i, (x, y) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        correct += (model(x.to(device)).argmax(-1).cpu() == y).sum().item()
        total += y.numel()
    model.train(was_training)
    return correct / max(total, 1)


def forever(loader: DataLoader) -> Iterator:
    while True:
        yield from loader


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def distill_loss(
    logits: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor | None, cfg: TrainConfig
) -> torch.Tensor:
    """Cross-entropy, mixed with the KL to the teacher's softened outputs when there is one."""
    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    if teacher_logits is None or cfg.distill_alpha == 0:
        return loss
    t = cfg.temperature
    soft = F.softmax(teacher_logits / t, dim=-1)
    kd = F.kl_div(F.log_softmax(logits / t, dim=-1), soft, reduction="batchmean") * t**2
    return (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * kd


def finetune(
    model: nn.Module,
    loader: DataLoader,
    cfg: TrainConfig,
    teacher: nn.Module | None = None,
    on_log: Callable[[StepLog], None] | None = None,
    checkpoint: Path | None = None,
) -> list[StepLog]:
    """Cross-entropy (plus distillation from `teacher` when given) for `cfg.steps` steps.

    With `checkpoint`, state is saved atomically every `cfg.checkpoint_every` steps and a run
    that finds one resumes from it instead of starting over. Trains on `train_device()` (a GPU
    when there is one) and hands the model back on the CPU.
    """
    with placed(model, teacher) as device:
        curve = _finetune(model, loader, cfg, device, teacher, on_log, checkpoint)
    model.eval()
    return curve


def _finetune(
    model: nn.Module,
    loader: DataLoader,
    cfg: TrainConfig,
    device: torch.device,
    teacher: nn.Module | None,
    on_log: Callable[[StepLog], None] | None,
    checkpoint: Path | None,
) -> list[StepLog]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    if checkpoint is not None and checkpoint.exists():
        start = load_checkpoint(checkpoint, model, optimizer)
    if teacher is not None:
        teacher.eval()
    model.train()
    curve: list[StepLog] = []
    batches = forever(loader)
    for step in range(start, cfg.steps):
        x, y = (t.to(device, non_blocking=True) for t in next(batches))
        lr = _lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast(device, cfg.precision):
            logits = model(x)
            teacher_logits = None
            if teacher is not None and cfg.distill_alpha > 0:
                with torch.no_grad():
                    teacher_logits = teacher(x)
            loss = distill_loss(logits.float(), y, _float(teacher_logits), cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            entry = StepLog(step=step, loss=float(loss.detach()), lr=lr)
            curve.append(entry)
            if on_log:
                on_log(entry)
        last = step + 1 == cfg.steps
        every = cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0
        if checkpoint is not None and (every or last):
            save_checkpoint(checkpoint, model, optimizer, step + 1)
    return curve


def _float(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()


def save_checkpoint(
    path: Path, model: nn.Module, optimizer, step: int, extra: dict | None = None
) -> None:
    """Write to a temporary name, then rename: a crash never leaves half a checkpoint.
    `extra` holds a loop's own state (a latency weight, its curve): plain values only, since
    checkpoints are read back with weights_only=True."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    body = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
    torch.save(body | {"extra": extra or {}}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: nn.Module, optimizer) -> int:
    return resume(path, model, optimizer)[0]


def resume(path: Path, model: nn.Module, optimizer) -> tuple[int, dict]:
    """Load a checkpoint into `model` and `optimizer`; returns (steps done, the loop's extra)."""
    state = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), dict(state.get("extra", {}))


def checkpoint_due(step: int, steps: int) -> bool:
    """After step `step` (0-based): every tenth of the run, and at its end."""
    every = max(steps // 10, 1)
    return (step + 1) % every == 0 or step + 1 == steps

"""The job's data: accuracy before and after, and the short distillation fine-tune that
recovers accuracy after pruning. Absent when the job names no data set."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

from budgetprune.errors import BudgetPruneError
from budgetprune.schemas import JobCreate
from vitprune.data import balanced_subset, loader, num_classes, open_split
from vitprune.train import StepLog, TrainConfig, evaluate, finetune


@dataclass
class DataKit:
    spec: JobCreate
    dataset: Path
    img_size: int
    curve: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        val = open_split(self.dataset, "val", self.img_size)
        self.classes = num_classes(val)
        self.val = loader(balanced_subset(val, self.spec.eval_per_class), 100, shuffle=False)
        self._train = None

    def check_head(self, model_classes: int) -> None:
        if model_classes != self.classes:
            raise BudgetPruneError(
                f"the model predicts {model_classes} classes but the data set has "
                f"{self.classes}; set num_classes={self.classes} (and a matching checkpoint)"
            )

    def accuracy(self, model: nn.Module) -> float:
        return evaluate(model, self.val)

    def train_loader(self) -> DataLoader:
        """The shuffled, augmented training split (opened on first use: jobs that only
        evaluate never read it)."""
        if self._train is None:
            train = open_split(self.dataset, "train", self.img_size, train=True)
            self._train = loader(train, self.spec.batch_size, shuffle=True)
        return self._train

    def recover(
        self,
        checkpoint: Path,
        student: nn.Module,
        teacher: nn.Module,
        on_step: Callable[[StepLog], None],
    ) -> nn.Module:
        """Distil the dense teacher into the pruned student for `finetune_steps` steps,
        checkpointing so a restarted job continues instead of starting over."""
        if self.spec.finetune_steps == 0:
            return student
        cfg = TrainConfig(
            checkpoint_every=max(self.spec.finetune_steps // 10, 5),
            steps=self.spec.finetune_steps,
            lr=self.spec.finetune_lr,
            warmup_steps=min(20, self.spec.finetune_steps // 10),
            log_every=5,
        )

        def log(entry: StepLog) -> None:
            self.curve.append({"step": entry.step, "loss": entry.loss, "lr": entry.lr})
            on_step(entry)

        finetune(
            student, self.train_loader(), cfg, teacher=teacher, on_log=log, checkpoint=checkpoint
        )
        return student.eval()

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vitprune.train import TrainConfig, evaluate, finetune


def _data(n: int = 64) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def test_finetune_learns_and_distills():
    loader = _data()
    model = _model()
    before = evaluate(model, loader)
    curve = finetune(
        model, loader, TrainConfig(steps=60, lr=1e-2, log_every=1, label_smoothing=0.0)
    )
    assert curve[-1].loss < curve[0].loss
    assert evaluate(model, loader) > max(before, 0.85)
    student = _model()
    finetune(student, loader, TrainConfig(steps=60, lr=1e-2, distill_alpha=0.9), teacher=model)
    assert evaluate(student, loader) > 0.8


def test_checkpoint_resumes_instead_of_starting_over(tmp_path):
    loader = _data()
    ckpt = tmp_path / "ckpt.pt"
    cfg = TrainConfig(steps=4, lr=1e-2, checkpoint_every=2, log_every=1)
    finetune(_model(), loader, cfg, checkpoint=ckpt)
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp*"))
    resumed = finetune(
        _model(), loader, TrainConfig(steps=6, lr=1e-2, log_every=1), checkpoint=ckpt
    )
    assert [s.step for s in resumed] == [4, 5]

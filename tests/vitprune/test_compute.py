"""Training device and precision: chosen from the hardware, overridable, never leaking out."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vitprune.compute import autocast, bf16_supported, placed, train_device


def test_without_a_gpu_training_runs_on_the_cpu(monkeypatch):
    monkeypatch.delenv("BUDGETPRUNE_TRAIN_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train_device() == torch.device("cpu")


def test_asking_for_a_gpu_that_is_not_there_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("BUDGETPRUNE_TRAIN_DEVICE", "cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        train_device()


@pytest.mark.parametrize(
    ("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)]
)
def test_autocast_computes_matmuls_at_the_chosen_precision(precision, dtype):
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(torch.device("cpu"), precision):
        assert (a @ b).dtype == dtype


def test_auto_precision_follows_the_hardware(monkeypatch):
    monkeypatch.delenv("BUDGETPRUNE_TRAIN_PRECISION", raising=False)
    expected = torch.bfloat16 if bf16_supported(torch.device("cpu")) else torch.float32
    with autocast(torch.device("cpu")):
        assert (torch.randn(2, 2) @ torch.randn(2, 2)).dtype == expected


def test_an_unknown_precision_is_refused(monkeypatch):
    monkeypatch.setenv("BUDGETPRUNE_TRAIN_PRECISION", "fp8")
    with pytest.raises(ValueError, match="auto, fp32 or bf16"), autocast(torch.device("cpu")):
        pass


def test_placed_modules_come_back_on_the_cpu_even_after_an_error(monkeypatch):
    monkeypatch.setenv("BUDGETPRUNE_TRAIN_DEVICE", "cpu")
    model = nn.Linear(2, 2)
    with pytest.raises(KeyError), placed(model, None) as device:
        assert device == torch.device("cpu")
        raise KeyError("boom")
    assert next(model.parameters()).device == torch.device("cpu")

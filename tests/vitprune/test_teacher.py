from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_data import _jpeg, _zip  # noqa: E402

from vitprune.models import create_model  # noqa: E402
from vitprune.teacher import train_teacher  # noqa: E402


@pytest.mark.slow
def test_teacher_trains_saves_and_resumes(tmp_path):
    members = {
        f"{s}/{c}/{i}.jpg": _jpeg(color)
        for s in ("train", "test")
        for c, color in (("r", (250, 0, 0)), ("b", (0, 0, 250)))
        for i in range(8)
    }
    data = _zip(tmp_path / "d.zip", members)
    out = tmp_path / "teacher"
    torch.set_num_threads(1)
    summary = train_teacher("deit_tiny_patch4_32", data, out, steps=60, batch_size=8, lr=1e-3)
    assert summary["top1"] == 1.0, "two flat colours are easy"
    assert json.loads((out / "teacher.json").read_text())["top1"] == 1.0
    model = create_model("deit_tiny_patch4_32", num_classes=2, checkpoint=out / "model.safetensors")
    assert set(load_file(out / "model.safetensors")) == set(model.state_dict())
    assert (out / "checkpoint.pt").exists()
    again = train_teacher("deit_tiny_patch4_32", data, out, steps=60, batch_size=8)
    assert again["curve"] == [], "a finished run resumes at its last step: nothing to redo"

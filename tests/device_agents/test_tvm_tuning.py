"""MetaSchedule tuning into a device's database, reused by later builds; skipped without tvm.

Real tuning, kept small: one tiny model, 2 trials. The speed of tuned builds is in
bench/tvm_vs_ort.py, not here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tvm")

from device_agents.runtimes import get_runtime  # noqa: E402
from device_agents.runtimes.tvm import TvmRuntime  # noqa: E402
from device_agents.runtimes.tvm_tuning import TvmTuning  # noqa: E402


def _tune(onnx: Path, db: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "budgetprune.cli", "tvm-tune", str(onnx), "--db", str(db)]
        + ["--trials-per-task", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["models"][0]


@pytest.mark.slow
def test_tuned_kernels_are_kept_and_reused(tiny_onnx: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    first = _tune(tiny_onnx, db)
    assert first["tasks"] == 1 and len(first["new_tasks"]) == 1
    assert first["trials"] == 2 and first["records"] >= 1
    assert first["untuned"] == [], "the build finds a record for every kernel"
    again = _tune(tiny_onnx, db)
    assert again["new_tasks"] == [] and again["trials"] == 0, "a tuned kernel is not re-tuned"

    import onnxruntime as ort

    runtime = TvmRuntime(TvmTuning(db_dir=db))
    x = np.random.default_rng(0).standard_normal((1, 16), dtype=np.float32)
    out = runtime.load(tiny_onnx, threads=1).infer(x)
    want = ort.InferenceSession(str(tiny_onnx)).run(None, {"x": x})[0]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    assert len(list(db.glob("database_*.json"))) == 2


def test_the_version_says_whether_builds_are_tuned(monkeypatch, tmp_path: Path) -> None:
    """Tuned and untuned timings must never share a latency table or a fingerprint."""
    monkeypatch.delenv("BUDGETPRUNE_TVM_DB_DIR", raising=False)
    plain = get_runtime("tvm").version()
    monkeypatch.setenv("BUDGETPRUNE_TVM_DB_DIR", str(tmp_path))
    assert get_runtime("tvm").version() == plain + "+ms"
    assert not plain.endswith("+ms")


def test_trials_must_not_be_negative(monkeypatch) -> None:
    monkeypatch.setenv("BUDGETPRUNE_TVM_TRIALS_PER_TASK", "-1")
    with pytest.raises(ValueError, match="trials_per_task"):
        TvmTuning()


def test_builds_target_this_hosts_cpu_not_generic_x86_64():
    """Without mcpu LLVM assumes generic x86-64 (SSE2 only): tuned schedules would never use
    the vector units the device has."""
    pytest.importorskip("tvm")
    from tvm.target import codegen

    from device_agents.runtimes.tvm_tuning import cpu_target

    target = cpu_target(2)
    assert target.attrs["num-cores"] == 2
    host = codegen.llvm_get_system_cpu()
    if host != "generic":
        assert target.attrs["mcpu"] == host
    assert cpu_target(1, "x86-64-v3").attrs["mcpu"] == "x86-64-v3"

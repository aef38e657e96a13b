"""The agent must stay installable on phones and boards: no torch, no server-side stack."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import device_agents

HEAVY = ["torch", "timm", "sqlalchemy", "celery", "fastapi", "cryptography"]

SCRIPT = """
import json, sys
from pathlib import Path
import device_agents
from budgetprune.schemas.measurement import MeasureProtocol
device_agents.available_runtimes()
protocol = MeasureProtocol(warmup=0, runs=10, max_batches=1)
r = device_agents.measure(Path(sys.argv[1]), "onnxruntime", protocol)
loaded = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"runs": r.stats.runs, "loaded": loaded}))
"""


def test_agent_runs_without_heavy_modules(tiny_onnx: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_onnx)],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["runs"] == 10
    loaded = set(report["loaded"])
    assert "onnxruntime" in loaded  # proves the measurement really ran in that process
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


@pytest.mark.parametrize(
    "module", ["device_agents", "device_agents.runtimes", "device_agents.errors"]
)
def test_public_names_exist(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__all__, module
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert missing == []
    assert len(set(mod.__all__)) == len(mod.__all__)


def test_package_exports_the_entry_points() -> None:
    for name in ("measure", "local_fingerprint", "AgentClient", "Agent", "main", "get_runtime"):
        assert name in device_agents.__all__


def test_module_entry_point_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    from device_agents.__main__ import run

    monkeypatch.delenv("BUDGETPRUNE_AGENT_TOKEN", raising=False)
    assert run(["--server", "http://127.0.0.1:9"]) == 2

"""The whole path on real processes: API (uvicorn), a Celery worker, a device agent daemon.

Runs on the embedded default (SQLite job store, Celery's SQLAlchemy transport) and on the real
Redis of this machine when it answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import redis

from budgetprune.client import Client
from budgetprune.schemas import JobCreate
from budgetprune.signing import CertificateSigner
from budgetprune.stack import Stack, stack_env
from budgetprune.verify import verify_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import REDIS_TEST_URL, redis_available  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

MODEL = "deit_tiny_patch16_224"
IMG = 64  # 16 patches: the same code path as 224, seconds instead of minutes


@pytest.fixture(scope="module", params=["embedded", "redis"])
def stack(request, tmp_path_factory):
    data = tmp_path_factory.mktemp(f"stack-{request.param}")
    extra = {}
    if request.param == "redis":
        if not redis_available():
            pytest.skip("Redis is not running on 127.0.0.1:6379")
        url = REDIS_TEST_URL.rsplit("/", 1)[0] + "/13"
        redis.Redis.from_url(url).flushdb()
        extra["REDIS_URL"] = url
    with Stack(data, stack_env(data, embedded=request.param == "embedded", extra=extra)) as s:
        s.start_all()
        yield s


def _wait(client: Client, spec: JobCreate, timeout: float = 180):
    job = client.submit(spec)
    seen: list[str] = []
    status = job.wait(timeout=timeout, poll_s=0.5, on_update=lambda s: seen.append(s.phase))
    return job, status, seen


def test_job_is_pruned_measured_and_certified(stack, tmp_path):
    with Client(stack.url, stack.user_token) as client:
        agent = client.devices().data[0]
        job, status, phases = _wait(
            client, JobCreate(model=MODEL, img_size=IMG, budget_fraction=0.6)
        )
        assert status.state == "succeeded", status.error
        assert status.progress == 1.0 and status.budget_ms and status.measured_ms
        assert {"baseline", "certify"} <= set(phases)
        out = job.download(tmp_path / "out")  # verified against the server's published key
        published = client.signing_key()

    signer = CertificateSigner.load_or_create(stack.data_dir / "keys" / "signing.ed25519")
    assert published == signer.signer
    checked = verify_dir(out, trusted_public_keys=[signer.signer.public_key])
    cert = json.loads((out / "certificate.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert checked["ok"] and cert["passed"]
    assert cert["certified_ms"] <= cert["budget_ms"] == pytest.approx(status.budget_ms)
    assert cert["certified_ms"] == max(cert["measured_repeats_p"])
    assert cert["measured"]["runs"] >= 200
    assert cert["device"]["agent_id"] == agent.id
    assert cert["device"]["runtime"] == "onnxruntime" and cert["device"]["threads"] == 1
    dense_p90 = report["latency"]["dense"]["p90_ms"]
    assert cert["budget_ms"] == pytest.approx(0.6 * dense_p90)
    assert report["cost"]["pruned_gmacs"] < report["cost"]["dense_gmacs"]
    assert any(r["kind"] == "certify" for r in report["rounds"])

    # The delivered ONNX and the safetensors + arch.json are the same network.
    import onnxruntime as ort
    import torch

    from vitprune.io import load_subnet

    model, spec = load_subnet(out)
    x = np.random.default_rng(0).standard_normal((1, 3, IMG, IMG)).astype(np.float32)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        torch_out = model.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(onnx_out - torch_out).max() < 1e-4
    assert sum(len(b.heads) for b in spec.blocks) < 36 or any(
        b.mlp_hidden < 768 for b in spec.blocks
    )


def _cli(stack, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ) | {"BUDGETPRUNE_USER_TOKEN": stack.user_token}
    return subprocess.run(
        [sys.executable, "-m", "budgetprune.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_cli_submit_wait_status_download(stack, tmp_path):
    """The CLI is a REST client: an infeasible budget ends `infeasible`, with what it reached."""
    proc = _cli(
        stack,
        "submit",
        "--server",
        stack.url,
        "--model",
        MODEL,
        "--img-size",
        str(IMG),
        "--budget-ms",
        "0.001",
        "--wait",
        "--json",
    )
    assert proc.returncode == 1, proc.stderr
    status = json.loads(proc.stdout)
    assert status["state"] == "infeasible"
    assert "smallest allowed sub-network" in status["error"]
    assert status["measured_ms"] > 0.001

    again = json.loads(_cli(stack, "status", status["id"], "--server", stack.url, "--json").stdout)
    assert again["state"] == "infeasible" and again["id"] == status["id"]

    proc = _cli(
        stack, "download", status["id"], "-o", str(tmp_path / "dl"), "--server", stack.url, "--json"
    )
    assert proc.returncode == 0, proc.stderr
    # nothing delivered: only the report of the rounds it measured
    assert [Path(f).name for f in json.loads(proc.stdout)["files"]] == ["report.json"]
    report = json.loads((tmp_path / "dl" / "report.json").read_text())
    assert report["state"] == "infeasible" and report["reason"] == status["error"]
    assert [r["kind"] for r in report["rounds"]] == ["smallest", "smallest-confirm"]

"""The command line as a user runs it: a real subprocess, one JSON object on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MODEL = "deit_tiny_patch16_224"


def bp(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env_cmd = [sys.executable, "-m", "budgetprune.cli", *args]
    proc = subprocess.run(
        env_cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "BUDGETPRUNE_DATA_DIR": str(cwd / "data"),
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": "1",
        },
    )
    if check:
        assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def one_json(proc: subprocess.CompletedProcess) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def pruned(tmp_path_factory) -> Path:
    """A local job (no server), budget 70% of the dense p90 at 32x32, certified with a 15%
    margin: this sub-millisecond model's p90 moves 5-10% between processes minutes apart on a
    shared 2-vCPU host (0.74-0.80 ms here), and `verify --remeasure` is a new process later;
    CI failed twice with the default 5%, every re-measure over the budget."""
    cwd = tmp_path_factory.mktemp("cli")
    body = one_json(
        bp(
            "prune",
            "--model",
            MODEL,
            "--img-size",
            "32",
            "--budget-fraction",
            "0.7",
            "--margin",
            "0.15",
            "--out",
            str(cwd / "out"),
            "--json",
            cwd=cwd,
        )
    )
    assert body["certificate"]["passed"]
    return cwd


@pytest.mark.slow
@pytest.mark.timed
def test_prune_writes_the_delivered_files(pruned):
    names = sorted(p.name for p in (pruned / "out").iterdir())
    assert names == [
        "arch.json",
        "certificate.json",
        "latency.svg",
        "model.onnx",
        "model.safetensors",
        "report.json",
    ]
    assert (pruned / "out" / "latency.svg").read_text().startswith("<svg")
    cert = json.loads((pruned / "out" / "certificate.json").read_text())
    assert cert["margin"] == 0.15
    assert cert["certified_ms"] <= cert["budget_ms"] * 0.85


@pytest.mark.slow
@pytest.mark.timed
def test_verify_and_remeasure(pruned):
    body = one_json(bp("verify", str(pruned / "out"), "--remeasure", "--json", cwd=pruned))
    assert body["ok"] is True and body["remeasured"]["p90_ms"] > 0


@pytest.mark.slow
@pytest.mark.timed
def test_verify_fails_on_tampered_model(pruned, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(pruned / "out", copy)
    with (copy / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    proc = bp("verify", str(copy), "--json", cwd=pruned, check=False)
    assert proc.returncode == 1
    assert "model_sha256" in one_json(proc)["error"]


@pytest.mark.parametrize(
    ("flag", "value", "field"), [("--budget-ms", "-3", "budget"), ("--margin", "0.6", "margin")]
)
def test_invalid_input_with_json_is_still_one_json_object(tmp_path, flag, value, field):
    budget = [] if flag == "--budget-ms" else ["--budget-ms", "5"]
    proc = bp(
        "prune", "--model", MODEL, flag, value, *budget, "--out", "o", "--json",
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    body = one_json(proc)
    assert body["ok"] is False and field in body["error"]


def test_verify_trusts_only_a_key_it_was_given(delivered, tmp_path):
    """The certificate carries its signer's key, but a forger would carry theirs: without a
    trust anchor (--public-key, --server, this machine's own key) verify refuses."""
    out, signer = delivered
    refused = bp("verify", str(out), "--json", cwd=tmp_path, check=False)
    assert refused.returncode == 1
    assert "no trusted key" in one_json(refused)["error"]
    body = one_json(
        bp("verify", str(out), "--public-key", signer.signer.public_key, "--json", cwd=tmp_path)
    )
    assert body["ok"] and body["trusted_by"] == "--public-key"


@pytest.mark.slow
@pytest.mark.timed
def test_measure_prints_percentiles(pruned):
    body = one_json(
        bp(
            "measure",
            str(pruned / "out" / "model.onnx"),
            "--runs",
            "50",
            "--threads",
            "1",
            "--json",
            cwd=pruned,
        )
    )
    assert 0 < body["p50_ms"] <= body["p90_ms"] <= body["p99_ms"]
    assert body["runs"] >= 50 and body["device"]["threads"] == 1


def test_arch_sample_then_export(tmp_path):
    spec = one_json(
        bp(
            "arch",
            "sample",
            "--model",
            MODEL,
            "--seed",
            "3",
            "--img-size",
            "32",
            "--json",
            cwd=tmp_path,
        )
    )
    again = one_json(
        bp(
            "arch",
            "sample",
            "--model",
            MODEL,
            "--seed",
            "3",
            "--img-size",
            "32",
            "--json",
            cwd=tmp_path,
        )
    )
    assert spec == again and len(spec["blocks"]) == 12
    (tmp_path / "a.json").write_text(json.dumps(spec))
    body = one_json(
        bp(
            "export",
            "--model",
            MODEL,
            "--arch",
            str(tmp_path / "a.json"),
            "--out",
            str(tmp_path / "m.onnx"),
            "--json",
            cwd=tmp_path,
        )
    )
    assert len(body["sha256"]) == 64 and (tmp_path / "m.onnx").stat().st_size > 0


def test_bad_input_is_a_message_not_a_traceback(tmp_path):
    proc = bp(
        "prune", "--model", "resnet50", "--budget-ms", "5", "--out", "x", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2
    assert "unknown model 'resnet50'" in proc.stderr and "Traceback" not in proc.stderr
    proc = bp(
        "prune", "--model", MODEL, "--budget-ms", "-1", "--out", "x", cwd=tmp_path, check=False
    )
    assert proc.returncode == 2 and "greater than 0" in proc.stderr
    for device, message in (("fpga:vu9p", "no FPGA profile 'vu9p'"), ("mobile", "measures here")):
        proc = bp(
            "prune", "--model", MODEL, "--budget-ms", "5", "--device", device, "--out", "x",
            cwd=tmp_path, check=False,
        )  # fmt: skip
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_generated_tokens_never_read_as_an_option():
    """`--token -x…` is an argparse error: an agent started with such a token never ran."""
    from budgetprune.config import new_token

    assert not any(new_token().startswith("-") for _ in range(2000))

"""The compose file and the quick start stay true."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_has_the_services_with_health_checks():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"api", "worker", "redis", "postgres", "agent-cpu"} <= set(services)
    for name in ("api", "worker", "redis", "postgres", "agent-cpu"):
        assert "healthcheck" in services[name], name
    assert "artifacts:/data" in services["api"]["volumes"]
    assert "artifacts:/data" in services["worker"]["volumes"]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_file_validates():
    env = os.environ | {"BUDGETPRUNE_AGENT_TOKEN": "x"}
    subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        check=True,
        env=env,
        cwd=ROOT,
    )


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_the_agents_health_check_runs_as_written(tmp_path):
    """The compose file's command, run against a work dir the daemon just touched and one it
    never used."""
    import subprocess
    import sys

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    test = compose["services"]["agent-cpu"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    code = test[3].replace("/tmp/agent", str(tmp_path))
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 1
    (tmp_path / "alive").touch()
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0

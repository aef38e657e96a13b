from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.agents import register_agent  # noqa: E402


def test_probes(client):
    assert client.get("/healthz", headers={"Authorization": ""}).json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json() == {"database": "ok", "broker": "ok"}


def test_readyz_is_503_when_the_broker_is_down(settings):
    from fastapi.testclient import TestClient

    from api.main import create_app

    settings.redis_url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    with TestClient(create_app(settings)) as c:
        r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["broker"].startswith("down")


def test_metrics_count_jobs_agents_and_queue(client):
    register_agent(client)
    client.post("/v1/jobs", json={"model": "deit_tiny_patch16_224", "budget_ms": 5})
    text = client.get("/metrics", headers={"Authorization": ""}).text
    assert 'budgetprune_jobs{state="queued"} 1' in text
    assert 'budgetprune_agents{state="online"} 1' in text
    assert "budgetprune_measurement_queue_depth 0" in text
    assert "# TYPE budgetprune_measurement_seconds summary" in text

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.agents import ENROLL_HEADERS, register_agent  # noqa: E402

from budgetprune.schemas import MeasureProtocol  # noqa: E402
from budgetprune.store import crud, session_scope  # noqa: E402


def _queue_task(settings, device="cpu") -> str:
    model = settings.data_dir / "jobs" / "j" / "m.onnx"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"onnx-bytes")
    with session_scope(settings.database_url) as s:
        task = crud.create_measurement(
            s,
            job_id=None,
            device=device,
            runtime="onnxruntime",
            protocol=MeasureProtocol.quick(),
            input_shape=[1, 3, 32, 32],
            model_path="jobs/j/m.onnx",
            model_sha256="ab" * 32,
        )
        return task.id


def test_agent_calls_need_the_token(client):
    body = {"name": "x", "runtimes": [{"name": "onnxruntime", "version": "1"}]}
    user = client.headers["Authorization"]
    r = client.post("/v1/agents/register", json=body)  # a user token is not an agent's
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    bad = {"Authorization": "Bearer wrong"}
    assert client.post("/v1/agents/register", json=body, headers=bad).status_code == 401
    agent_id, _ = register_agent(client)
    r = client.post(f"/v1/agents/{agent_id}/heartbeat", headers=ENROLL_HEADERS)
    assert r.status_code == 403, "the enrollment token does not act for a registered agent"
    r = client.post(f"/v1/agents/{agent_id}/heartbeat", headers={"Authorization": user})
    assert r.status_code == 403


def test_register_lease_download_report(client, settings):
    agent_id, mine = register_agent(client)
    devices = client.get("/v1/devices").json()
    assert devices["count"] == 1 and devices["data"][0]["state"] == "online"

    r = client.get(f"/v1/agents/{agent_id}/tasks/next?wait=0", headers=mine)
    assert r.status_code == 204

    task_id = _queue_task(settings)
    r = client.get(f"/v1/agents/{agent_id}/tasks/next?wait=1", headers=mine)
    assert r.status_code == 200, r.text
    lease = r.json()
    assert lease["task_id"] == task_id and lease["input_shape"] == [1, 3, 32, 32]
    assert client.get("/v1/devices").json()["data"][0]["state"] == "busy"

    r = client.get(lease["model_url"], headers=mine)
    assert r.status_code == 200 and r.content == b"onnx-bytes"

    other, theirs = register_agent(client)
    r = client.get(lease["model_url"].replace(agent_id, other), headers=theirs)
    assert r.status_code == 404  # an agent fetches only what is leased to it
    r = client.get(lease["model_url"], headers=theirs)
    assert r.status_code == 403  # nor can it pose as the agent that holds the lease

    r = client.post(
        f"/v1/agents/{other}/tasks/{task_id}/result",
        json={"lease_id": lease["lease_id"], "ok": False, "error": "x"},
        headers=theirs,
    )
    assert r.status_code == 409

    r = client.post(
        f"/v1/agents/{agent_id}/tasks/{task_id}/result",
        json={"lease_id": lease["lease_id"], "ok": False, "error": "runtime crashed"},
        headers=mine,
    )
    assert r.status_code == 200
    with session_scope(settings.database_url) as s:
        task = crud.get_task(s, task_id=task_id)
        assert task.state == "failed" and task.error == "runtime crashed"


def test_unknown_agent_is_404(client):
    _, mine = register_agent(client)
    r = client.post("/v1/agents/nope/heartbeat", headers=mine)
    assert r.status_code == 404
    r = client.get("/v1/agents/nope/tasks/next?wait=0", headers=mine)
    assert r.status_code == 404

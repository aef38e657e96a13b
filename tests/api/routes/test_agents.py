from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.agents import ENROLL_HEADERS, queue_task, register_agent  # noqa: E402

from budgetprune.store import MeasurementTask, crud, session_scope  # noqa: E402


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

    task_id = queue_task(settings)
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


def _running_job_with_leased_task(client, settings, agent_id, headers) -> tuple[str, dict]:
    """A job the worker is running, whose measurement task this agent has leased."""
    job_id = client.post("/v1/jobs", json={"model": "deit_tiny_patch16_224", "budget_ms": 10})
    job_id = job_id.json()["id"]
    with session_scope(settings.database_url) as s:
        crud.update_job(s, job_id=job_id, state="running", phase="baseline")
    task_id = queue_task(settings)
    with session_scope(settings.database_url) as s:
        s.get(MeasurementTask, task_id).job_id = job_id
    lease = client.get(f"/v1/agents/{agent_id}/tasks/next?wait=1", headers=headers).json()
    assert lease["task_id"] == task_id
    return job_id, lease


def test_heartbeat_names_the_leased_tasks_of_a_cancelled_job(client, settings):
    agent_id, mine = register_agent(client)
    url = f"/v1/agents/{agent_id}/heartbeat"
    r = client.post(url, headers=mine)  # idle: no body, nothing to say
    assert r.status_code == 200 and r.json() == {"cancelled_task_ids": []}

    job_id, lease = _running_job_with_leased_task(client, settings, agent_id, mine)
    task_id = lease["task_id"]
    r = client.post(url, json={"task_ids": [task_id]}, headers=mine)
    assert r.status_code == 200 and r.json() == {"cancelled_task_ids": []}

    r = client.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 202 and r.json()["state"] == "running"  # the worker ends it
    r = client.post(url, json={"task_ids": [task_id]}, headers=mine)
    assert r.json() == {"cancelled_task_ids": [task_id]}
    other, theirs = register_agent(client)
    r = client.post(f"/v1/agents/{other}/heartbeat", json={"task_ids": [task_id]}, headers=theirs)
    assert r.json() == {"cancelled_task_ids": [task_id]}, "not its lease either"

    # an agent that did not stop would have its result refused
    body = {"lease_id": lease["lease_id"], "ok": False, "error": "x"}
    r = client.post(f"/v1/agents/{agent_id}/tasks/{task_id}/result", json=body, headers=mine)
    assert r.status_code == 409


def test_a_waiting_heartbeat_answers_as_soon_as_the_job_is_cancelled(client, settings):
    agent_id, mine = register_agent(client)
    job_id, lease = _running_job_with_leased_task(client, settings, agent_id, mine)
    url = f"/v1/agents/{agent_id}/heartbeat?wait=0.6"
    beat = {"task_ids": [lease["task_id"]]}

    started = time.monotonic()
    r = client.post(url, json=beat, headers=mine)  # nothing happens: held for the whole wait
    assert r.json() == {"cancelled_task_ids": []} and time.monotonic() - started >= 0.5

    answers: list[tuple[float, dict]] = []

    def long_poll() -> None:
        r = client.post(url.replace("0.6", "20"), json=beat, headers=mine)
        answers.append((time.monotonic(), r.json()))

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)
    cancelled_at = time.monotonic()
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 202
    poller.join(timeout=20)
    ((answered_at, reply),) = answers
    assert reply == {"cancelled_task_ids": [lease["task_id"]]}
    assert answered_at - cancelled_at < 3.0, "the long poll must end at the cancel, not at 20 s"


def test_a_waiting_heartbeat_ends_when_the_task_is_finished(client, settings):
    """The agent has moved on once it posted: the watch on the old task must not outlive it."""
    agent_id, mine = register_agent(client)
    _, lease = _running_job_with_leased_task(client, settings, agent_id, mine)
    task_id = lease["task_id"]
    body = {"lease_id": lease["lease_id"], "ok": False, "error": "runtime crashed"}
    r = client.post(f"/v1/agents/{agent_id}/tasks/{task_id}/result", json=body, headers=mine)
    assert r.status_code == 200
    started = time.monotonic()
    r = client.post(
        f"/v1/agents/{agent_id}/heartbeat?wait=20", json={"task_ids": [task_id]}, headers=mine
    )
    assert r.json() == {"cancelled_task_ids": []}, "finished is not cancelled"
    assert time.monotonic() - started < 3.0

"""GET /v1/jobs/{id}/stream: the server-sent events the dashboard follows a job by.

The job's progress is written the way a worker writes it (`StoreReporter`, `finish`), so the
frames checked here are the ones a real job produces. Starlette's TestClient streams the body
as the app yields it, so a test can read a frame, change the job, and read on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from budgetprune.store import crud, session_scope
from worker.runner import StoreReporter, finish

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.agents import register_agent, user_headers  # noqa: E402

pytestmark = pytest.mark.timeout(30)  # a stream that never ends fails instead of hanging

TINY = "deit_tiny_patch16_224"


def _frames(response) -> Iterator[tuple[str, dict]]:
    """(event, data) for each frame; every frame the route sends has both lines."""
    event = data = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "":
            assert event is not None and data is not None, "a frame without event or data"
            yield event, data
            event = data = None
    assert event is None and data is None, "the stream ended inside a frame"


def _job(client, settings) -> tuple[str, StoreReporter]:
    register_agent(client)
    job_id = client.post("/v1/jobs", json={"model": TINY, "budget_ms": 10}).json()["id"]
    with session_scope(settings.database_url) as session:
        crud.update_job(session, job_id=job_id, state="running")
    return job_id, StoreReporter(settings, job_id)


def test_a_finished_job_streams_its_history_then_its_status_and_ends(client, settings):
    job_id, report = _job(client, settings)
    report("baseline", 0.15, measured_ms=8.0, budget_ms=5.0)
    report("search", 0.4, measured_ms=4.5, predicted_ms=4.25)
    finish(settings, job_id, state="succeeded", phase="done", progress=1.0)

    with client.stream("GET", f"/v1/jobs/{job_id}/stream") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        frames = list(_frames(r))  # ends by itself: the job is over

    assert [kind for kind, _ in frames] == ["progress", "progress", "job"]
    history = client.get(f"/v1/jobs/{job_id}/events").json()["data"]
    assert [data for _, data in frames[:2]] == history
    baseline, search = history
    assert (baseline["phase"], baseline["measured_ms"], baseline["budget_ms"]) == (
        "baseline",
        8.0,
        5.0,
    )
    assert baseline["predicted_ms"] is None
    assert (search["phase"], search["measured_ms"], search["predicted_ms"]) == (
        "search",
        4.5,
        4.25,
    )
    assert baseline["id"] < search["id"]
    _, job = frames[-1]
    assert job == client.get(f"/v1/jobs/{job_id}").json()
    assert (job["state"], job["phase"], job["progress"]) == ("succeeded", "done", 1.0)
    assert (job["measured_ms"], job["predicted_ms"], job["budget_ms"]) == (4.5, 4.25, 5.0)


def test_a_running_job_is_followed_until_it_ends(client, settings):
    """Frames arrive as the worker reports, and the stream closes once the job is terminal."""
    job_id, report = _job(client, settings)
    report("search", 0.3, measured_ms=6.0, predicted_ms=5.5)
    seen: list[tuple[str, dict]] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/stream") as r:
        for kind, data in _frames(r):
            seen.append((kind, data))
            if kind == "job" and data["state"] == "running" and len(seen) == 2:
                # the worker goes on while the client listens
                report("certify", 0.9, measured_ms=4.0)
                finish(settings, job_id, state="succeeded", phase="done", progress=1.0)

    kinds = [kind for kind, _ in seen]
    assert kinds[:2] == ["progress", "job"] and seen[1][1]["state"] == "running"
    progress = [data for kind, data in seen if kind == "progress"]
    assert [(p["phase"], p["measured_ms"], p["predicted_ms"]) for p in progress] == [
        ("search", 6.0, 5.5),
        ("certify", 4.0, None),
    ]
    assert progress == client.get(f"/v1/jobs/{job_id}/events").json()["data"]
    assert kinds[-1] == "job" and seen[-1][1]["state"] == "succeeded"
    assert all(data["state"] == "running" for kind, data in seen[:-1] if kind == "job")


@pytest.mark.parametrize("state", ["failed", "cancelled", "infeasible"])
def test_every_terminal_state_ends_the_stream(client, settings, state):
    job_id, _ = _job(client, settings)
    finish(settings, job_id, state=state, phase="done")
    with client.stream("GET", f"/v1/jobs/{job_id}/stream") as r:
        frames = list(_frames(r))
    assert [(kind, data["state"]) for kind, data in frames] == [("job", state)]


def test_another_users_token_is_refused(client, settings):
    job_id, report = _job(client, settings)
    report("search", 0.3, measured_ms=6.0, predicted_ms=5.5)
    bob = user_headers(settings, "bob")
    with client.stream("GET", f"/v1/jobs/{job_id}/stream", headers=bob) as r:
        assert r.status_code == 404
        body = json.loads(r.read())
    assert job_id in body["detail"] and "measured_ms" not in r.text
    with client.stream("GET", f"/v1/jobs/{job_id}/stream", headers={"Authorization": ""}) as r:
        assert r.status_code == 401
        r.read()
    # an admin sees every job, so may follow this one
    finish(settings, job_id, state="succeeded", phase="done", progress=1.0)
    admin = user_headers(settings, "root", admin=True)
    with client.stream("GET", f"/v1/jobs/{job_id}/stream", headers=admin) as r:
        assert r.status_code == 200
        assert [kind for kind, _ in _frames(r)] == ["progress", "job"]

"""Agents' long polls against a real uvicorn: what happens when either end goes away mid-wait.
The in-process test client cannot close a connection early, so these start the API."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from budgetprune.config import Settings
from budgetprune.stack import Stack, stack_env
from budgetprune.store import crud, session_scope
from tests.utils.agents import ENROLL_HEADERS, queue_task, register_agent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TOKEN = ENROLL_HEADERS["Authorization"].removeprefix("Bearer ")


def _api(tmp_path, **env: str) -> Stack:
    extra = {"BUDGETPRUNE_AGENT_TOKEN": TOKEN, **env}
    stack = Stack(tmp_path, stack_env(tmp_path, embedded=True, extra=extra))
    stack.start_api()
    return stack


def test_a_poll_whose_agent_went_away_is_not_handed_a_task(tmp_path):
    """The poll's handler kept leasing for its whole wait: a task queued after the agent had
    gone was leased to it, and waited out the lease (300 s by default) before another agent
    could have it."""
    with _api(tmp_path) as stack, httpx.Client(base_url=stack.url) as http:
        agent_id, mine = register_agent(http)
        with pytest.raises(httpx.ReadTimeout):  # the agent gives up on its 20 s poll
            http.get(f"/v1/agents/{agent_id}/tasks/next?wait=20", headers=mine, timeout=1)
        settings = Settings(data_dir=tmp_path.resolve(), agent_token=TOKEN)
        task_id = queue_task(settings)
        time.sleep(1.0)  # ten poll intervals of the abandoned handler
        with session_scope(settings.database_url) as s:
            task = crud.get_task(s, task_id=task_id)
            assert (task.state, task.agent_id) == ("queued", None)


def test_the_api_stops_within_its_grace_while_an_agent_polls(tmp_path):
    """A restart of the API must not wait out every agent's poll (up to 20 s)."""
    with _api(tmp_path, BUDGETPRUNE_SHUTDOWN_GRACE_S="1") as stack:
        with httpx.Client(base_url=stack.url) as http:
            agent_id, mine = register_agent(http)
        answers: list[httpx.Response | httpx.HTTPError] = []

        def poll() -> None:
            with httpx.Client(base_url=stack.url, timeout=30) as agent:
                try:
                    answers.append(
                        agent.get(f"/v1/agents/{agent_id}/tasks/next?wait=20", headers=mine)
                    )
                except httpx.HTTPError as exc:
                    answers.append(exc)

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(1.5)  # the poll is in the server's hands (it waits 20 s)
        started = time.monotonic()
        stack.stop("api", grace=30)
        stopped_in = time.monotonic() - started
        poller.join(timeout=30)
    assert stopped_in < 6, f"the API took {stopped_in:.1f} s to stop"
    (answer,) = answers
    assert isinstance(answer, httpx.Response), f"the poll got no answer: {answer!r}"
    assert answer.status_code == 503, "cut with a 503 the agent retries, not a bare 500"
    assert answer.headers["retry-after"] == "1" and "poll again" in answer.json()["detail"]

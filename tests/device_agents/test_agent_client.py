from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from budgetprune.schemas.agent import (
    AgentHeartbeat,
    AgentPublic,
    AgentRegister,
    HeartbeatReply,
    RuntimeInfo,
    TaskLease,
    TaskResult,
)
from budgetprune.schemas.measurement import MeasureProtocol
from device_agents.client import AgentClient
from device_agents.errors import (
    AuthenticationError,
    ModelDownloadError,
    ServerUnavailableError,
    TaskCancelledError,
    UnknownAgentError,
)

SERVER = "http://api.test"
MODEL = b"pretend these are onnx bytes" * 10


def make_lease(
    sha256: str = hashlib.sha256(MODEL).hexdigest(), url: str = "/v1/models/m1"
) -> TaskLease:
    return TaskLease(
        task_id="t1",
        lease_id="l1",
        lease_expires_at=datetime.now(UTC) + timedelta(minutes=5),
        runtime="onnxruntime",
        protocol=MeasureProtocol.quick(),
        input_shape=[1, 16],
        model_sha256=sha256,
        model_url=url,
    )


def public(agent_id: str = "a1") -> dict:
    return AgentPublic(
        id=agent_id,
        name="n",
        device_class="cpu",
        cpu_model="c",
        cores=2,
        os="linux",
        runtimes=[RuntimeInfo(name="onnxruntime", version="1")],
        state="online",
        last_heartbeat=datetime.now(UTC),
    ).model_dump(mode="json") | {"token": f"own-token-of-{agent_id}"}


def client_for(handler, **kwargs) -> AgentClient:
    kwargs.setdefault("backoff_s", 0.001)
    kwargs.setdefault("backoff_cap_s", 0.002)
    return AgentClient(SERVER, "secret-token", transport=httpx.MockTransport(handler), **kwargs)


def test_register_sends_token_and_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=public("agent-42"))

    reg = AgentRegister(name="phone", runtimes=[RuntimeInfo(name="onnxruntime", version="1")])
    agent = client_for(handler).register(reg)
    assert agent.id == "agent-42"
    (req,) = seen
    assert (req.method, req.url.path) == ("POST", "/v1/agents/register")
    assert req.headers["authorization"] == "Bearer secret-token"
    assert AgentRegister.model_validate_json(req.content) == reg


def test_after_registering_calls_carry_the_agents_own_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/register"):
            return httpx.Response(201, json=public("agent-7"))
        return httpx.Response(204)

    client = client_for(handler)
    reg = AgentRegister(name="phone", runtimes=[RuntimeInfo(name="onnxruntime", version="1")])
    client.register(reg)
    client.heartbeat("agent-7")
    client.register(reg)  # re-enrolment (server forgot us) goes back to the enrollment token
    assert [r.headers["authorization"] for r in seen] == [
        "Bearer secret-token",
        "Bearer own-token-of-agent-7",
        "Bearer secret-token",
    ]


def test_next_task_204_is_none_and_waits_past_the_poll() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    client = client_for(handler, timeout=7.0)
    assert client.next_task("a1", 20) is None
    req = seen[0]
    assert req.url.path == "/v1/agents/a1/tasks/next"
    assert req.url.params["wait"] == "20"
    assert req.extensions["timeout"]["read"] == pytest.approx(27.0)


def test_heartbeat_names_the_tasks_and_long_polls_for_their_cancel() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if not request.content:
            return httpx.Response(204)  # a server from before replies carried news
        return httpx.Response(200, json={"cancelled_task_ids": ["t1"]})

    client = client_for(handler, timeout=7.0)
    assert client.heartbeat("a1", ["t1"], wait_s=10) == HeartbeatReply(cancelled_task_ids=["t1"])
    assert client.heartbeat("a1") == HeartbeatReply()
    busy, idle = seen
    assert AgentHeartbeat.model_validate_json(busy.content).task_ids == ["t1"]
    assert busy.url.params["wait"] == "10"
    assert busy.extensions["timeout"]["read"] == pytest.approx(17.0)
    assert idle.content == b"" and "wait" not in idle.url.params


def test_next_task_200_is_a_lease() -> None:
    lease = make_lease()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=lease.model_dump_json())

    assert client_for(handler).next_task("a1", 1) == lease


def test_download_verifies_and_renames(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/models/m1"
        assert request.headers["authorization"] == "Bearer secret-token"
        return httpx.Response(200, content=MODEL)

    dest = client_for(handler).download_model(make_lease(), tmp_path / "m.onnx")
    assert dest == tmp_path / "m.onnx"
    assert dest.read_bytes() == MODEL
    assert list(tmp_path.iterdir()) == [dest]


def test_download_sha_mismatch_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=MODEL + b"tampered")

    with pytest.raises(ModelDownloadError, match="does not match"):
        client_for(handler).download_model(make_lease(), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_download_oversize_is_refused(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=MODEL)

    with pytest.raises(ModelDownloadError, match="limit"):
        client_for(handler, max_model_bytes=100).download_model(make_lease(), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_download_stops_when_the_task_is_cancelled(tmp_path: Path) -> None:
    cancel = threading.Event()
    sent: list[int] = []

    def chunks():
        for i in range(50):
            sent.append(i)
            if i == 2:
                cancel.set()  # the heartbeat thread heard the job was cancelled
            yield b"x" * (1 << 20)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())

    with pytest.raises(TaskCancelledError):
        client_for(handler).download_model(make_lease(), tmp_path / "m.onnx", cancel=cancel)
    assert len(sent) < 10, "the rest of the file is not fetched"
    assert list(tmp_path.iterdir()) == []


def test_download_refuses_foreign_hosts(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("must not be called")

    lease = make_lease(url="http://evil.test/steal")
    with pytest.raises(ModelDownloadError, match="path on this server"):
        client_for(handler).download_model(lease, tmp_path)


def test_post_result_409_is_false_and_200_is_true() -> None:
    answers = iter([200, 409])
    bodies: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/agents/a1/tasks/t1/result"
        bodies.append(json.loads(request.content))
        return httpx.Response(next(answers))

    client = client_for(handler)
    result = TaskResult(lease_id="l1", ok=False, error="boom")
    assert client.post_result("a1", "t1", result) is True
    assert client.post_result("a1", "t1", result) is False
    assert bodies[0] == {"lease_id": "l1", "ok": False, "result": None, "error": "boom"}


def test_retry_on_503_then_success() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503 if len(calls) < 3 else 204)

    client_for(handler).heartbeat("a1")
    assert len(calls) == 3


def test_retry_on_network_error() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(204)

    assert client_for(handler).next_task("a1", 1) is None
    assert len(calls) == 2


def test_gives_up_after_max_attempts() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(502)

    with pytest.raises(ServerUnavailableError, match="3 attempts"):
        client_for(handler, max_attempts=3).heartbeat("a1")
    assert len(calls) == 3


def test_401_is_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(401)

    with pytest.raises(AuthenticationError):
        client_for(handler).heartbeat("a1")
    assert len(calls) == 1


def test_404_for_agent_is_unknown_agent() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"detail": "no such agent"})

    with pytest.raises(UnknownAgentError):
        client_for(handler).heartbeat("a1")
    with pytest.raises(UnknownAgentError):
        client_for(handler).next_task("a1", 1)


def test_ids_are_one_path_segment() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return httpx.Response(204)

    client_for(handler).heartbeat("../x")
    assert seen == ["/v1/agents/..%2Fx/heartbeat"]

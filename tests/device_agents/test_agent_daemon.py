"""The daemon's whole loop against a fake API server behind httpx.MockTransport."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from budgetprune.schemas.agent import (
    AgentHeartbeat,
    AgentPublic,
    AgentRegister,
    TaskLease,
    TaskResult,
)
from budgetprune.schemas.measurement import MeasureProtocol
from device_agents import daemon as daemon_module
from device_agents.client import AgentClient
from device_agents.daemon import Agent

PROTOCOL = MeasureProtocol(warmup=2, runs=10, max_batches=2, stability_tolerance=1.0)


class FakeServer:
    """Hands out the queued tasks once each; records registrations, heartbeats and results.

    `forget_first_agent` answers 404 to the first agent id's first poll, as after a DB reset.
    """

    def __init__(
        self,
        model: bytes,
        tasks: list[dict],
        forget_first_agent: bool = False,
        cancelled: set[str] | None = None,
        old_heartbeat: bool = False,
    ) -> None:
        """`cancelled`: task ids whose job the user cancels once their agent names them in a
        heartbeat (mid-measurement). `old_heartbeat`: answer every heartbeat 204 at once, as a
        server from before replies carried news."""
        self.model = model
        self.tasks = list(tasks)
        self.forget_first_agent = forget_first_agent
        self.cancelled = cancelled or set()
        self.old_heartbeat = old_heartbeat
        self.registrations: list[AgentRegister] = []
        self.heartbeats: list[str] = []
        self.heartbeat_bodies: list[tuple[list[str], str | None]] = []  # (task ids, wait)
        self.cancel_sent: dict[str, float] = {}  # task id -> when the agent was told
        self.polled_at: list[float] = []
        self.results: list[tuple[str, str, TaskResult]] = []
        self.auth_headers: set[str] = set()
        self.downloads = 0
        self.done = threading.Event()
        self.lock = threading.Lock()

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            return self._handle(request)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.auth_headers.add(request.headers.get("authorization", ""))
        path = request.url.path
        if path == "/v1/agents/register":
            reg = AgentRegister.model_validate_json(request.content)
            self.registrations.append(reg)
            agent_id = f"agent-{len(self.registrations)}"
            body = self._public(agent_id, reg).model_dump(mode="json") | {"token": "own"}
            return httpx.Response(201, json=body)
        if m := re.fullmatch(r"/v1/agents/([^/]+)/heartbeat", path):
            self.heartbeats.append(m[1])
            if self.old_heartbeat:
                return httpx.Response(204)
            named = AgentHeartbeat.model_validate_json(request.content or b"{}").task_ids
            self.heartbeat_bodies.append((named, request.url.params.get("wait")))
            dropped = [t for t in named if t in self.cancelled]
            for task_id in dropped:
                self.cancel_sent.setdefault(task_id, time.monotonic())
            return httpx.Response(200, json={"cancelled_task_ids": dropped})
        if m := re.fullmatch(r"/v1/agents/([^/]+)/tasks/next", path):
            self.polled_at.append(time.monotonic())
            if self.forget_first_agent and m[1] == "agent-1":
                return httpx.Response(404, json={"detail": "unknown agent"})
            if not self.tasks:
                return httpx.Response(204)
            task = self.tasks.pop(0)
            return httpx.Response(200, content=self._lease(task).model_dump_json())
        if m := re.fullmatch(r"/v1/agents/([^/]+)/tasks/([^/]+)/result", path):
            self.results.append((m[1], m[2], TaskResult.model_validate_json(request.content)))
            if not self.tasks:
                self.done.set()
            return httpx.Response(200, json={"accepted": True})
        if path.startswith("/v1/models/"):
            self.downloads += 1
            return httpx.Response(200, content=self.model)
        return httpx.Response(404)

    def _lease(self, task: dict) -> TaskLease:
        return TaskLease(
            task_id=task["task_id"],
            lease_id=f"lease-{task['task_id']}",
            lease_expires_at=datetime.now(UTC) + timedelta(minutes=5),
            runtime=task.get("runtime", "onnxruntime"),
            protocol=task.get("protocol", PROTOCOL),
            input_shape=[1, 16],
            model_sha256=task.get("sha256", hashlib.sha256(self.model).hexdigest()),
            model_url=f"/v1/models/{task['task_id']}",
        )

    @staticmethod
    def _public(agent_id: str, reg: AgentRegister) -> AgentPublic:
        return AgentPublic(
            id=agent_id,
            state="online",
            last_heartbeat=datetime.now(UTC),
            **reg.model_dump(),
        )


def run_agent(server: FakeServer, work_dir: Path, **agent_kwargs) -> Agent:
    client = AgentClient(
        "http://api.test",
        "tok",
        transport=httpx.MockTransport(server.handler),
        backoff_s=0.001,
        backoff_cap_s=0.002,
    )
    agent_kwargs.setdefault("heartbeat_s", 0.05)
    agent = Agent(client, "test-agent", work_dir=work_dir, poll_wait_s=0, **agent_kwargs)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    finished = server.done.wait(60)
    stop.set()
    thread.join(10)
    assert finished, "the fake server never received the result"
    assert not thread.is_alive(), "the agent did not stop promptly"
    return agent


def test_full_loop_posts_a_sane_measurement(tiny_onnx: Path, tmp_path: Path) -> None:
    model = tiny_onnx.read_bytes()
    server = FakeServer(model, [{"task_id": "task-1"}])
    work_dir = tmp_path / "work"
    agent = run_agent(server, work_dir)

    ((agent_id, task_id, posted),) = server.results
    assert (agent_id, task_id) == ("agent-1", "task-1")
    assert posted.ok and posted.error is None and posted.lease_id == "lease-task-1"
    result = posted.result
    assert result is not None
    s = result.stats
    assert 0 < s.p50_ms <= s.p90_ms <= s.p99_ms <= s.max_ms
    assert s.runs == PROTOCOL.runs * len(result.batch_p50_ms)
    assert result.model_sha256 == hashlib.sha256(model).hexdigest()
    assert result.device.agent_id == "agent-1"
    assert result.device.input_shape == [1, 16]
    assert result.device.runtime == "onnxruntime" and result.device.runtime_version != "unknown"
    assert result.device.cores >= 1 and result.device.cpu_model
    assert server.registrations[0].runtimes[0].name == "onnxruntime"
    assert server.auth_headers == {"Bearer tok", "Bearer own"}  # enrol, then its own token
    assert agent.tasks_done == 1
    sha = hashlib.sha256(model).hexdigest()
    assert sorted(p.name for p in work_dir.iterdir()) == ["alive", f"model-{sha}.onnx"]
    assert daemon_module.alive_within(work_dir, 30)
    assert not daemon_module.alive_within(tmp_path / "never-ran", 30)


def test_a_model_measured_again_is_not_downloaded_again(tiny_onnx: Path, tmp_path: Path) -> None:
    """A table build times the dense model between all others: it is fetched once while it
    stays among the last `keep_models` used, and bytes changed on disk are fetched afresh."""
    server = FakeServer(tiny_onnx.read_bytes(), [{"task_id": f"t{i}"} for i in range(3)])
    work_dir = tmp_path / "work"
    run_agent(server, work_dir)
    assert [posted.ok for _, _, posted in server.results] == [True] * 3
    assert server.downloads == 1
    kept = work_dir / f"model-{hashlib.sha256(server.model).hexdigest()}.onnx"
    kept.write_bytes(b"changed on disk")
    server.tasks, server.done = [{"task_id": "t3"}], threading.Event()
    run_agent(server, work_dir)
    assert server.downloads == 2 and server.results[-1][2].ok
    assert kept.read_bytes() == server.model


def test_only_the_last_models_used_are_kept(tmp_path: Path) -> None:
    import os

    from device_agents.model_cache import ModelCache

    cache = ModelCache(tmp_path, keep=2)
    blobs = [b"first", b"second", b"third"]
    shas = [hashlib.sha256(b).hexdigest() for b in blobs]
    for i, (blob, sha) in enumerate(zip(blobs, shas, strict=True)):
        cache.path_for(sha).write_bytes(blob)
        os.utime(cache.path_for(sha), (1000 + i, 1000 + i))
    assert cache.get(shas[0]) is not None  # used now: the most recent
    cache.trim()
    assert cache.get(shas[0]) and cache.get(shas[2]) and cache.get(shas[1]) is None
    assert cache.path_for("../../etc/passwd").parent == tmp_path


def test_measurement_failure_is_posted_not_raised(tmp_path: Path) -> None:
    server = FakeServer(b"these bytes are not onnx", [{"task_id": "bad"}])
    run_agent(server, tmp_path / "work")
    ((_, _, posted),) = server.results
    assert posted.ok is False and posted.result is None
    assert "MeasurementError" in (posted.error or "")


def test_unknown_runtime_and_hash_mismatch_are_posted(tiny_onnx: Path, tmp_path: Path) -> None:
    tasks = [{"task_id": "rt", "runtime": "nope"}, {"task_id": "sha", "sha256": "0" * 64}]
    server = FakeServer(tiny_onnx.read_bytes(), tasks)
    run_agent(server, tmp_path / "work")
    errors = {task_id: posted.error or "" for _, task_id, posted in server.results}
    assert "UnknownRuntimeError" in errors["rt"] and "onnxruntime" in errors["rt"]
    assert "ModelDownloadError" in errors["sha"]
    assert all(not posted.ok for _, _, posted in server.results)


def test_registers_again_after_404(tiny_onnx: Path, tmp_path: Path) -> None:
    server = FakeServer(tiny_onnx.read_bytes(), [{"task_id": "t"}], forget_first_agent=True)
    run_agent(server, tmp_path / "work")
    assert len(server.registrations) == 2
    ((agent_id, _, posted),) = server.results
    assert agent_id == "agent-2"
    assert posted.result is not None and posted.result.device.agent_id == "agent-2"


def test_heartbeats_are_sent(tiny_onnx: Path, tmp_path: Path) -> None:
    server = FakeServer(tiny_onnx.read_bytes(), [])
    threading.Timer(0.5, server.done.set).start()
    run_agent(server, tmp_path / "work", heartbeat_s=0.05)
    assert server.heartbeats and set(server.heartbeats) == {"agent-1"}


# A protocol of ten minutes on any model: only a cancel ends it within a test's time.
ENDLESS = MeasureProtocol(warmup=2, runs=10, max_batches=1, min_duration_s=600)


def test_a_cancelled_task_stops_at_once_posts_nothing_and_frees_the_agent(
    tiny_onnx: Path, tmp_path: Path
) -> None:
    server = FakeServer(
        tiny_onnx.read_bytes(),
        [{"task_id": "long", "protocol": ENDLESS}, {"task_id": "next"}],
        cancelled={"long"},
    )
    started = time.monotonic()
    agent = run_agent(server, tmp_path / "work", heartbeat_s=5.0)

    ((_, task_id, posted),) = server.results
    assert task_id == "next" and posted.ok, "nothing is posted for the cancelled task"
    assert agent.tasks_cancelled == 1 and agent.tasks_done == 1
    # the busy agent named its task at once (not after a 5 s heartbeat) and long-polled on it
    assert server.heartbeat_bodies[0] == (["long"], "5")
    told = server.cancel_sent["long"] - started
    assert told < 2.0
    next_poll = min(t for t in server.polled_at if t >= server.cancel_sent["long"])
    assert next_poll - server.cancel_sent["long"] < 1.0, "back to polling within a run or so"
    sha = hashlib.sha256(server.model).hexdigest()
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["alive", f"model-{sha}.onnx"]


def test_a_server_that_does_not_hold_the_heartbeat_is_not_spun_on(
    tiny_onnx: Path, tmp_path: Path
) -> None:
    """An old server answers 204 at once: the busy agent keeps the normal pace, not a loop."""
    slow = MeasureProtocol(warmup=2, runs=10, max_batches=1, min_duration_s=1.0)
    server = FakeServer(
        tiny_onnx.read_bytes(), [{"task_id": "t", "protocol": slow}], old_heartbeat=True
    )
    agent = run_agent(server, tmp_path / "work", heartbeat_s=0.2)
    assert agent.tasks_done == 1
    assert 2 <= len(server.heartbeats) <= 12  # about one per 0.2 s over ~1 s, not hundreds


def test_main_returns_1_on_a_refused_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(401))

    def client_with_mock(*args, **kwargs) -> AgentClient:
        return AgentClient(*args, transport=transport, **kwargs)

    monkeypatch.setattr(daemon_module, "AgentClient", client_with_mock)
    assert daemon_module.main("http://api.test", "bad", "n", work_dir=tmp_path / "w") == 1


def test_sigterm_stops_main_promptly(tmp_path: Path) -> None:
    """An unreachable server keeps the agent in backoff; SIGTERM must still end it with 0."""
    script = (
        "import sys; from pathlib import Path; from device_agents.daemon import main; "
        "sys.exit(main('http://127.0.0.1:9', 'tok', 'n', work_dir=Path(sys.argv[1])))"
    )
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "w")],
        cwd=repo,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "w").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the work dir appears once the signal handlers are installed
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

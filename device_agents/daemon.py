"""The device agent daemon: register, heartbeat, and measure leased tasks until told to stop.

Failures are sorted by whose they are. A task's failure (the model does not load, the runtime is
missing, the bytes do not match the hash) is posted as ok=False so the job can fail with the
reason. A server's failure (network, 5xx) is waited out with backoff. A 404 for our agent id
means the server forgot us (database reset): register again. Only a refused token (401) or a
machine with no runtime at all ends the daemon, since retrying cannot fix either.

Two threads: the main one polls for a task and measures it; the heartbeat thread keeps the
agent's leases alive and, while a task runs, holds its heartbeat open as a long poll naming
that task. When the server answers that the task was dropped (its job was cancelled, or the
lease is no longer ours), it sets the task's cancel event, the measurement stops at its next
run, nothing is posted, and the agent is free for the next task at once.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from budgetprune.schemas.agent import (
    AgentRegister,
    DeviceClass,
    RuntimeInfo,
    TaskLease,
    TaskResult,
)
from device_agents._backoff import backoff_delay
from device_agents.client import AgentClient
from device_agents.errors import (
    AgentError,
    AgentStoppedError,
    AuthenticationError,
    MeasurementStoppedError,
    ModelDownloadError,
    TaskCancelledError,
    UnknownAgentError,
)
from device_agents.fingerprint import host_info, local_fingerprint
from device_agents.measure import measure
from device_agents.model_cache import ModelCache
from device_agents.runtimes import available_runtimes

__all__ = ["Agent", "main"]

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 4000  # TaskResult.error's limit
_JOIN_HEARTBEAT_S = 1.0  # a long-poll beat in flight holds nothing worth waiting for
ALIVE_FILE = "alive"  # touched on every answer from the server: a container's health check


def alive_within(work_dir: Path | str, seconds: float) -> bool:
    """Whether the agent using `work_dir` heard from its server in the last `seconds` (an agent
    has no port to probe; docker-compose.yml's health check calls this)."""
    try:
        return time.time() - (Path(work_dir) / ALIVE_FILE).stat().st_mtime <= seconds
    except OSError:
        return False


@dataclass
class _RunningTask:
    """The task the main thread works on, shared with the heartbeat thread that watches it."""

    lease: TaskLease
    cancelled: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)


class Agent:
    def __init__(
        self,
        client: AgentClient,
        name: str,
        device_class: DeviceClass = "cpu",
        *,
        work_dir: Path,
        poll_wait_s: float = 20.0,
        heartbeat_s: float = 10.0,
        error_backoff_s: float = 1.0,
        error_backoff_cap_s: float = 60.0,
        keep_models: int = 2,
    ) -> None:
        self.client = client
        self.name = name
        self.device_class: DeviceClass = device_class
        self.work_dir = Path(work_dir)
        self.models = ModelCache(self.work_dir, keep_models)
        self.poll_wait_s = poll_wait_s
        self.heartbeat_s = heartbeat_s
        self.error_backoff_s = error_backoff_s
        self.error_backoff_cap_s = error_backoff_cap_s
        self.agent_id: str | None = None
        self.tasks_done = 0
        self.tasks_cancelled = 0  # dropped by the server mid-task, so not posted
        self.busy = False  # measuring a task: a first signal lets it finish
        self._runtimes: list[RuntimeInfo] = []
        # set by either thread when the server answers 404 for our id; the main loop registers
        self._reregister = threading.Event()
        self._task: _RunningTask | None = None
        # wakes the heartbeat thread: a task started (watch it now) or the daemon is stopping
        self._wake = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set. Returns promptly after it is set (at most one long poll)."""
        self._runtimes = available_runtimes()
        if not self._runtimes:
            raise AgentError("no measurement runtime is importable here: install onnxruntime")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._remove_task_files()
        heartbeat_stop = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat_loop, args=(heartbeat_stop,), name="agent-heartbeat", daemon=True
        )
        failures = 0
        try:
            while not stop.is_set():
                try:
                    if self.agent_id is None or self._reregister.is_set():
                        self._register()
                        if not heartbeat.is_alive():
                            heartbeat.start()
                    lease = self.client.next_task(self.agent_id or "", self.poll_wait_s)
                    self._mark_alive()
                    if lease is not None:
                        self._handle(lease, stop)
                    failures = 0
                except UnknownAgentError as exc:
                    log.warning("%s; registering again", exc)
                    self._reregister.set()
                    failures += 1
                    if failures > 1:  # forgotten again right away: do not hammer the server
                        stop.wait(
                            backoff_delay(failures, self.error_backoff_s, self.error_backoff_cap_s)
                        )
                except AgentStoppedError:
                    break
                except AuthenticationError:
                    raise
                except Exception as exc:  # a daemon outlives server hiccups and its own bugs
                    failures += 1
                    delay = backoff_delay(failures, self.error_backoff_s, self.error_backoff_cap_s)
                    if isinstance(exc, AgentError):
                        log.warning("server problem (%s); trying again in %.1f s", exc, delay)
                    else:
                        log.exception("unexpected error; trying again in %.1f s", delay)
                    stop.wait(delay)
        finally:
            heartbeat_stop.set()
            self._wake.set()
            if heartbeat.is_alive():
                heartbeat.join(timeout=_JOIN_HEARTBEAT_S)
            self._remove_task_files()
        log.info("agent %s stopped after %d task(s)", self.agent_id, self.tasks_done)

    def _mark_alive(self) -> None:
        try:
            (self.work_dir / ALIVE_FILE).touch()
        except OSError:  # a full or read-only work dir must not stop measurements
            log.warning("cannot touch %s", self.work_dir / ALIVE_FILE)

    def _register(self) -> None:
        runtimes = self._runtimes
        host = host_info()
        public = self.client.register(
            AgentRegister(
                name=self.name,
                device_class=self.device_class,
                cpu_model=host.cpu_model,
                cores=host.cores,
                os=host.os,
                runtimes=runtimes,
            )
        )
        self.agent_id = public.id
        self._reregister.clear()
        names = ", ".join(f"{r.name} {r.version}" for r in runtimes)
        log.info("registered as agent %s (%s; %s)", public.id, host.cpu_model, names)

    def _heartbeat_loop(self, stop: threading.Event) -> None:
        """Idle: one short heartbeat every `heartbeat_s`. Busy: heartbeats back to back, each
        naming the task and held by the server for up to `heartbeat_s` unless it drops the
        task, so a cancel arrives within the server's poll interval for the same one request
        per period (a measurement pays for every request the device serves)."""
        due = time.monotonic() + self.heartbeat_s  # registering was a sign of life
        while not stop.is_set():
            # a task that started during the last beat left the event set: watch it right away
            if self._wake.wait(max(due - time.monotonic(), 0)):
                self._wake.clear()
                due = time.monotonic()  # a task started: watch it now (or we are stopping)
                continue
            try:
                due = self._beat()
            except AgentStoppedError:
                return
            except Exception:  # a dead heartbeat thread would lose every lease: carry on
                if stop.is_set():
                    return  # the client was closed under a beat in flight
                log.exception("heartbeat failed")
                due = time.monotonic() + self.heartbeat_s

    def _beat(self) -> float:
        """One heartbeat; returns when the next one is due."""
        started = time.monotonic()
        paced = started + self.heartbeat_s
        agent_id = self.agent_id
        if agent_id is None or self._reregister.is_set():
            return paced
        task = self._task
        try:
            if task is None or task.cancelled.is_set():
                self.client.heartbeat(agent_id)
                self._mark_alive()
                return paced
            task_id = task.lease.task_id
            reply = self.client.heartbeat(agent_id, [task_id], wait_s=self.heartbeat_s)
            self._mark_alive()
        except UnknownAgentError:
            self._reregister.set()
            return paced
        except AgentStoppedError:
            raise
        except AgentError as exc:
            log.warning("heartbeat failed: %s", exc)
            return paced
        if task_id in reply.cancelled_task_ids:
            log.info("task %s: the server dropped it; stopping the measurement", task_id)
            task.cancelled.set()
            return paced  # the next task wakes the loop
        if time.monotonic() - started < self.heartbeat_s / 2:
            # the task ended, or the server did not hold the answer: the idle pace, not a spin
            return paced
        return time.monotonic()

    # -- one task ------------------------------------------------------------------------------

    def _handle(self, lease: TaskLease, stop: threading.Event) -> None:
        """Download, measure, post. Server errors propagate to the loop; task errors are posted;
        a task the server dropped meanwhile is abandoned without a word."""
        task = _RunningTask(lease)
        self.busy = True
        self._task = task
        self._wake.set()
        try:
            self._handle_task(lease, stop, task.cancelled)
        except TaskCancelledError:
            self.tasks_cancelled += 1
            log.info(
                "task %s cancelled after %.1f s (its job was cancelled or the lease is no "
                "longer ours): stopped, nothing posted",
                lease.task_id,
                time.monotonic() - task.started,
            )
        finally:
            self._task = None
            self.busy = False

    def _handle_task(
        self, lease: TaskLease, stop: threading.Event, cancelled: threading.Event
    ) -> None:
        log.info("task %s: %s, %d thread(s)", lease.task_id, lease.runtime, lease.protocol.threads)
        try:
            path = self.models.get(lease.model_sha256)
            if path is not None:
                log.info("task %s: model %s kept from an earlier task", lease.task_id, path.name)
            else:
                path = self.models.path_for(lease.model_sha256)
                try:
                    self.client.download_model(lease, path, cancel=cancelled)
                except ModelDownloadError as exc:
                    result = TaskResult(lease_id=lease.lease_id, ok=False, error=_text(exc))
                    self._post(lease, result)
                    return
            try:
                device = local_fingerprint(
                    runtime=lease.runtime,
                    threads=lease.protocol.threads,
                    batch_size=lease.protocol.batch_size,
                    input_shape=lease.input_shape,
                    agent_id=self.agent_id,
                    device_class=self.device_class,
                )
                result = measure(
                    path, lease.runtime, lease.protocol, device, stop=stop, cancel=cancelled
                )
            except TaskCancelledError:
                raise
            except MeasurementStoppedError:
                # not posted: the lease runs out and the server hands the task to someone else
                log.info("task %s abandoned: agent stopping", lease.task_id)
                return
            except Exception as exc:  # whatever the runtime raised is the task's outcome
                log.exception("task %s failed", lease.task_id)
                self._post(lease, TaskResult(lease_id=lease.lease_id, ok=False, error=_text(exc)))
                return
            log.info(
                "task %s: p50 %.3f ms, p90 %.3f ms over %d runs (stable: %s)",
                lease.task_id,
                result.stats.p50_ms,
                result.stats.p90_ms,
                result.stats.runs,
                result.stable,
            )
            self._post(lease, TaskResult(lease_id=lease.lease_id, ok=True, result=result))
        finally:
            self.models.trim()

    def _post(self, lease: TaskLease, result: TaskResult) -> None:
        task = self._task
        if task is not None and task.cancelled.is_set():
            # dropped while the last run finished: the server would answer 409 anyway
            raise TaskCancelledError("the task was dropped before its result was posted")
        if self.client.post_result(self.agent_id or "", lease.task_id, result):
            self.tasks_done += 1
        else:
            log.warning(
                "task %s: result refused (409): the lease expired or is not ours", lease.task_id
            )

    def _remove_task_files(self) -> None:
        """Partial downloads left by a crash, and kept models beyond the cache's size, would
        otherwise pile up on a small device."""
        self.models.trim()
        for leftover in self.work_dir.glob(".*.part"):
            leftover.unlink(missing_ok=True)


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]


def main(
    server: str,
    token: str,
    name: str,
    device_class: DeviceClass = "cpu",
    work_dir: Path = Path("var/agent"),
    keep_models: int = 2,
) -> int:
    """Entry point for `budgetprune agent`. Exit codes: 0 stopped by a signal, 1 fatal
    configuration error (bad token, no runtime), 130 second interrupt."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    # httpx logs every request at INFO: one line per poll and heartbeat would bury the tasks
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}

    agent: Agent | None = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if agent is None or not agent.busy:
            # idle, most likely inside a long poll: nothing to finish, so do not wait it out
            log.info("signal %d: stopping", signum)
            raise AgentStoppedError("stopped by a signal")
        log.info("signal %d: finishing the task (send it again to abort)", signum)

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        with AgentClient(server, token, stop=stop, timeout=30.0) as client:
            agent = Agent(client, name, device_class, work_dir=work_dir, keep_models=keep_models)
            agent.run(stop)
        return 0
    except AgentStoppedError:  # a signal before the loop started
        return 0
    except AuthenticationError as exc:
        log.error("%s", exc)
        return 1
    except AgentError as exc:
        log.error("agent cannot run: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

"""Start and stop the three processes of the service (API, worker, agent) as children.

Used by `budgetprune demo` and by the end-to-end tests, so both exercise the same real
processes a deployment runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM when the process that started it dies. A test run or a
    demo killed without its clean-up would otherwise leave services polling and measuring in the
    background, loading the machine whose latencies the next run measures."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    user_token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def agent_token(self) -> str:
        return self.env["BUDGETPRUNE_AGENT_TOKEN"]

    def create_user(self, name: str = "demo", admin: bool = True) -> str:
        """A user token, written to the stack's store the way `budgetprune token create` does."""
        import json

        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "budgetprune.cli",
                "token",
                "create",
                "--name",
                name,
                *(["--admin"] if admin else []),
                "--json",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout)["token"]

    def log_path(self, name: str) -> Path:
        return (self.data_dir / "logs" / f"{name}.log").resolve()

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = self.log_path(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")  # noqa: SIM115  (closed with the process)
        proc = subprocess.Popen(
            [sys.executable, "-m", "budgetprune.cli", *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.procs[name] = proc
        return proc

    def start_api(self, workers: int = 1) -> None:
        self._spawn(
            "api",
            "serve",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--workers",
            str(workers),
        )
        self.wait_for(
            lambda: httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200,
            "the API to answer /healthz",
            proc="api",
        )

    def start_worker(self, name: str = "worker") -> None:
        self.wait_for_worker(*self._spawn_worker(name))

    def _spawn_worker(self, name: str) -> tuple[str, int]:
        """The worker's name and where its log stood: a restarted worker appends to the log
        its predecessor's "ready" line is in."""
        log = self.log_path(name)
        offset = log.stat().st_size if log.exists() else 0
        self._spawn(name, "worker", "--hostname", f"{name}@%h")
        return name, offset

    def wait_for_worker(self, name: str, offset: int = 0, timeout: float = 120) -> None:
        """Until Celery logs the worker ready. Jobs submitted before a worker consumes go to
        the workers that started first (a loaded machine takes seconds to import torch)."""
        log = self.log_path(name)
        self.wait_for(
            lambda: b" ready." in log.read_bytes()[offset:],
            f"{name} to be ready",
            timeout=timeout,
            proc=name,
        )

    def start_agent(self, name: str = "agent", device_class: str = "cpu") -> None:
        self._spawn(
            name,
            "agent",
            "--server",
            self.url,
            f"--token={self.agent_token}",
            "--name",
            name,
            "--device-class",
            device_class,
            "--work-dir",
            str((self.data_dir / name).resolve()),
        )

    def start_all(
        self, workers: tuple[str, ...] = ("worker",), agents: tuple[str, ...] = ("agent-1",)
    ) -> str:
        """API, an admin user (its token is returned and kept), workers and agents, ready."""
        self.start_api()
        self.user_token = self.create_user("admin", admin=True)
        started = [self._spawn_worker(name) for name in workers]
        for name in agents:
            self.start_agent(name)
        for worker in started:
            self.wait_for_worker(*worker)
        self.wait_for_agents(self.user_token, len(agents))
        return self.user_token

    def wait_for_agents(self, token: str, count: int = 1, timeout: float = 120) -> None:
        def ready() -> bool:
            headers = {"Authorization": f"Bearer {token}"}
            r = httpx.get(f"{self.url}/v1/devices", headers=headers, timeout=5)
            return r.status_code == 200 and r.json()["count"] >= count

        self.wait_for(ready, f"{count} agent(s) to register", timeout=timeout)

    def wait_for(self, check, what: str, timeout: float = 60, proc: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc and self.procs[proc].poll() is not None:
                raise RuntimeError(f"{proc} exited early\n{self.log_tails()}")
            try:
                if check():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"timed out waiting for {what}\n{self.log_tails()}")

    def log_tails(self, lines: int = 20) -> str:
        """The end of every process's log: what a failure report needs when the logs are gone."""
        parts = []
        for name in self.procs:
            path = self.log_path(name)
            text = path.read_text(errors="replace") if path.exists() else ""
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"--- {name} ({path}) ---\n{tail}")
        return "\n".join(parts)

    def stop(self, name: str | None = None, sig: int = signal.SIGTERM, grace: float = 5) -> None:
        """Ask politely; a second signal aborts a long poll; SIGKILL if still alive. All the
        processes at once, so stopping a stack takes as long as its slowest process."""
        names = [name] if name else list(reversed(self.procs))
        live = [self.procs[n] for n in names if n in self.procs]
        for s in (sig, sig, signal.SIGKILL):
            live = [proc for proc in live if proc.poll() is None]
            if not live:
                return
            for proc in live:
                try:
                    os.killpg(proc.pid, s)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            for proc in live:
                try:
                    proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
                except subprocess.TimeoutExpired:
                    continue

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stack_env(
    data_dir: Path, *, embedded: bool, extra: dict[str, str] | None = None
) -> dict[str, str]:
    from budgetprune.config import new_token

    env = dict(os.environ)
    if embedded:
        for key in (
            "REDIS_URL",
            "DATABASE_URL",
            "BUDGETPRUNE_REDIS_URL",
            "BUDGETPRUNE_DATABASE_URL",
        ):
            env.pop(key, None)
    env |= {
        "BUDGETPRUNE_DATA_DIR": str(data_dir.resolve()),
        "BUDGETPRUNE_AGENT_TOKEN": new_token(),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    }
    env |= extra or {}
    return env

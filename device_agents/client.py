"""The agent's side of the HTTP agent protocol (budgetprune.schemas.agent).

Every call retries network errors, 429 and 5xx with capped exponential backoff and jitter, then
raises ServerUnavailableError; the daemon decides what to do next. The transport is swappable so
tests drive the client with httpx.MockTransport instead of a server.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from budgetprune.schemas.agent import (
    AgentHeartbeat,
    AgentPublic,
    AgentRegister,
    AgentRegistered,
    HeartbeatReply,
    TaskLease,
    TaskResult,
)
from device_agents._backoff import backoff_delay
from device_agents.errors import (
    AgentStoppedError,
    AuthenticationError,
    ModelDownloadError,
    ProtocolError,
    ServerUnavailableError,
    TaskCancelledError,
    UnknownAgentError,
)

__all__ = ["DEFAULT_MAX_MODEL_BYTES", "AgentClient"]

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: the API's own default upload limit (Settings.max_model_bytes); DeiT-Base is ~350 MB
DEFAULT_MAX_MODEL_BYTES = 2 * 1024**3


class _Retry(Exception):
    """A response worth retrying (429, 5xx)."""


class AgentClient:
    def __init__(
        self,
        server: str,
        token: str,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        *,
        max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        stop: threading.Event | None = None,
    ) -> None:
        """`stop` interrupts the waits between retries so a daemon shuts down promptly."""
        self.timeout = timeout
        self.max_model_bytes = max_model_bytes
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_cap_s = backoff_cap_s
        self._stop = stop if stop is not None else threading.Event()
        self._enrollment = token
        self._http = httpx.Client(
            base_url=server.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "User-Agent": "budgetprune-agent"},
            transport=transport,
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- protocol ------------------------------------------------------------------------------

    def register(self, agent: AgentRegister) -> AgentPublic:
        """Enrol with the shared token; every later call uses the agent's own token."""
        resp = self._send(
            "POST", "/v1/agents/register", body=agent, auth=f"Bearer {self._enrollment}"
        )
        if resp.status_code in (200, 201):
            registered = _parse(AgentRegistered, resp)
            self._http.headers["Authorization"] = f"Bearer {registered.token}"
            return AgentPublic(**registered.model_dump(exclude={"token"}))
        raise _unexpected(resp)

    def heartbeat(
        self, agent_id: str, task_ids: Sequence[str] = (), wait_s: float = 0.0
    ) -> HeartbeatReply:
        """Alive. Names the tasks being worked on; the reply lists those to drop. With `wait_s`
        the server holds the answer until one is dropped or the wait is over (a long poll, so
        the read timeout is stretched as for `next_task`)."""
        body = AgentHeartbeat(task_ids=list(task_ids)) if task_ids else None
        resp = self._send(
            "POST",
            f"/v1/agents/{_seg(agent_id)}/heartbeat",
            body=body,
            params={"wait": _fmt_seconds(wait_s)} if wait_s else None,
            timeout=wait_s + self.timeout if wait_s else None,
        )
        if resp.status_code == 204 or (resp.status_code == 200 and not resp.content):
            return HeartbeatReply()  # a server from before replies carried news
        if resp.status_code == 200:
            return _parse(HeartbeatReply, resp)
        raise _unexpected(resp, agent_id)

    def next_task(self, agent_id: str, wait_s: float) -> TaskLease | None:
        """Long poll: the read timeout is stretched past `wait_s` so a quiet server is not an
        error."""
        resp = self._send(
            "GET",
            f"/v1/agents/{_seg(agent_id)}/tasks/next",
            params={"wait": _fmt_seconds(wait_s)},
            timeout=wait_s + self.timeout,
        )
        if resp.status_code == 204:
            return None
        if resp.status_code == 200:
            return _parse(TaskLease, resp)
        raise _unexpected(resp, agent_id)

    def post_result(self, agent_id: str, task_id: str, result: TaskResult) -> bool:
        """False when the server refuses with 409: the lease expired or went to another agent."""
        resp = self._send(
            "POST", f"/v1/agents/{_seg(agent_id)}/tasks/{_seg(task_id)}/result", body=result
        )
        if resp.status_code in (200, 201, 204):
            return True
        if resp.status_code == 409:
            return False
        raise _unexpected(resp, agent_id)

    def download_model(
        self, lease: TaskLease, dest: Path, *, cancel: threading.Event | None = None
    ) -> Path:
        """Stream the model to `dest` (a file, or a directory to put it in) and verify its hash.

        Bytes go to a temporary name next to `dest` and are renamed only once the sha256 matches
        the lease, so a half-written or tampered file is never measured. `cancel` is checked
        between chunks (TaskCancelledError): a large model over a phone's link takes a while.
        """
        if not lease.model_url.startswith("/") or lease.model_url.startswith("//"):
            # the bearer token must not travel to another host
            raise ModelDownloadError(
                f"model_url must be a path on this server: {lease.model_url!r}"
            )
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / f"model-{lease.model_sha256[:16]}.onnx"
        expected = lease.model_sha256.lower()
        return self._retrying(
            "download", lambda: self._download_once(lease.model_url, dest, expected, cancel)
        )

    # -- plumbing ------------------------------------------------------------------------------

    def _download_once(
        self, url: str, dest: Path, expected_sha256: str, cancel: threading.Event | None
    ) -> Path:
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with self._http.stream("GET", url) as resp:
                _raise_if_retryable(resp)
                if resp.status_code != 200:
                    resp.read()
                    raise ModelDownloadError(f"model download answered HTTP {resp.status_code}")
                announced = resp.headers.get("content-length")
                if announced and announced.isdigit() and int(announced) > self.max_model_bytes:
                    raise ModelDownloadError(
                        f"model is {int(announced)} bytes, over the limit of {self.max_model_bytes}"
                    )
                digest = hashlib.sha256()
                size = 0
                with tmp.open("wb") as f:
                    for chunk in resp.iter_bytes(1 << 20):
                        if cancel is not None and cancel.is_set():
                            raise TaskCancelledError("download cancelled: the task was dropped")
                        size += len(chunk)
                        if size > self.max_model_bytes:
                            raise ModelDownloadError(
                                f"model exceeds the limit of {self.max_model_bytes} bytes"
                            )
                        digest.update(chunk)
                        f.write(chunk)
            got = digest.hexdigest()
            if got != expected_sha256:
                raise ModelDownloadError(
                    f"model sha256 {got} does not match the lease's {expected_sha256}"
                )
            os.replace(tmp, dest)
            return dest
        finally:
            tmp.unlink(missing_ok=True)

    def _send(
        self,
        method: str,
        url: str,
        *,
        body: BaseModel | None = None,
        params: dict[str, str] | None = None,
        timeout: float | None = None,
        auth: str | None = None,
    ) -> httpx.Response:
        content = body.model_dump_json().encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if auth is not None:
            headers["Authorization"] = auth

        def once() -> httpx.Response:
            resp = self._http.request(
                method,
                url,
                content=content,
                headers=headers,
                params=params,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            _raise_if_retryable(resp)
            return resp

        return self._retrying(f"{method} {url}", once)

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        last: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                return call()
            except (httpx.TransportError, _Retry) as exc:
                last = exc
            if attempt == self.max_attempts:
                break
            delay = backoff_delay(attempt, self.backoff_s, self.backoff_cap_s)
            log.warning("%s failed (%s); retry %d in %.1f s", what, last, attempt, delay)
            if self._stop.wait(delay):
                raise AgentStoppedError(f"{what}: stopped while waiting to retry")
        raise ServerUnavailableError(f"{what}: gave up after {self.max_attempts} attempts: {last}")


def _raise_if_retryable(resp: httpx.Response) -> None:
    if resp.status_code == 401:
        raise AuthenticationError("the server refused the agent token (HTTP 401)")
    if resp.status_code == 429 or resp.status_code >= 500:
        raise _Retry(f"HTTP {resp.status_code}")


def _unexpected(resp: httpx.Response, agent_id: str | None = None) -> Exception:
    if resp.status_code == 404 and agent_id is not None:
        return UnknownAgentError(f"the server does not know agent {agent_id!r}")
    return ProtocolError(
        f"{resp.request.method} {resp.request.url.path} answered HTTP {resp.status_code}: "
        f"{resp.text[:300]}"
    )


def _parse(model: type[M], resp: httpx.Response) -> M:
    try:
        return model.model_validate_json(resp.content)
    except ValidationError as exc:
        raise ProtocolError(f"unexpected {model.__name__} from the server: {exc}") from exc


def _seg(value: str) -> str:
    """Ids become one path segment whatever they contain."""
    return quote(value, safe="")


def _fmt_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"

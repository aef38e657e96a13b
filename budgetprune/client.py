"""Python client of the REST API; the CLI is built on it.

job = Client("http://127.0.0.1:8000").submit(model="deit_tiny_patch16_224", budget_ms=20)
job.wait()
job.download("out/")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from budgetprune.artifacts import ARTIFACT_NAMES
from budgetprune.errors import BudgetPruneError
from budgetprune.schemas import (
    TERMINAL_STATES,
    AgentsPublic,
    JobCreate,
    JobEventPublic,
    JobEventsPublic,
    JobPublic,
    Signer,
)
from budgetprune.signing import SIGNING_KEY_PATH


class ApiError(BudgetPruneError):
    def __init__(self, status_code: int, detail: object) -> None:
        if isinstance(detail, list):
            detail = "; ".join(str(d) for d in detail)
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code


class Client:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, transport=transport, timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise BudgetPruneError(
                f"cannot reach the server at {self._http.base_url}: {exc}"
            ) from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response

    def submit(self, spec: JobCreate | None = None, **fields: object) -> Job:
        spec = spec or JobCreate(**fields)
        body = spec.model_dump(mode="json", exclude_none=True)
        data = self._request("POST", "/v1/jobs", json=body).json()
        return Job(self, JobPublic.model_validate(data))

    def upload(self, path: str | Path) -> str:
        """Upload a checkpoint or data set zip; returns the server path a job can name."""
        path = Path(path)
        with path.open("rb") as fh:
            response = self._request(
                "POST",
                "/v1/uploads",
                params={"name": path.name},
                content=fh,
                headers={"Content-Type": "application/octet-stream"},
            )
        return response.json()["path"]

    def job(self, job_id: str) -> Job:
        return Job(self, self._get_job(job_id))

    def _get_job(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._request("GET", f"/v1/jobs/{job_id}").json())

    def cancel(self, job_id: str) -> JobPublic:
        return JobPublic.model_validate(self._request("DELETE", f"/v1/jobs/{job_id}").json())

    def events(self, job_id: str, after: int = 0) -> list[JobEventPublic]:
        """The job's progress history after event id `after` (every event by default), every
        page of it: one answer holds at most a page (1000), and a training job logs a step
        each."""
        out: list[JobEventPublic] = []
        while True:
            response = self._request("GET", f"/v1/jobs/{job_id}/events", params={"after": after})
            page = JobEventsPublic.model_validate(response.json()).data
            if not page:
                return out
            out += page
            after = page[-1].id

    def devices(self) -> AgentsPublic:
        return AgentsPublic.model_validate(self._request("GET", "/v1/devices").json())

    def artifact(self, job_id: str, name: str) -> bytes:
        return self._request("GET", f"/v1/jobs/{job_id}/artifacts/{name}").content

    def signing_key(self) -> Signer:
        """The key this service signs certificates with: the trust anchor for `verify`."""
        return Signer.model_validate(self._request("GET", SIGNING_KEY_PATH).json())


class Job:
    def __init__(self, client: Client, status: JobPublic) -> None:
        self._client = client
        self.status = status

    @property
    def id(self) -> str:
        return self.status.id

    def refresh(self) -> JobPublic:
        self.status = self._client._get_job(self.id)
        return self.status

    def wait(
        self,
        timeout: float | None = None,
        poll_s: float = 1.0,
        on_update: Callable[[JobPublic], None] | None = None,
    ) -> JobPublic:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.refresh()
            if on_update:
                on_update(status)
            if status.state in TERMINAL_STATES:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} still {status.state} after {timeout} s")
            time.sleep(poll_s)

    @property
    def certificate(self) -> dict[str, object]:
        import json

        return json.loads(self._client.artifact(self.id, "certificate.json"))

    def download(self, directory: str | Path, *, verify: bool = True) -> Path:
        """Fetch the artifacts; with `verify`, a delivered model's certificate is checked
        against the server's published key and the model's hash (CertificateError if not)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        artifacts = self.refresh().artifacts
        for name in ARTIFACT_NAMES:
            if name in artifacts:
                tmp = out / f".{name}.part"
                tmp.write_bytes(self._client.artifact(self.id, name))
                tmp.replace(out / name)
        if verify and "certificate.json" in artifacts and "model.onnx" in artifacts:
            from budgetprune.verify import verify_dir

            verify_dir(out, trusted_public_keys=[self._client.signing_key().public_key])
        return out

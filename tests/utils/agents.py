"""Factories for tests that talk to the API as an agent or a user."""

from __future__ import annotations

from budgetprune.config import Settings
from budgetprune.schemas import MeasureProtocol
from budgetprune.store import crud, session_scope

ENROLL_HEADERS = {"Authorization": "Bearer test-agent-token"}


def register_agent(client, device_class: str = "cpu", runtimes=("onnxruntime",)):
    """Register; returns the agent id and the headers that carry its own token."""
    body = {
        "name": f"test-{device_class}",
        "device_class": device_class,
        "cpu_model": "Test CPU",
        "cores": 2,
        "os": "Linux",
        "runtimes": [{"name": r, "version": "1.0"} for r in runtimes],
    }
    r = client.post("/v1/agents/register", json=body, headers=ENROLL_HEADERS)
    assert r.status_code == 201, r.text
    return r.json()["id"], {"Authorization": f"Bearer {r.json()['token']}"}


def user_headers(settings: Settings, name: str = "user", admin: bool = False) -> dict[str, str]:
    with session_scope(settings.database_url) as s:
        _, token = crud.create_user(s, name=name, is_admin=admin)
    return {"Authorization": f"Bearer {token}"}


def queue_task(settings: Settings, device: str = "cpu") -> str:
    """A measurement task waiting in the store, as a job's measurer leaves one."""
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

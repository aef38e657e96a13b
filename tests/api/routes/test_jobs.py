from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from utils.agents import register_agent, user_headers  # noqa: E402

TINY = "deit_tiny_patch16_224"


def test_submit_answers_202_with_location(client):
    register_agent(client)
    r = client.post("/v1/jobs", json={"model": TINY, "budget_ms": 10})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] == "queued" and job["progress"] == 0
    got = client.get(r.headers["Location"]).json()
    assert got["id"] == job["id"] and got["spec"]["model"] == TINY
    listed = client.get("/v1/jobs").json()
    assert listed["count"] == 1 and listed["data"][0]["id"] == job["id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": "resnet50", "budget_ms": 10}, "unknown model 'resnet50'"),
        ({"model": TINY, "budget_ms": 0}, "greater than 0"),
        ({"model": TINY, "budget_ms": -3}, "greater than 0"),
        ({"model": TINY}, "exactly one of budget_ms"),
        ({"model": TINY, "budget_ms": 5, "budget_fraction": 0.5}, "exactly one of budget_ms"),
        ({"model": TINY, "budget_ms": 5, "img_size": 30}, "multiple of the patch size"),
        ({"model": TINY, "budget_ms": 5, "device": "toaster"}, "unknown device 'toaster'"),
        ({"model": TINY, "budget_ms": 5, "device": "mobile"}, "no agent of device class 'mobile'"),
        ({"model": TINY, "budget_ms": 5, "runtime": "tvm"}, "offers runtime 'tvm'"),
        ({"model": TINY, "budget_ms": 5, "runtime": "tensorrt"}, "runtime"),
        ({"model": TINY, "budget_ms": 5, "device": "fpga"}, "fpga:zcu102-int8"),
        ({"model": TINY, "budget_ms": 5, "device": "fpga:vu9p"}, "no FPGA profile 'vu9p'"),
    ],
)
def test_bad_input_is_a_clear_422(client, body, message):
    register_agent(client)
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    assert message in str(r.json()["detail"])
    assert client.get("/v1/jobs").json()["count"] == 0


def test_an_fpga_profile_is_a_device_without_an_agent(client):
    """No agent needed: the worker estimates with the profile, and says so."""
    r = client.post("/v1/jobs", json={"model": TINY, "budget_ms": 5, "device": "fpga:kv260-int8"})
    assert r.status_code == 202, r.text
    assert r.json()["measured"] is False
    devices = client.get("/v1/devices").json()
    assert devices["count"] == 0
    profiles = {p["device"]: p for p in devices["profiles"]}
    assert set(profiles) == {"fpga:zcu102-int8", "fpga:kv260-int8"}
    assert profiles["fpga:zcu102-int8"]["measured"] is False
    assert "VAQF" in profiles["fpga:zcu102-int8"]["calibration"]


def test_unknown_job_and_artifact_are_404(client):
    assert client.get("/v1/jobs/nope").status_code == 404
    register_agent(client)
    job = client.post("/v1/jobs", json={"model": TINY, "budget_ms": 10}).json()
    r = client.get(f"/v1/jobs/{job['id']}/artifacts/model.onnx")
    assert r.status_code == 404 and "not ready" in r.json()["detail"]
    r = client.get(f"/v1/jobs/{job['id']}/artifacts/..%2F..%2Fetc%2Fpasswd")
    assert r.status_code == 404


def test_cancel_a_queued_job(client):
    register_agent(client)
    job = client.post("/v1/jobs", json={"model": TINY, "budget_ms": 10}).json()
    r = client.delete(f"/v1/jobs/{job['id']}")
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    other = client.post("/v1/jobs", json={"model": TINY, "budget_ms": 10}).json()
    r = client.post(f"/v1/jobs/{other['id']}/cancel")
    assert r.status_code == 202 and r.json()["state"] == "cancelled"


def test_models_and_openapi(client):
    names = [m["name"] for m in client.get("/v1/models").json()["data"]]
    assert TINY in names
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v1/jobs" in paths and "/v1/jobs/{job_id}/artifacts/{name}" in paths
    assert client.get("/docs").status_code == 200


def test_api_imports_no_torch():
    code = "import sys, api.main; api.main.create_app; assert 'torch' not in sys.modules"
    import subprocess

    assert importlib.util.find_spec("api") is not None
    subprocess.run([sys.executable, "-c", code], check=True)


def test_data_paths_must_be_inside_allowed_roots(client, settings, tmp_path):
    register_agent(client)
    body = {"model": TINY, "budget_ms": 10, "dataset": "/etc"}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422 and "data roots" in r.json()["detail"]
    r = client.post("/v1/jobs", json=body | {"dataset": str(settings.uploads_dir / "../../x")})
    assert r.status_code == 422 and "data roots" in r.json()["detail"]
    settings.data_roots = [tmp_path / "shared"]
    missing = tmp_path / "shared" / "nope.zip"
    r = client.post("/v1/jobs", json=body | {"dataset": str(missing)})
    assert r.status_code == 422 and "does not exist" in r.json()["detail"]
    missing.parent.mkdir(parents=True)
    missing.write_bytes(b"x")
    r = client.post("/v1/jobs", json=body | {"dataset": str(missing)})
    assert r.status_code == 202
    # "auto" names the device's own table, not a path
    r = client.post("/v1/jobs", json={"model": TINY, "budget_ms": 10, "latency_table": "auto"})
    assert r.status_code == 202, r.text
    r = client.post("/v1/jobs", json={"model": TINY, "budget_ms": 10, "latency_table": "/etc"})
    assert r.status_code == 422 and "data roots" in r.json()["detail"]


def test_users_see_only_their_own_jobs(client, settings):
    register_agent(client)
    mine = client.post("/v1/jobs", json={"model": TINY, "budget_ms": 10}).json()
    bob = user_headers(settings, "bob")
    admin = user_headers(settings, "root", admin=True)
    assert client.get(f"/v1/jobs/{mine['id']}", headers=bob).status_code == 404
    assert client.delete(f"/v1/jobs/{mine['id']}", headers=bob).status_code == 404
    r = client.get(f"/v1/jobs/{mine['id']}/artifacts/report.json", headers=bob)
    assert r.status_code == 404
    assert client.get("/v1/jobs", headers=bob).json()["count"] == 0
    assert client.get("/v1/jobs", headers=admin).json()["count"] == 1
    assert client.get(f"/v1/jobs/{mine['id']}", headers=admin).status_code == 200


def test_no_token_is_401_everywhere(client):
    anonymous = {"Authorization": ""}
    for method, path in [
        ("GET", "/v1/jobs"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/x"),
        ("DELETE", "/v1/jobs/x"),
        ("GET", "/v1/jobs/x/artifacts/arch.json"),
        ("GET", "/v1/devices"),
        ("GET", "/v1/models"),
    ]:
        r = client.request(method, path, headers=anonymous)
        assert r.status_code == 401, (method, path)
        assert r.json()["title"] == "Unauthorized" and "token" in r.json()["detail"]


def test_idempotency_key(client):
    register_agent(client)
    body = {"model": TINY, "budget_ms": 10}
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    other = client.post(
        "/v1/jobs", json=body | {"budget_ms": 11}, headers={"Idempotency-Key": "k1"}
    )
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
    assert client.get("/v1/jobs").json()["count"] == 1


def test_a_request_that_loses_the_idempotency_race_gets_the_winners_job(client, monkeypatch):
    """Two retries with one key can both miss the lookup; the unique constraint admits one,
    and the other answers with that job instead of a 500."""
    from budgetprune.store import crud

    register_agent(client)
    body = {"model": TINY, "budget_ms": 10}
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "race"}).json()
    real = crud.job_by_idempotency_key
    calls = []

    def blind_once(session, *, owner_id, key):
        calls.append(key)
        return None if len(calls) == 1 else real(session, owner_id=owner_id, key=key)

    monkeypatch.setattr(crud, "job_by_idempotency_key", blind_once)
    again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "race"})
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert len(calls) == 2, "the lookup missed, the insert collided, the retry found the winner"
    assert client.get("/v1/jobs").json()["count"] == 1


def test_every_route_refuses_a_missing_or_foreign_token(client, settings):
    """Walk every operation in the OpenAPI document: without a token, 401; with another
    user's token on this user's job, never that job's data."""
    register_agent(client)
    job = client.post("/v1/jobs", json={"model": TINY, "budget_ms": 10}).json()
    open_paths = {"/healthz", "/readyz", "/metrics", "/.well-known/budgetprune-signing-key"}
    ids = {"job_id": job["id"], "agent_id": "x", "task_id": "x", "name": "report.json"}
    bob = user_headers(settings, "bob")
    paths = client.get("/openapi.json").json()["paths"]
    walked = 0
    for path, ops in paths.items():
        if path in open_paths:
            continue
        url = path.format(**ids)
        for method in ops:
            r = client.request(method.upper(), url, headers={"Authorization": ""})
            assert r.status_code == 401, (method, path, r.status_code)
            if "{job_id}" in path:
                r = client.request(method.upper(), url, headers=bob)
                assert r.status_code in (401, 404, 422), (method, path, r.status_code)
            walked += 1
    assert walked >= 15

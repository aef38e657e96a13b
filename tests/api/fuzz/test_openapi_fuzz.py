"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis):
no 5xx, and every documented response matches its schema. Bounded for CI."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.main import create_app
from budgetprune.config import Settings
from budgetprune.schemas import AgentRegister, JobCreate, RuntimeInfo
from budgetprune.store import crud, session_scope

_DATA = Path(tempfile.mkdtemp(prefix="bp-fuzz-"))
_SETTINGS = Settings(data_dir=_DATA, agent_token="fuzz-agent-token", reconcile_interval_s=3600)
APP = create_app(_SETTINGS)
with session_scope(_SETTINGS.database_url) as _s:
    _user, TOKEN = crud.create_user(_s, name="fuzzer")
    _agent, AGENT_TOKEN = crud.register_agent(
        _s,
        data=AgentRegister(
            name="fuzz-agent", runtimes=[RuntimeInfo(name="onnxruntime", version="1")]
        ),
    )
    AGENT_ID = _agent.id
    JOB_ID = crud.create_job(
        _s, spec=JobCreate(model="deit_tiny_patch16_224", budget_ms=5), owner_id=_user.id
    ).id

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_errors_and_matches_its_schema(case):
    """Each route is fuzzed as its real caller: agents with their own token and id, users on a
    job that exists, so the generated bodies and queries reach the code behind the 401s and
    404s."""
    if case.path.endswith(("/tasks/next", "/heartbeat")):
        case.query = {**(case.query or {}), "wait": 0}  # no long polls while fuzzing
    token = TOKEN
    params = case.path_parameters or {}
    if case.path == "/v1/agents/register":
        token = _SETTINGS.agent_token
    elif case.path.startswith("/v1/agents/{agent_id}"):
        token, params["agent_id"] = AGENT_TOKEN, AGENT_ID
    if "job_id" in params:
        params["job_id"] = JOB_ID
    case.path_parameters = params
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error, response_schema_conformance],
    )

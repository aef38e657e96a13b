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
from budgetprune.store import crud, session_scope

_DATA = Path(tempfile.mkdtemp(prefix="bp-fuzz-"))
_SETTINGS = Settings(data_dir=_DATA, agent_token="fuzz-agent-token", reconcile_interval_s=3600)
APP = create_app(_SETTINGS)
with session_scope(_SETTINGS.database_url) as _s:
    _, TOKEN = crud.create_user(_s, name="fuzzer")

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_errors_and_matches_its_schema(case):
    if case.path.endswith(("/tasks/next", "/heartbeat")):
        case.query = {**(case.query or {}), "wait": 0}  # no long polls while fuzzing
    case.call_and_validate(
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[not_a_server_error, response_schema_conformance],
    )

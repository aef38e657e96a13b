from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from utils.agents import user_headers  # noqa: E402


@pytest.fixture
def client(settings):
    """A client that acts as one ordinary user."""
    with TestClient(create_app(settings)) as c:
        c.headers.update(user_headers(settings, "alice"))
        yield c

"""Shared fixtures: settings on a temporary data dir, and the real databases of this machine."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from budgetprune.config import Settings

PG_ADMIN_URL = os.environ.get("BUDGETPRUNE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("BUDGETPRUNE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postgres_available() -> bool:
    return _port_open("127.0.0.1", 5432)


def redis_available() -> bool:
    return _port_open("127.0.0.1", 6379)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", agent_token="test-agent-token")


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    if not postgres_available():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    import psycopg

    name = f"bp_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url.replace("postgresql://", "postgresql+psycopg://", 1)
    from budgetprune.store.db import get_engine

    get_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)).dispose()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_settings(request, tmp_path: Path) -> Settings:
    """Settings on each real database the store supports."""
    data = tmp_path / "data"
    if request.param == "sqlite":
        return Settings(data_dir=data, agent_token="test-agent-token")
    url = request.getfixturevalue("pg_database_url")
    from budgetprune.store.db import get_engine
    from budgetprune.store.models import Base

    with get_engine(url).begin() as conn:  # each test starts from empty tables
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    return Settings(data_dir=data, agent_token="test-agent-token", DATABASE_URL=url)

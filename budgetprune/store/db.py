"""Engine and sessions. One engine per process and URL; tables are created on first use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from budgetprune.store.models import Base


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            # WAL lets the API read while a worker writes; several processes share the file.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
    else:
        # As many kept connections as the API's thread pool has threads (40), so a burst of
        # requests never opens and closes overflow connections (a PostgreSQL backend start
        # each: under load that churn, not the queries, was most of a status request's time).
        engine = create_engine(url, pool_pre_ping=True, pool_size=40, max_overflow=20)
    Base.metadata.create_all(engine)
    return engine


@lru_cache(maxsize=8)
def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = session_factory(url)()
    try:
        yield session
    except BaseException:
        rollback_and_close(session)
        raise
    commit_and_close(session)


def commit_and_close(session: Session) -> None:
    """Commit (rolling back if the commit fails) and close; also one thread-pool hop for the
    API, where a hop costs more than the round trip on a small VM."""
    try:
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def rollback_and_close(session: Session) -> None:
    try:
        session.rollback()
    finally:
        session.close()

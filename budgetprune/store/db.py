"""Engine and sessions. One engine per process and URL; tables are created on first use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import DBAPIError
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
    add_missing_columns(engine)
    return engine


def add_missing_columns(engine: Engine) -> list[str]:
    """Bring a store made by an older version up to date where that is only ADDING nullable
    columns (create_all adds missing tables, never columns); anything else is refused by the
    database at the first query, as before. Returns the columns added."""
    added = []
    existing = inspect(engine)
    for table in Base.metadata.sorted_tables:
        have = {c["name"] for c in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name in have or not column.nullable:
                continue
            kind = column.type.compile(dialect=engine.dialect)
            try:
                with engine.begin() as conn:
                    conn.execute(
                        text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}')
                    )
            except DBAPIError:
                # another process starting at the same moment may have added it first
                fresh = {c["name"] for c in inspect(engine).get_columns(table.name)}
                if column.name not in fresh:
                    raise
                continue
            added.append(f"{table.name}.{column.name}")
    return added


@lru_cache(maxsize=8)
def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@lru_cache(maxsize=8)
def read_session_factory(url: str) -> sessionmaker[Session]:
    """Sessions for reads of one statement: autocommit, so no BEGIN and no ROLLBACK travel to
    the database around the SELECT (a status read went from ~1.9 to ~0.5 ms on PostgreSQL
    here: the round trips, not the query, were its cost)."""
    engine = get_engine(url).execution_options(isolation_level="AUTOCOMMIT")
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def read_scope(url: str) -> Iterator[Session]:
    """A session for reads only; nothing it does is committed."""
    with read_session_factory(url)() as session:
        yield session


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

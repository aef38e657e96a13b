"""Dependencies routes declare: the settings, a DB session, the queue, the calling agent.

The cheap ones are `async`: FastAPI runs a sync dependency in the thread pool, and a hop per
dependency per request adds up when a hundred pages poll at once."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from budgetprune.config import Settings
from budgetprune.store import Agent, User, crud
from budgetprune.store.db import (
    commit_and_close,
    read_scope,
    rollback_and_close,
    session_factory,
)


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_session(settings: SettingsDep) -> AsyncIterator[Session]:
    """A session that commits (in the thread pool) when the route returns. Creating one does
    no I/O; the route's queries run in the route's own thread."""
    session = session_factory(settings.database_url)()
    try:
        yield session
    except BaseException:
        await run_in_threadpool(rollback_and_close, session)
        raise
    await run_in_threadpool(commit_and_close, session)


# scope="function": commit when the route returns, before the response is sent, so a client
# that acts on the response (an agent that just registered) finds the row.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_celery(request: Request) -> Celery:
    return request.app.state.celery


CeleryDep = Annotated[Celery, Depends(get_celery)]


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _unauthorized(what: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        f"{what} missing or wrong: send 'Authorization: Bearer <token>'",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _user_by_token(url: str, token: str) -> User | None:
    with read_scope(url) as session:
        user = crud.user_by_token(session, token=token)
        if user is not None:
            session.expunge(user)
        return user


_USER_CACHE: dict[str, tuple[float, User]] = {}
_USER_CACHE_S = 5.0  # a revoked token keeps working this long at most


async def get_current_user(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> User:
    """The user behind the bearer token. Looked up in a short session of its own (streams and
    long polls hold no database connection) and cached for a few seconds by the token's hash,
    so a page polling once a second costs no extra query."""
    token = _bearer(authorization)
    if token is None:
        raise _unauthorized("user token (create one with 'budgetprune token create')")
    key = crud.hash_token(token)
    hit = _USER_CACHE.get(key)
    if hit is not None and time.monotonic() - hit[0] < _USER_CACHE_S:
        return hit[1]
    user = await run_in_threadpool(_user_by_token, settings.database_url, token)
    if user is None:
        raise _unauthorized("user token (create one with 'budgetprune token create')")
    if len(_USER_CACHE) > 10_000:
        _USER_CACHE.clear()
    _USER_CACHE[key] = (time.monotonic(), user)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_enrollment_token(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Registering needs the shared enrollment token (BUDGETPRUNE_AGENT_TOKEN)."""
    token = _bearer(authorization) or ""
    if not secrets.compare_digest(token.encode(), settings.agent_token.encode()):
        raise _unauthorized("agent enrollment token")


def get_calling_agent(
    agent_id: str, settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> Agent:
    """The agent named in the path, proven by its own token: agents cannot act for others.

    Uses its own short session, not the request's: a long poll must not hold a database
    connection while it waits."""
    token = _bearer(authorization)
    if token is None:
        raise _unauthorized("agent token")
    with read_scope(settings.database_url) as session:
        agent = session.get(Agent, agent_id)
        if agent is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"agent {agent_id} is not registered")
        session.expunge(agent)
    if not secrets.compare_digest(agent.token_sha256, crud.hash_token(token)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this token belongs to another agent")
    return agent


CallingAgent = Annotated[Agent, Depends(get_calling_agent)]

"""The API server: HTTP only, no torch. `create_app` builds it from one Settings object."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import problems
from api.reconciler import reconcile_forever
from api.routes import agents, devices, health, jobs, keys, models, ui, uploads
from budgetprune import __version__
from budgetprune.config import Settings, get_settings
from budgetprune.store import get_engine
from worker.celery_app import make_celery, prepare_broker


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    get_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        task = asyncio.create_task(reconcile_forever(settings, app.state.celery))
        yield
        task.cancel()

    app = FastAPI(
        lifespan=lifespan,
        title="budgetprune",
        version=__version__,
        description="Vision Transformers pruned to a latency budget, certified on the device.",
    )
    app.state.settings = settings
    app.state.celery = make_celery(settings)
    if not settings.redis_url:
        prepare_broker(app.state.celery)
    for module in (jobs, uploads, devices, agents, models, health, keys):
        app.include_router(module.router)

    ui.mount(app)
    problems.install(app)
    return app

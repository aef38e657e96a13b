"""Re-enqueue jobs that no worker holds.

A job whose worker died (its lease lapsed) or whose queue message was lost (a broker restarted
without persistence) would otherwise wait forever. Re-enqueuing is always safe: a worker claims
a job only when no other worker holds a live lease on it, so a duplicate message is a no-op.
"""

from __future__ import annotations

import asyncio
import logging

from celery import Celery
from fastapi.concurrency import run_in_threadpool

from budgetprune.config import Settings
from budgetprune.store import crud, session_scope
from worker.celery_app import enqueue_job

log = logging.getLogger(__name__)


def reconcile_once(settings: Settings, celery: Celery) -> list[str]:
    with session_scope(settings.database_url) as session:
        orphans = crud.orphaned_jobs(session, queued_after_s=settings.requeue_queued_after_s)
        for job_id in orphans:
            crud.mark_enqueued(session, job_id=job_id)
    for job_id in orphans:
        log.warning("job %s: no worker holds it; enqueued again", job_id)
        enqueue_job(celery, job_id)
    return orphans


async def reconcile_forever(settings: Settings, celery: Celery) -> None:
    while True:
        await asyncio.sleep(settings.reconcile_interval_s)
        try:
            await run_in_threadpool(reconcile_once, settings, celery)
        except Exception:  # the broker or store is down: try again next round
            log.warning("reconciler round failed", exc_info=True)

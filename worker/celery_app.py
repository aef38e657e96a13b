"""The Celery application. Light on purpose: the API imports it to enqueue jobs by task name,
so it must not pull in torch; the tasks module (which does) is loaded only by workers."""

from __future__ import annotations

import threading

from celery import Celery

from budgetprune.config import Settings, get_settings

RUN_JOB = "budgetprune.run_job"
JOBS_QUEUE = "jobs"


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("budgetprune", broker=settings.broker_url, backend=settings.result_backend)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=JOBS_QUEUE,
        task_routes={RUN_JOB: {"queue": JOBS_QUEUE}},
        task_soft_time_limit=6 * 3600,
        task_time_limit=6 * 3600 + 300,
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if settings.redis_url:
        # Longer than the longest job, so a running job is not handed to a second worker.
        app.conf.broker_transport_options = {"visibility_timeout": 7 * 3600}
    else:
        # The embedded broker is a SQLite file that the API and every worker write: wait for
        # its lock as long as the job store does (sqlite3's default is 5 s).
        app.conf.broker_transport_options = {"connect_args": {"timeout": 30}}
    return app


def prepare_broker(app: Celery) -> None:
    """Create the jobs queue now. Kombu's SQLAlchemy transport creates its tables and the
    queue's row on first use, check-then-insert across processes: an API and a worker that
    both start cold race, and the loser's first submit failed. The API calls this before it
    answers, so the broker exists before any worker or request touches it."""
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)
        conn.default_channel.queue_declare(queue=JOBS_QUEUE, durable=True)


BROKER_LOCK = threading.Lock()


def enqueue_job(app: Celery, job_id: str) -> None:
    """One send at a time: kombu's SQLAlchemy transport shares session state across threads
    otherwise (API request threads and the reconciler)."""
    with BROKER_LOCK:
        app.send_task(RUN_JOB, args=[job_id], queue=JOBS_QUEUE)

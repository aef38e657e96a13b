"""Binds a stored job to the pipeline: claim it, report progress to the store, record the end.

Whatever happens, the job leaves `running`: succeeded, infeasible, cancelled or failed with a
message that says what went wrong.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
import traceback
import uuid

from budgetprune.artifacts import job_out_dir
from budgetprune.config import Settings
from budgetprune.errors import BudgetPruneError, InfeasibleBudgetError, JobCancelledError
from budgetprune.schemas import TERMINAL_STATES, JobCreate, TrainingProgress
from budgetprune.signing import CertificateSigner
from budgetprune.store import crud, session_scope

log = logging.getLogger(__name__)


class StoreReporter:
    """Writes progress to the job row, and turns a cancel request into JobCancelledError.

    Training reports every step: each updates the job row (and checks for a cancel), but the
    history keeps at most one training event a second, so a 10,000-step fit does not write
    10,000 rows for the dashboard to read back."""

    TRAINING_PHASES = ("fit", "finetune")
    EVENT_EVERY_S = 1.0

    def __init__(self, settings: Settings, job_id: str, lease: LeaseKeeper | None = None) -> None:
        self.url = settings.database_url
        self.job_id = job_id
        self.lease = lease
        self._last_training_event = 0.0

    def __call__(
        self,
        phase: str,
        progress: float,
        measured_ms: float | None = None,
        predicted_ms: float | None = None,
        budget_ms: float | None = None,
        training: dict[str, object] | None = None,
    ) -> None:
        if self.lease is not None and self.lease.lost.is_set():
            raise LeaseLostError(f"job {self.job_id} was taken over by another worker")
        fields: dict[str, object] = {"phase": phase, "progress": round(progress, 4)}
        for key, value in (
            ("measured_ms", measured_ms),
            ("predicted_ms", predicted_ms),
            ("budget_ms", budget_ms),
        ):
            if value is not None:
                fields[key] = value
        training_json = None
        if training is not None:
            training_json = TrainingProgress.model_validate(training).model_dump_json()
            fields["training_json"] = training_json
        elif phase not in self.TRAINING_PHASES:
            fields["training_json"] = None
        now = time.monotonic()
        event = (
            training is None
            or now - self._last_training_event >= self.EVENT_EVERY_S
            or training.get("step") == training.get("steps")
        )
        with session_scope(self.url) as session:
            crud.update_job(session, job_id=self.job_id, **fields)
            if event:
                if training is not None:
                    self._last_training_event = now
                crud.add_job_event(
                    session,
                    job_id=self.job_id,
                    phase=phase,
                    progress=fields["progress"],
                    measured_ms=measured_ms,
                    predicted_ms=predicted_ms,
                    budget_ms=budget_ms,
                    training_json=training_json,
                )
            job = crud.get_job(session, job_id=self.job_id)
            if job is not None and job.cancel_requested:
                raise JobCancelledError("cancelled by the user")


def claim(settings: Settings, job_id: str, worker_id: str) -> JobCreate | None:
    """Take the job; None when there is nothing to do here: gone, finished, cancelled, or
    running under another worker's live lease (a duplicate delivery)."""
    with session_scope(settings.database_url) as session:
        job = crud.get_job(session, job_id=job_id)
        if job is None or job.state in TERMINAL_STATES:
            return None
        if not crud.claim_job(
            session, job_id=job_id, worker_id=worker_id, lease_seconds=settings.job_lease_s
        ):
            return None
        return JobCreate.model_validate_json(job.spec_json)


class LeaseKeeper:
    """Renews the job's lease from a thread while the pipeline works (a measurement on a slow
    device can take minutes without a progress report)."""

    def __init__(self, settings: Settings, job_id: str, worker_id: str) -> None:
        self.settings, self.job_id, self.worker_id = settings, job_id, worker_id
        self.stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self.stop.wait(self.settings.job_lease_s / 3):
            try:
                with session_scope(self.settings.database_url) as session:
                    if not crud.renew_job_lease(
                        session,
                        job_id=self.job_id,
                        worker_id=self.worker_id,
                        lease_seconds=self.settings.job_lease_s,
                    ):
                        self.lost.set()
                        return
            except Exception:  # a store hiccup: try again at the next beat
                log.warning("job %s: could not renew the lease", self.job_id, exc_info=True)


def finish(settings: Settings, job_id: str, **fields: object) -> None:
    with session_scope(settings.database_url) as session:
        crud.update_job(session, job_id=job_id, **fields)
        if fields.get("state") in ("failed", "cancelled", "infeasible"):
            crud.cancel_job_tasks(session, job_id=job_id)


# Disk full, quota, or a file-size limit: the worker's volume, not the job, is at fault.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def execute_job(settings: Settings, job_id: str, worker_id: str | None = None) -> str:
    """Run one stored job to its end state, which it returns."""
    from latency_tables.build import TableGrid
    from worker.measurers import AgentMeasurer, AnalyticalMeasurer
    from worker.pipeline import run_pipeline

    worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    spec = claim(settings, job_id, worker_id)
    if spec is None:
        log.info("job %s: nothing to do (finished, cancelled or held by another worker)", job_id)
        return "skipped"
    try:
        with LeaseKeeper(settings, job_id, worker_id) as lease:
            measurer = (
                AnalyticalMeasurer(spec.fpga_profile)
                if spec.fpga_profile
                else AgentMeasurer(settings, job_id, spec.device, spec.runtime)
            )
            run_pipeline(
                job_id=job_id,
                spec=spec,
                out_dir=job_out_dir(settings, job_id),
                measurer=measurer,
                signer=CertificateSigner.load_or_create(settings.signing_key_path),
                report=StoreReporter(settings, job_id, lease),
                tables_dir=settings.tables_dir,
                table_grid=TableGrid.model_validate(settings.table_grid)
                if settings.table_grid
                else None,
            )
    except LeaseLostError:
        log.warning("job %s: lease lost to another worker; leaving it to that worker", job_id)
        return "lost"
    except JobCancelledError:
        finish(settings, job_id, state="cancelled", phase="cancelled")
        return "cancelled"
    except InfeasibleBudgetError as exc:
        finish(
            settings,
            job_id,
            state="infeasible",
            phase="done",
            error=str(exc),
            measured_ms=exc.best_latency_ms,
            progress=1.0,
        )
        return "infeasible"
    except BudgetPruneError as exc:
        finish(settings, job_id, state="failed", phase="failed", error=str(exc))
        return "failed"
    except Exception as exc:  # never leave a job in `running`
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            log.error("job %s: no room to write %s: %s", job_id, exc.filename, exc.strerror)
            error = (
                f"the worker could not write the job's files ({exc.strerror}): free space under "
                f"{settings.data_dir} and submit the job again; nothing was delivered"
            )
        else:
            log.error("job %s crashed:\n%s", job_id, traceback.format_exc())
            error = f"internal error ({type(exc).__name__}): {exc}"
        finish(settings, job_id, state="failed", phase="failed", error=error)
        return "failed"
    finish(settings, job_id, state="succeeded", phase="done", progress=1.0)
    return "succeeded"


class LeaseLostError(Exception):
    """Another worker holds the job now; this one must stop without touching its state."""

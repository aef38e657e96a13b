"""Celery tasks: thin. They take ids and call plain functions that hold the logic."""

from __future__ import annotations

from budgetprune.config import get_settings
from worker.celery_app import RUN_JOB, make_celery

app = make_celery()


@app.task(name=RUN_JOB)
def run_job(job_id: str) -> str:
    import torch

    from worker.runner import execute_job

    torch.set_num_threads(1)  # the agent measures on these cores; keep the worker polite
    return execute_job(get_settings(), job_id)

"""A stored job always reaches an end state with a message; a finished job is never re-run."""

from __future__ import annotations

import json

from budgetprune.artifacts import job_out_dir
from budgetprune.config import Settings
from budgetprune.schemas import JobCreate
from budgetprune.store import MeasurementTask, crud, session_scope
from worker.runner import execute_job


def _job(settings: Settings, **fields) -> str:
    spec = JobCreate(model="deit_tiny_patch16_224", img_size=32, budget_ms=5, **fields)
    with session_scope(settings.database_url) as s:
        return crud.create_job(s, spec=spec).id


def _state(settings: Settings, job_id: str):
    with session_scope(settings.database_url) as s:
        return crud.get_job(s, job_id=job_id)


def test_no_agent_fails_with_a_message(tmp_path):
    settings = Settings(data_dir=tmp_path, measurement_timeout_s=1.0, poll_interval_s=0.05)
    job_id = _job(settings)
    assert execute_job(settings, job_id) == "failed"
    job = _state(settings, job_id)
    assert job.state == "failed" and "no agent for device 'cpu'" in job.error
    with session_scope(settings.database_url) as s:
        assert crud.queued_task_count(s, agent=crud.Agent(id="x", device_class="cpu")) == 0


def test_finished_or_missing_jobs_are_skipped(tmp_path):
    settings = Settings(data_dir=tmp_path)
    job_id = _job(settings)
    with session_scope(settings.database_url) as s:
        crud.update_job(s, job_id=job_id, state="succeeded")
    assert execute_job(settings, job_id) == "skipped"
    assert execute_job(settings, "missing") == "skipped"


def test_cancel_while_waiting_for_the_device(tmp_path):
    settings = Settings(data_dir=tmp_path, measurement_timeout_s=30.0, poll_interval_s=0.05)
    job_id = _job(settings)
    with session_scope(settings.database_url) as s:
        crud.update_job(s, job_id=job_id, cancel_requested=True)
    assert execute_job(settings, job_id) == "cancelled"
    assert _state(settings, job_id).state == "cancelled"


def test_a_duplicate_delivery_does_not_run_a_held_job(tmp_path):
    settings = Settings(data_dir=tmp_path)
    job_id = _job(settings)
    with session_scope(settings.database_url) as s:
        assert crud.claim_job(s, job_id=job_id, worker_id="other", lease_seconds=600)
    assert execute_job(settings, job_id, worker_id="me") == "skipped"
    assert _state(settings, job_id).worker_id == "other"


def test_a_job_on_an_fpga_profile_needs_no_agent(tmp_path):
    settings = Settings(data_dir=tmp_path, measurement_timeout_s=1.0, poll_interval_s=0.05)
    spec = JobCreate(
        model="deit_tiny_patch16_224", img_size=96, budget_ms=1.9, device="fpga:zcu102-int8"
    )
    with session_scope(settings.database_url) as s:
        job_id = crud.create_job(s, spec=spec).id
    assert execute_job(settings, job_id) == "succeeded", _state(settings, job_id).error
    cert = json.loads((job_out_dir(settings, job_id) / "certificate.json").read_text())
    assert cert["device"]["measured"] is False and cert["certified_ms"] <= 1.9
    with session_scope(settings.database_url) as s:
        assert s.query(MeasurementTask).count() == 0, "no agent was asked"


def test_training_steps_reach_the_job_status_and_a_thinned_history(settings):
    """Every step updates the job (status and cancel checks); the history keeps one training
    event a second plus the last step; a later phase clears the live training line."""
    from budgetprune.schemas import JobCreate
    from budgetprune.store import crud, session_scope
    from worker.runner import StoreReporter

    with session_scope(settings.database_url) as s:
        job_id = crud.create_job(s, spec=JobCreate(model="deit_tiny_patch16_224", budget_ms=5)).id
    report = StoreReporter(settings, job_id)
    for step in range(1, 51):
        report(
            "fit",
            0.3,
            predicted_ms=4.0,
            training={"loop": "gates", "step": step, "steps": 50, "loss": 1.0 / step},
        )
        with session_scope(settings.database_url) as s:
            training = json.loads(crud.get_job(s, job_id=job_id).training_json)
        assert training["step"] == step and training["loop"] == "gates"
    with session_scope(settings.database_url) as s:
        events = crud.job_events(s, job_id=job_id)
    steps = [json.loads(e.training_json)["step"] for e in events]
    assert steps[0] == 1 and steps[-1] == 50 and len(steps) < 10, steps
    report("certify", 0.7, measured_ms=4.1)
    with session_scope(settings.database_url) as s:
        assert crud.get_job(s, job_id=job_id).training_json is None

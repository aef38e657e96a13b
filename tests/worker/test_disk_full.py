"""A worker whose volume fills up mid-job: a real, full filesystem (a small tmpfs), not a mock.

The job must end `failed` with a message that says what to do, deliver nothing, and leave no
half-written output behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from budgetprune.artifacts import job_out_dir
from budgetprune.config import Settings
from budgetprune.schemas import JobCreate
from budgetprune.store import crud, session_scope
from worker.runner import execute_job

pytestmark = pytest.mark.slow


@pytest.fixture
def small_volume(tmp_path: Path):
    """30 MB: room for the dense model's export (~23 MB at 96 px) and not for a second file."""
    mount = tmp_path / "volume"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_job_clearly_and_delivers_nothing(tmp_path, small_volume):
    # The job store lives elsewhere (as PostgreSQL would): the job's own files fill the volume.
    settings = Settings(
        data_dir=small_volume, DATABASE_URL=f"sqlite:///{tmp_path / 'store.sqlite'}"
    )
    spec = JobCreate(
        model="deit_tiny_patch16_224", img_size=96, budget_ms=1.9, device="fpga:zcu102-int8"
    )
    with session_scope(settings.database_url) as s:
        job_id = crud.create_job(s, spec=spec).id
    assert execute_job(settings, job_id) == "failed"
    with session_scope(settings.database_url) as s:
        job = crud.get_job(s, job_id=job_id)
    assert job.state == "failed"
    assert "No space left on device" in job.error and "free space under" in job.error
    out = job_out_dir(settings, job_id)
    assert not out.exists(), "nothing is delivered"
    assert not list(out.parent.glob("staging-*")), "no half-written output is left"

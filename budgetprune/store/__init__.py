"""The job store: SQLAlchemy on SQLite by default, PostgreSQL through DATABASE_URL."""

from budgetprune.store import crud
from budgetprune.store.db import get_engine, session_scope
from budgetprune.store.models import Agent, Job, JobEvent, MeasurementTask, User, new_id, utcnow

__all__ = [
    "Agent",
    "Job",
    "JobEvent",
    "MeasurementTask",
    "User",
    "crud",
    "get_engine",
    "new_id",
    "session_scope",
    "utcnow",
]

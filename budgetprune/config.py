"""One Settings object per process, read from the environment (and `.env`).

`DATABASE_URL` and `REDIS_URL` keep their conventional names; everything else is
`BUDGETPRUNE_<FIELD>`. With nothing set, the embedded default needs no server: SQLite for the job
store and Celery's SQLAlchemy transport on SQLite for the queue.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PLACEHOLDER_TOKEN = "dev-agent-token"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BUDGETPRUNE_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Path("var")
    database_url_: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "BUDGETPRUNE_DATABASE_URL")
    )
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", "BUDGETPRUNE_REDIS_URL")
    )
    agent_token: str = _PLACEHOLDER_TOKEN
    signing_key_path_: Path | None = Field(
        None, validation_alias=AliasChoices("BUDGETPRUNE_SIGNING_KEY_PATH")
    )
    lease_seconds: int = Field(300, ge=5, description="how long an agent holds a measurement task")
    measurement_timeout_s: float = Field(
        900.0, gt=0, description="how long a job waits for any agent to finish a measurement"
    )
    agent_offline_after_s: float = Field(60.0, gt=0)
    max_model_bytes: int = Field(2 * 1024**3, gt=0)
    max_upload_bytes: int = Field(4 * 1024**3, gt=0, description="checkpoints and data sets")
    poll_interval_s: float = Field(
        0.1,
        gt=0,
        description="how often a waiting worker or agent long poll looks at the store (reads)",
    )
    shutdown_grace_s: int = Field(
        5,
        ge=1,
        description="on SIGTERM the API finishes requests in flight for this long, then cuts "
        "them: agents' long polls (up to 20 s) would otherwise hold a restart; agents re-poll",
    )
    job_lease_s: float = Field(
        60.0, gt=0, description="a worker renews its hold on a running job this often x3"
    )
    reconcile_interval_s: float = Field(
        30.0, gt=0, description="how often the API re-enqueues jobs that no worker holds"
    )
    requeue_queued_after_s: float = Field(
        900.0, gt=0, description="re-enqueue a job still queued after this long"
    )
    submit_concurrency: int = Field(
        2,
        ge=1,
        le=64,
        description="submissions an API process works on at once; more wait their turn, so "
        "a burst of them cannot starve status reads of the interpreter",
    )
    table_grid: dict[str, object] | None = Field(
        None,
        description="grid of the lookup tables `latency_table: auto` builds, as JSON "
        "(latency_tables.build.TableGrid's fields); unset: the default grid",
    )
    data_roots: list[Path] = Field(
        default_factory=list,
        description="folders whose data sets and checkpoints jobs may name (besides uploads/)",
    )

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> Settings:
        if self.environment == "production" and self.agent_token == _PLACEHOLDER_TOKEN:
            raise ValueError("set BUDGETPRUNE_AGENT_TOKEN to a secret in production")
        return self

    @property
    def database_url(self) -> str:
        return self.database_url_ or f"sqlite:///{(self.data_dir / 'budgetprune.sqlite').resolve()}"

    @property
    def broker_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        return f"sqla+sqlite:///{(self.data_dir / 'celery-broker.sqlite').resolve()}"

    @property
    def result_backend(self) -> str:
        if self.redis_url:
            return self.redis_url
        return f"db+sqlite:///{(self.data_dir / 'celery-results.sqlite').resolve()}"

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key_path_ or self.data_dir / "keys" / "signing.ed25519"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    def allowed_roots(self, user_id: str) -> list[Path]:
        return [p.resolve() for p in (self.uploads_dir / user_id, *self.data_roots)]

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def tables_dir(self) -> Path:
        """Latency tables that jobs with `latency_table: auto` built, one per device."""
        return self.data_dir / "tables"


@lru_cache
def get_settings() -> Settings:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


def new_token() -> str:
    """An enrolment token. The prefix keeps it from starting with '-' (token_urlsafe can), which
    a command line would read as an option: `--token -x…` failed one agent start in 64."""
    return "bpe_" + secrets.token_urlsafe(32)

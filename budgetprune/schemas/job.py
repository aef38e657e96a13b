"""Job spec and job status: the REST boundary of the service."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from budgetprune.catalog import MODELS

JobState = Literal["queued", "running", "succeeded", "failed", "infeasible", "cancelled"]
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "infeasible", "cancelled"})
# Strategies that train end to end; mirrors `Strategy.needs_data` (a test checks they agree), kept
# here so validating a job does not import the engine.
STRATEGIES_NEEDING_DATA: frozenset[str] = frozenset({"hiap", "hiap_token"})


class JobCreate(BaseModel):
    """What a user asks for. Give `budget_ms`, or `budget_fraction` of the dense model's
    latency measured on the target device during the job."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "deit_tiny_patch16_224",
                    "device": "cpu",
                    "runtime": "onnxruntime",
                    "budget_fraction": 0.6,
                }
            ]
        },
    )

    model: str = Field(description="timm model name, see GET /v1/models")
    img_size: int | None = Field(None, ge=16, le=1024)
    num_classes: int | None = Field(None, ge=0, le=100_000)
    device: str = Field(
        "cpu",
        max_length=100,
        description="a device class (cpu, mobile, fpga), an agent id, or fpga:<profile> for an "
        "analytical FPGA profile (its latencies are estimates: measured false)",
    )
    runtime: Literal["onnxruntime", "tvm"] = "onnxruntime"
    threads: int = Field(1, ge=1, le=256)
    budget_ms: float | None = Field(None, gt=0, le=1e6)
    budget_fraction: float | None = Field(None, gt=0, le=1.0)
    percentile: Literal[50, 90, 99] = 90
    certification: Literal["standard", "mlperf"] = Field(
        "standard",
        description="standard: 30 warm-up, batches of 300 runs until two batch p50s agree "
        "within 3% (at most 4), twice; mlperf: MLPerf Mobile's single-stream rule (at least "
        "1024 queries and 60 s, 90th percentile), twice; the dense baseline uses it too",
    )
    margin: float = Field(
        0.05,
        ge=0.0,
        lt=0.5,
        description="certify only at or under budget*(1-margin), so a re-measure that reads up "
        "to margin/(1-margin) slower still passes",
    )
    slack: float = Field(
        0.10,
        ge=0.0,
        lt=1.0,
        description="certified more than this fraction under budget: give width back (most "
        "important units first) and certify again",
    )
    strategy: str = Field(
        "netadapt",
        max_length=50,
        description="netadapt, hiap, hiap_token, token, toast, ratio_search, or auto (hiap with "
        "a dataset and >= 200 finetune_steps, else toast)",
    )
    min_heads: int = Field(1, ge=1, description="heads every block keeps at least")
    min_mlp_hidden: int = Field(16, ge=1, description="MLP neurons every block keeps at least")
    width_multiple: int = Field(8, ge=1, le=64, description="round widths to this multiple")
    max_rounds: int = Field(40, ge=1, le=1000)
    dataset: str | None = Field(
        None,
        max_length=1000,
        description="ImageFolder directory or zip (train/ and val/ or test/) on a path the "
        "server allows; gives accuracy before/after and enables fine-tuning",
    )
    checkpoint: str | None = Field(
        None,
        max_length=1000,
        description="weights of the dense model: .safetensors, or .pt/.pth (weights only)",
    )
    latency_table: str | None = Field(
        None,
        max_length=1000,
        description="a lookup table built on the target device (`budgetprune lut build`) to "
        "predict with instead of the MACs line, on a path the server allows; or 'auto': the "
        "device's own table, built through its agent by the first such job and reused",
    )
    finetune_steps: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="training steps of the strategy (hiap, token, ratio_search), and again of "
        "the distillation after each certification attempt",
    )
    finetune_lr: float = Field(2e-4, gt=0, le=1.0)
    batch_size: int = Field(64, ge=1, le=4096)
    eval_per_class: int = Field(50, ge=1, le=100_000, description="val images per class")
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="seeds the job's randomness (data order, augmentation, gate noise, and "
        "the initial weights when no checkpoint is given): the same job with the same seed "
        "trains the same way; jobs that differ only in it show how much a result owes to "
        "chance",
    )

    @property
    def fpga_profile(self) -> str | None:
        """The analytical profile a `fpga:<profile>` device names; None for a real device."""
        prefix, _, name = self.device.partition(":")
        return name if prefix == "fpga" and name else None

    @field_validator("model")
    @classmethod
    def _known_model(cls, model: str) -> str:
        if model not in MODELS:
            raise ValueError(
                f"unknown model {model!r}; supported models: {', '.join(sorted(MODELS))}"
            )
        return model

    @model_validator(mode="after")
    def _one_budget(self) -> JobCreate:
        if (self.budget_ms is None) == (self.budget_fraction is None):
            raise ValueError("give exactly one of budget_ms (> 0) or budget_fraction (0 < f <= 1)")
        info = MODELS[self.model]
        if self.img_size is not None and self.img_size % info.patch_size:
            raise ValueError(f"img_size must be a multiple of the patch size {info.patch_size}")
        if self.certification == "mlperf" and self.percentile != 90:
            raise ValueError("certification mlperf is defined on the 90th percentile")
        if self.finetune_steps and not self.dataset:
            raise ValueError("finetune_steps needs a dataset")
        if self.strategy in STRATEGIES_NEEDING_DATA and not self.finetune_steps:
            raise ValueError(
                f"strategy {self.strategy} trains the network end to end: give a dataset and "
                "finetune_steps > 0, or pick toast (needs no training) or auto"
            )
        return self


class TrainingProgress(BaseModel):
    """Where a running job's training is: the loop, its step, loss and what it steers to."""

    model_config = ConfigDict(extra="forbid")

    loop: str = Field(description="gates (hiap), keep ratios (token), distill, finetune")
    step: int = Field(ge=0)
    steps: int = Field(ge=0)
    loss: float
    expected_ms: float | None = Field(None, description="the predictor's expected latency")
    heads_open: int | None = Field(None, description="attention heads whose gates are open")
    neurons_open: int | None = Field(None, description="MLP neurons whose gates are open")
    keep: list[float] | None = Field(None, description="token keep fractions per stage")


_TRAINING_EXAMPLE = {
    "loop": "gates",
    "step": 120,
    "steps": 200,
    "loss": 0.834,
    "expected_ms": 4.12,
    "heads_open": 21,
    "neurons_open": 5312,
}

_JOB_EXAMPLE = {
    "id": "6f1c2a9e0b4d4c1e9a7f3b2d5e8c0a11",
    "state": "running",
    "phase": "search",
    "progress": 0.42,
    "spec": {
        "model": "deit_tiny_patch16_224",
        "device": "cpu",
        "runtime": "onnxruntime",
        "budget_fraction": 0.6,
    },
    "budget_ms": 18.52,
    "measured_ms": 19.87,
    "measured": True,
    "predicted_ms": 18.1,
    "training": _TRAINING_EXAMPLE,
    "error": None,
    "artifacts": [],
    "created_at": "2026-11-23T19:40:02Z",
    "updated_at": "2026-11-23T19:40:41Z",
}


class JobPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_JOB_EXAMPLE]})

    id: str
    state: JobState
    phase: str
    progress: float = Field(ge=0.0, le=1.0)
    spec: JobCreate
    budget_ms: float | None = None
    measured_ms: float | None = Field(
        None, description="latest latency measured on the device (estimated if measured is false)"
    )
    measured: bool = Field(
        True, description="false when the device is an analytical profile: latencies are estimates"
    )
    predicted_ms: float | None = Field(None, description="latest predicted latency")
    training: TrainingProgress | None = Field(
        None, description="the latest training step, while the job trains"
    )
    error: str | None = None
    artifacts: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime


class JobsPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [_JOB_EXAMPLE], "count": 1}]}
    )

    data: list[JobPublic]
    count: int


_EVENT_EXAMPLE = {
    "id": 17,
    "at": "2026-11-23T19:40:41Z",
    "phase": "search",
    "progress": 0.42,
    "measured_ms": 19.87,
    "predicted_ms": 18.1,
    "budget_ms": 18.52,
    "training": None,
}


class JobEventPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EVENT_EXAMPLE]})

    id: int
    at: datetime
    phase: str
    progress: float
    measured_ms: float | None = None
    predicted_ms: float | None = None
    budget_ms: float | None = None
    training: TrainingProgress | None = None


class JobEventsPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [_EVENT_EXAMPLE], "count": 1}]}
    )

    data: list[JobEventPublic]
    count: int

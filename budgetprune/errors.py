"""Errors that cross package boundaries.

BudgetPruneError
├── UnsupportedModelError   a model name or option the engine cannot prune
├── InvalidArchError        an arch spec that does not fit its model
├── CheckpointError         a weights file that does not fit the model it is loaded into
├── InfeasibleBudgetError   the smallest allowed sub-network is still over budget
├── MeasurementError        a device could not measure (no agent, timeout, runtime failure)
├── JobCancelledError       the user cancelled the job while it ran
└── CertificateError        a certificate whose signature or model hash does not check
"""

from __future__ import annotations


class BudgetPruneError(Exception):
    """Base of every error the project raises on purpose; its message is meant for the user."""


class UnsupportedModelError(BudgetPruneError):
    pass


class InvalidArchError(BudgetPruneError):
    pass


class CheckpointError(BudgetPruneError):
    pass


class InfeasibleBudgetError(BudgetPruneError):
    def __init__(self, message: str, best_latency_ms: float | None = None) -> None:
        super().__init__(message)
        self.best_latency_ms = best_latency_ms


class MeasurementError(BudgetPruneError):
    pass


class JobCancelledError(BudgetPruneError):
    pass


class CertificateError(BudgetPruneError):
    pass

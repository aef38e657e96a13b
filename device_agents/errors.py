"""Errors the device agent raises on purpose.

    BudgetPruneError                     (budgetprune.errors)
    ├── MeasurementError                 (budgetprune.errors)
    │   ├── UnknownRuntimeError          a runtime name not registered or not importable here
    │   └── MeasurementStoppedError      the stop event was set while the model was being timed
    │       └── TaskCancelledError       the server dropped the task (job cancelled, lease lost)
    └── AgentError                       talking to the API server failed
        ├── AuthenticationError          401: the token is wrong; retrying cannot help
        ├── UnknownAgentError            404 for our agent id: register again (server DB reset)
        ├── ServerUnavailableError       network errors or 5xx outlasted the retries
        ├── ProtocolError                an answer this client does not understand
        ├── ModelDownloadError           model bytes refused: hash mismatch or over the size limit
        └── AgentStoppedError            the stop event was set while the client waited to retry

The daemon treats AuthenticationError as fatal, UnknownAgentError as "register again" and every
other AgentError as transient; measurement problems become a posted ok=False result instead.
A stopped or cancelled measurement is posted as nothing at all: nobody wants its numbers.
"""

from __future__ import annotations

from budgetprune.errors import BudgetPruneError, MeasurementError

__all__ = [
    "AgentError",
    "AgentStoppedError",
    "AuthenticationError",
    "MeasurementStoppedError",
    "ModelDownloadError",
    "ProtocolError",
    "ServerUnavailableError",
    "TaskCancelledError",
    "UnknownAgentError",
    "UnknownRuntimeError",
]


class UnknownRuntimeError(MeasurementError, LookupError):
    pass


class MeasurementStoppedError(MeasurementError):
    pass


class TaskCancelledError(MeasurementStoppedError):
    """Raised between runs (or download chunks) once the heartbeat hears the task is dropped;
    a MeasurementStoppedError, so code that stops on one stops on the other."""


class AgentError(BudgetPruneError):
    pass


class AuthenticationError(AgentError):
    pass


class UnknownAgentError(AgentError):
    pass


class ServerUnavailableError(AgentError):
    pass


class ProtocolError(AgentError):
    pass


class ModelDownloadError(AgentError):
    pass


class AgentStoppedError(AgentError):
    pass

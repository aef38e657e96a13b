"""Runtimes selected by name, filled by a decorator in the manner of timm's `@register_model`.

A new runtime is a new file with one decorated class; jobs and leases name it by string.
"""

from __future__ import annotations

from collections.abc import Callable

from budgetprune.schemas.agent import RuntimeInfo
from device_agents.errors import UnknownRuntimeError
from device_agents.runtimes.base import Runtime

__all__ = ["available_runtimes", "get_runtime", "register_runtime", "registered_names"]

_RUNTIMES: dict[str, type[Runtime]] = {}


def register_runtime(name: str) -> Callable[[type[Runtime]], type[Runtime]]:
    """Class decorator; refuses a second class under the same name so plug-ins cannot shadow."""

    def decorator(cls: type[Runtime]) -> type[Runtime]:
        if name in _RUNTIMES and _RUNTIMES[name] is not cls:
            raise ValueError(f"runtime {name!r} is already registered by {_RUNTIMES[name]!r}")
        cls.name = name
        _RUNTIMES[name] = cls
        return cls

    return decorator


def registered_names() -> list[str]:
    return sorted(_RUNTIMES)


def _available_names() -> list[str]:
    return [name for name in sorted(_RUNTIMES) if _RUNTIMES[name].is_available()]


def get_runtime(name: str) -> Runtime:
    """Instantiate the runtime, or say which ones this machine could use instead."""
    cls = _RUNTIMES.get(name)
    if cls is None or not cls.is_available():
        why = "is not registered" if cls is None else f"needs the module {cls.module!r}"
        raise UnknownRuntimeError(
            f"runtime {name!r} {why}; available here: {', '.join(_available_names()) or 'none'}"
        )
    return cls()


def available_runtimes() -> list[RuntimeInfo]:
    """What the agent advertises at registration: only runtimes importable on this machine."""
    infos: list[RuntimeInfo] = []
    for name in _available_names():
        try:
            version = _RUNTIMES[name]().version()
        except Exception:  # a broken install is simply not offered
            continue
        infos.append(RuntimeInfo(name=name, version=version))
    return infos

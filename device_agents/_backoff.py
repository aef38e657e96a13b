"""Capped exponential backoff with jitter, shared by the HTTP client and the daemon loop.

Jitter keeps a fleet of agents that lost the server at the same moment (a restart) from all
coming back in the same second.
"""

from __future__ import annotations

import random

__all__ = ["backoff_delay"]


def backoff_delay(attempt: int, base_s: float, cap_s: float) -> float:
    """Seconds to wait before retry number `attempt` (1-based): in [d/2, d], d = base * 2^(n-1)."""
    ceiling = min(cap_s, base_s * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + random.uniform(0.0, ceiling / 2)

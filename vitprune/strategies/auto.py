"""`auto`: the strategy a job gets when it does not choose.

Rule: end-to-end gate training (hiap) pays off only with data and enough steps for the gates to
settle (`HIAP_MIN_STEPS`); with fewer steps, or without data, ToaSt is the choice: it needs no
training, uses the data (when there is any) to calibrate its channel selection, and the
certification phase still fine-tunes with whatever steps the job gave.
"""

from __future__ import annotations

__all__ = ["AUTO", "HIAP_MIN_STEPS", "resolve_strategy"]

AUTO = "auto"
HIAP_MIN_STEPS = 200


def resolve_strategy(name: str, *, has_data: bool, steps: int) -> str:
    """The registered strategy `name` stands for (itself, unless it is `auto`)."""
    if name != AUTO:
        return name
    return "hiap" if has_data and steps >= HIAP_MIN_STEPS else "toast"

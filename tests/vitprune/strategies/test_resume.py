"""A worker killed mid-fit resumes the training loop at its last checkpoint, not at step 0:
the loop is interrupted (as SIGKILL would, from inside `progress`) and run again on the same
checkpoint folder."""

from __future__ import annotations

import pytest

from vitprune.strategies import get_strategy


class Killed(BaseException):
    """Not an Exception: nothing in the loop may catch it, as nothing catches SIGKILL."""


def _kill_at(step: int, steps: int, seen: list[float]):
    def progress(fraction, **_):
        seen.append(fraction)
        if round(fraction * steps) == step:
            raise Killed

    return progress


@pytest.mark.parametrize(("strategy", "marker"), [("hiap", "gate training resumed at step")])
def test_a_killed_fit_resumes_from_its_checkpoint(job, tmp_path, strategy, marker):
    steps = 20
    ctx, _ = job(steps=steps, progress=_kill_at(13, steps, seen := []))
    ctx.checkpoints = tmp_path
    with pytest.raises(Killed):
        get_strategy(strategy).fit(ctx, 8.0)
    assert len(seen) == 13 and list(tmp_path.glob("fit-*.pt")), "checkpointed every 2 steps"
    again: list[float] = []
    ctx.progress = lambda f, **_: again.append(f)
    fitted = get_strategy(strategy).fit(ctx, 8.0)
    assert any(f"{marker} 12 of {steps}" in n for n in fitted.notes), fitted.notes
    assert len(again) == steps - 12, "only the steps after the last checkpoint ran again"
    assert [c["step"] for c in fitted.curve] == list(range(steps)), "the curve is whole"


def test_token_keep_learning_resumes_too(job, tmp_path, monkeypatch):
    from vitprune.strategies import token

    # no split probe: the schedule tokens alone allow, so 60% of the steps learn the keep
    # ratios (12 steps, checkpoints every step), then the rest distil
    monkeypatch.setattr(token, "MILDEST", token.MIN_RATIO)
    steps = 20
    ctx, _ = job(steps=steps, progress=_kill_at(7, steps, seen := []))
    ctx.checkpoints = tmp_path
    with pytest.raises(Killed):
        get_strategy("token").fit(ctx, 8.5)
    again: list[float] = []
    ctx.progress = lambda f, **_: again.append(f)
    fitted = get_strategy("token").fit(ctx, 8.5)
    learned = [c for c in fitted.curve if c.get("phase") == "learn keep ratios"]
    assert [c["step"] for c in learned] == list(range(12)), "the learning curve is whole"
    assert len(again) < steps, "the learning steps before the kill were not run again"

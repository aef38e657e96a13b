"""Models timed between two timings of a reference read their ratio to it on a drifting host."""

from __future__ import annotations

from pathlib import Path

import pytest

from latency_tables.side_by_side import between_references


def test_the_ratio_holds_while_the_host_slows_down():
    """A host 2% slower at every timing: each model's ratio is its true one (a timing of the
    reference before it alone would read 2% high), and the reference is timed around each."""
    true = {Path("ref"): 10.0, Path("a"): 5.0, Path("b"): 2.5}
    calls: list[Path] = []

    def time_ms(path: Path) -> float:
        calls.append(path)
        return true[path] * 1.02 ** len(calls)

    reference_ms, ratios = between_references(time_ms, [Path("a"), Path("b")], Path("ref"), 3)
    assert calls[:5] == [Path("ref"), Path("a"), Path("ref"), Path("b"), Path("ref")]
    assert len(reference_ms) == 1 + 3 * 2 == calls.count(Path("ref"))
    assert reference_ms == sorted(reference_ms), "the reference's own times, in order"
    for got, want in zip(ratios, (0.5, 0.25), strict=True):
        assert got == pytest.approx([want] * 3, rel=1e-3)

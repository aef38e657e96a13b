"""A latency model linear in MACs, calibrated on whole models measured on the device.

The first, thin predictor: two measured points (dense and the smallest allowed sub-network) pin
the line, and every candidate measured during the search refines it. Lookup tables of measured
blocks (issue 4) replace it; the interface stays `predict(spec) -> ms`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from budgetprune.schemas import ArchSpec
from vitprune.cost import macs


@dataclass
class LinearMacsPredictor:
    """ms = intercept + slope * GMACs, least squares over the measured points."""

    points: list[tuple[float, float]] = field(default_factory=list)  # (GMACs, ms)
    intercept: float = 0.0
    slope: float = 0.0

    def add(self, spec: ArchSpec, measured_ms: float) -> None:
        self.points.append((macs(spec) / 1e9, measured_ms))
        self._fit()

    def restore(self, points: list[tuple[float, float]] | list[list[float]]) -> None:
        """Reload points saved by a previous attempt of the same job."""
        self.points = [(float(g), float(ms)) for g, ms in points]
        if self.points:
            self._fit()

    def _fit(self) -> None:
        x = np.array([p[0] for p in self.points])
        y = np.array([p[1] for p in self.points])
        if len(self.points) == 1 or np.ptp(x) == 0:
            # One point: latency proportional to MACs, the least assuming guess.
            self.intercept, self.slope = 0.0, float(y.mean() / max(x.mean(), 1e-12))
            return
        slope, intercept = np.polyfit(x, y, 1)
        if slope <= 0:  # noise can tilt the line; latency never falls with more work
            slope, intercept = float(y.mean() / max(x.mean(), 1e-12)), 0.0
        self.slope, self.intercept = float(slope), float(intercept)

    def predict(self, spec: ArchSpec) -> float:
        if not self.points:
            raise ValueError("the predictor has no measured point yet")
        return self.intercept + self.slope * macs(spec) / 1e9

    def describe(self) -> dict[str, object]:
        return {
            "kind": "linear-in-MACs",
            "intercept_ms": self.intercept,
            "ms_per_gmac": self.slope,
            "points": [{"gmacs": g, "measured_ms": m} for g, m in self.points],
        }

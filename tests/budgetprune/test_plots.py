"""The report's SVG charts: well-formed, every point drawn, names escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from budgetprune.plots import latency_svg, scatter_chart

NS = "{http://www.w3.org/2000/svg}"


def test_scatter_chart_draws_every_point_and_a_legend_entry_per_series():
    svg = scatter_chart(
        [("a<b", "#f00", [(2.0, 80.0), (1.0, 70.0)]), ("dense", "#00f", [(3.0, 90.0)])],
        title="t",
        xlabel="ms",
        ylabel="top-1",
    )
    root = ET.fromstring(svg)
    circles = root.findall(f"{NS}circle")
    assert len(circles) == 3
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert any(t and "a<b" in t for t in texts), "names are escaped, then parsed back"
    (line,) = root.findall(f"{NS}polyline")  # one series of two points is joined in x order
    xs = [float(p.split(",")[0]) for p in line.get("points").split()]
    assert xs == sorted(xs)


def test_scatter_chart_places_higher_values_higher():
    root = ET.fromstring(
        scatter_chart([("s", "#000", [(1.0, 10.0), (2.0, 20.0)])], title="", xlabel="", ylabel="")
    )
    low, high = (float(c.get("cy")) for c in root.findall(f"{NS}circle"))
    assert high < low  # SVG's y grows downwards


def test_latency_chart_parses():
    rounds = [{"round": 1, "measured_ms": 5.0, "predicted_ms": 4.5}]
    assert ET.fromstring(latency_svg(rounds, budget_ms=6.0, percentile=90)).tag == f"{NS}svg"

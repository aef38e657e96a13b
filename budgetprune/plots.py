"""Small SVG line charts for the report, written without a plotting library so the files are
reproducible and the worker needs no extra dependency."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

Series = tuple[str, str, Sequence[tuple[float, float]], bool]  # name, colour, points, dashed


def line_chart(series: Sequence[Series], *, title: str, xlabel: str, ylabel: str) -> str:
    width, height, pad = 640, 320, 56
    points = [p for _, _, pts, _ in series for p in pts]
    if not points:
        points = [(0.0, 0.0), (1.0, 1.0)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1e-9)
    y0, y1 = 0.0, max(ys) * 1.1 or 1.0

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
        f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">{escape(xlabel)}</text>',
        f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" '
        f'text-anchor="middle">{escape(ylabel)}</text>',
    ]
    for i in range(5):
        v = y0 + (y1 - y0) * i / 4
        parts.append(
            f'<line x1="{pad}" x2="{width - pad}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" '
            f'stroke="#eee"/><text x="{pad - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">'
            f"{v:.3g}</text>"
        )
    for k, (name, colour, pts, dashed) in enumerate(series):
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{coords}"/>'
        )
        if not dashed:
            parts += [
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>' for x, y in pts
            ]
        parts.append(
            f'<text x="{pad + 150 * k}" y="40" fill="{colour}">&#9632; {escape(name)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


Points = tuple[str, str, Sequence[tuple[float, float]]]  # name, colour, points


def scatter_chart(series: Sequence[Points], *, title: str, xlabel: str, ylabel: str) -> str:
    """Markers joined in x order per series, both axes fitted to the data, legend on the right:
    for trade-off plots (accuracy against latency)."""
    width, height, pad, legend = 760, 400, 56, 150
    points = [p for _, _, pts in series for p in pts] or [(0.0, 0.0), (1.0, 1.0)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    xspan, yspan = max(max(xs) - min(xs), 1e-9), max(max(ys) - min(ys), 1e-9)
    x0, x1 = min(xs) - 0.05 * xspan, max(xs) + 0.05 * xspan
    y0, y1 = min(ys) - 0.08 * yspan, max(ys) + 0.08 * yspan
    right = width - legend

    def sx(x: float) -> float:
        return pad + (x - x0) / (x1 - x0) * (right - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y - y0) / (y1 - y0) * (height - 2 * pad)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{right / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>',
        f'<text x="{right / 2}" y="{height - 12}" text-anchor="middle">{escape(xlabel)}</text>',
        f'<text x="14" y="{height / 2}" transform="rotate(-90 14 {height / 2})" '
        f'text-anchor="middle">{escape(ylabel)}</text>',
    ]
    for i in range(5):
        v, u = y0 + (y1 - y0) * i / 4, x0 + (x1 - x0) * i / 4
        parts.append(
            f'<line x1="{pad}" x2="{right - pad}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" '
            f'stroke="#eee"/><text x="{pad - 6}" y="{sy(v) + 4:.1f}" text-anchor="end">'
            f"{v:.3g}</text>"
            f'<text x="{sx(u):.1f}" y="{height - pad + 16}" text-anchor="middle">{u:.3g}</text>'
        )
    for k, (name, colour, pts) in enumerate(series):
        ordered = sorted(pts)
        if len(ordered) > 1:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ordered)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>'
            )
        parts += [
            f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{colour}"/>' for x, y in ordered
        ]
        parts.append(
            f'<text x="{right + 8}" y="{60 + 18 * k}" fill="{colour}">&#9679; {escape(name)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def latency_svg(rounds: Sequence[dict], budget_ms: float, percentile: int) -> str:
    measured = [(float(r["round"]), float(r["measured_ms"])) for r in rounds]
    predicted = [(float(r["round"]), float(r["predicted_ms"])) for r in rounds]
    last = max(len(rounds), 2)
    return line_chart(
        [
            ("measured on the device", "#2f6fde", measured, False),
            ("predicted", "#e08a1e", predicted, False),
            ("budget", "#c62828", [(1.0, budget_ms), (float(last), budget_ms)], True),
        ],
        title=f"Latency (p{percentile}) of each measured candidate",
        xlabel="round",
        ylabel="ms",
    )


def training_svg(curve: Sequence[dict]) -> str:
    return line_chart(
        [("loss", "#2f6fde", [(float(c["step"]), float(c["loss"])) for c in curve], False)],
        title="Fine-tuning loss",
        xlabel="step",
        ylabel="loss",
    )

"""Invoices per day by state as a stacked bar chart in SVG, rendered on the server: no
script, no library, no CDN; readable without colour (a table of the same figures sits
beside it, and every bar carries a title with its numbers)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from runtime.store.journal import DailyCounts
from schemas.events import InvoiceState

# Bottom to top; the colours match the state badges of the lists.
ORDER = (
    (InvoiceState.FISCALIZED, "#067647"),
    (InvoiceState.RETRYING, "#c98a00"),
    (InvoiceState.REJECTED, "#b42318"),
    (InvoiceState.FAILED, "#7a1f16"),
    (InvoiceState.BLOCKED, "#5b6b7c"),
    (InvoiceState.SKIPPED, "#a7b3bf"),
    (InvoiceState.DUPLICATE, "#d0d7de"),
)
WIDTH, HEIGHT = 720, 220
LEFT, BOTTOM, TOP = 40, 24, 10


@dataclass(frozen=True)
class Legend:
    state: InvoiceState
    colour: str
    total: int


def _nice_ceiling(n: int) -> int:
    """1, 2, 5, 10, 20, 50, ... at or above n (at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= n:
                return step * m
        step *= 10


def daily_svg(daily: DailyCounts, title: str) -> tuple[str, list[Legend]]:
    days = daily.days
    totals = [sum(daily.counts[d].values()) for d in days]
    top = _nice_ceiling(max(totals, default=0))
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / max(len(days), 1)
    bar = max(slot * 0.7, 1)
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="chart-title" viewBox="0 0 {WIDTH} '
        f'{HEIGHT}" width="100%" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
    ]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH}" y2="{y:.1f}" '
                     'stroke="#d8dee5" stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{int(top * fraction)}</text>')
    for i, day in enumerate(days):
        x = LEFT + i * slot + (slot - bar) / 2
        y = TOP + plot_h
        counts = daily.counts[day]
        label = ", ".join(f"{counts[s]} {s.value}" for s, _ in ORDER if counts.get(s))
        parts.append(f'<g><title>{day.isoformat()}: {escape(label or "no invoices")}</title>')
        for state, colour in ORDER:
            n = counts.get(state, 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{colour}"/>')
        parts.append("</g>")
        if i % 7 == 0 or i == len(days) - 1:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">'
                         f'{day.strftime("%d.%m.")}</text>')
    parts.append("</svg>")
    legend = [
        Legend(state, colour, sum(daily.counts[d].get(state, 0) for d in days))
        for state, colour in ORDER
    ]
    return "".join(parts), legend

"""Charts as inline SVG drawn on the server: no script, no network, no style attributes (the console's
Content Security Policy allows neither inline styles nor scripts; SVG presentation attributes such as
``stroke`` are not styles). Every text and attribute value goes through :func:`markupsafe.escape`; the
result is marked safe only once everything in it is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# Colours told apart by most colour-blind readers (Okabe-Ito); series beyond them are dashed.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442")

_WIDTH, _HEIGHT = 720, 240  # the plot's box; the SVG scales to its container (viewBox)
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 16, 12, 40
_LEGEND_ROW = 20
_X_LABELS = 6  # at most this many time labels under the x axis


@dataclass(frozen=True)
class Series:
    """One line: a value per x position (``None`` where there is nothing to show)."""

    name: str
    values: Sequence[float | None]


def _tag(name: str, content: str = "", **attrs: object) -> str:
    """``<name attr="...">content</name>`` with every attribute value and the text escaped
    (``stroke_width`` becomes ``stroke-width``)."""
    rendered = "".join(f' {key.replace("_", "-")}="{escape(value)}"' for key, value in attrs.items())
    return f"<{name}{rendered}>{escape(content)}</{name}>"


def _number(value: float) -> str:
    return f"{value:.1f}"


def rate_chart(chart_id: str, title: str, x_labels: Sequence[str], series: Sequence[Series]) -> Markup:
    """A line chart of rates (0 to 1, shown as percentages) over ``x_labels``, with a text legend under
    it: one line per series through the positions that have a value, a dot on each of them."""
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    count = max(len(x_labels), 1)

    def x(i: int) -> float:
        return _LEFT + (plot_w * (i + 0.5) / count)

    def y(rate: float) -> float:
        return _TOP + plot_h * (1 - min(max(rate, 0.0), 1.0))

    parts = [_tag("title", title, id=f"{chart_id}-title")]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):  # horizontal grid with percentage labels
        parts.append(
            _tag(
                "line",
                x1=_LEFT,
                x2=_WIDTH - _RIGHT,
                y1=_number(y(tick)),
                y2=_number(y(tick)),
                stroke="#d9dee6",
            )
        )
        label = f"{tick:.0%}"
        parts.append(
            _tag(
                "text",
                label,
                x=_LEFT - 6,
                y=_number(y(tick) + 4),
                text_anchor="end",
                font_size=11,
                fill="#5c6675",
            )
        )
    step = max(1, -(-count // _X_LABELS))  # ceil: every step-th position gets a label
    for i in range(0, len(x_labels), step):
        parts.append(
            _tag(
                "text",
                x_labels[i],
                x=_number(x(i)),
                y=_TOP + plot_h + 18,
                text_anchor="middle",
                font_size=11,
                fill="#5c6675",
            )
        )
    for n, line in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        dashes = "none" if n < len(PALETTE) else "6 4"
        points = [(x(i), y(v)) for i, v in enumerate(line.values) if v is not None]
        group = [
            _tag(
                "polyline",
                points=" ".join(f"{_number(px)},{_number(py)}" for px, py in points),
                fill="none",
                stroke=colour,
                stroke_width=2,
                stroke_dasharray=dashes,
            )
        ]
        group += [_tag("circle", cx=_number(px), cy=_number(py), r=3, fill=colour) for px, py in points]
        parts.append(f'<g class="series" data-series="{escape(line.name)}">{"".join(group)}</g>')
        legend_y = _HEIGHT + n * _LEGEND_ROW
        parts.append(
            _tag(
                "line",
                x1=_LEFT,
                x2=_LEFT + 24,
                y1=legend_y,
                y2=legend_y,
                stroke=colour,
                stroke_width=3,
                stroke_dasharray=dashes,
            )
        )
        parts.append(_tag("text", line.name, x=_LEFT + 32, y=legend_y + 4, font_size=12, fill="#1d2330"))
    height = _HEIGHT + len(series) * _LEGEND_ROW
    svg = (
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'
    )
    return Markup(svg)  # every value inside was escaped above

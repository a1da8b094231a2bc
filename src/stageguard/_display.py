"""Compact HTML tables for notebooks (``_repr_html_`` of Response, Ruleset and Stage)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .response import Response
    from .rules import Rule, Ruleset
    from .stages import Stage

_STYLE = "border-collapse:collapse;font-size:12px"
_CELL = "border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top"
_COLOURS = {
    "triggered": "#c0392b",
    "not_triggered": "#27ae60",
    "paused": "#7f8c8d",
    "error": "#e67e22",
    "timeout": "#e67e22",
    "skipped": "#7f8c8d",
}


def _value(value: Any) -> str:
    return "" if value is None else escape(value if isinstance(value, str) else json.dumps(value))


def _status(status: Any) -> str:
    name = getattr(status, "value", str(status))
    return f'<b style="color:{_COLOURS.get(name, "inherit")}">{escape(name)}</b>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], caption: str = "") -> str:
    """An HTML table; cells are already escaped HTML."""
    head = "".join(f'<th style="{_CELL}">{escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in row) + "</tr>" for row in rows)
    cap = f'<caption style="text-align:left">{caption}</caption>' if caption else ""
    return f'<table style="{_STYLE}">{cap}<tr>{head}</tr>{body}</table>'


def _rule(rule: Rule) -> str:
    target = "" if rule.target_value is None else f" {_value(rule.target_value)}"
    return f"{escape(rule.metric)} {rule.operator.value}{target}"


def _action(action: Any) -> str:
    choices = getattr(action, "choices", None)
    return escape(action.type.value) + (f": {_value(choices)}" if choices else "")


def ruleset_html(ruleset: Ruleset) -> str:
    rows = [[_rule(rule)] for rule in ruleset.rules]
    caption = f"{escape(ruleset.description or 'ruleset')} → {_action(ruleset.action)}"
    return table(["rules (all must trigger)"], rows, caption)


def stage_html(stage: Stage) -> str:
    version = f"v{stage.version}" if stage.version is not None else "local"
    state = "paused" if stage.paused else "active"
    caption = (
        f"<b>{escape(stage.name)}</b> ({stage.type.value}, {version}, {state}, {stage.fail_policy.value})"
    )
    rows = [
        [
            str(index),
            escape(r.description or ""),
            "<br>".join(_rule(rule) for rule in r.rules),
            _action(r.action),
        ]
        for index, r in enumerate(stage.prioritized_rulesets, 1)
    ]
    return table(["#", "ruleset", "rules", "action"], rows, caption)


def response_html(response: Response) -> str:
    meta = response.stage_metadata
    where = f" · stage {escape(meta.stage_name)} v{meta.stage_version}" if meta else ""
    shadow = " (shadow: nothing changed)" if response.shadow else ""
    caption = (
        f"{_status(response.status)}{where}{shadow} · action {escape(response.action_result.type.value)}"
        f" · text: <i>{escape(response.text)}</i>"
    )
    rows = [
        [
            str(index),
            escape(ruleset.description or ""),
            _status(ruleset.status),
            escape(rule.metric),
            f"{rule.operator.value} {_value(rule.target_value)}",
            _value(rule.value),
            _status(rule.status),
        ]
        for index, ruleset in enumerate(response.ruleset_results, 1)
        for rule in ruleset.rule_results
    ]
    html = table(["#", "ruleset", "status", "metric", "rule", "value", "rule status"], rows, caption)
    problems = [
        f"{escape(name)}: {escape(m.error_message or '')}"
        for name, m in response.metric_results.items()
        if m.error_message
    ]
    if problems:
        html += "<div style='font-size:12px'>" + "<br>".join(problems) + "</div>"
    return html

"""Notebook display: Response, Ruleset and Stage render as compact, escaped HTML tables."""

from __future__ import annotations

from collections.abc import Callable

from stageguard import Engine, OverrideAction, Payload, Protect, Rule, Ruleset


def test_response_ruleset_stage_render_html(metric: Callable[..., str], protect: Protect) -> None:
    name = metric("html_metric", lambda _p: 0.9)
    ruleset = Ruleset(
        rules=[Rule(metric=name, operator="gt", target_value=0.5)],
        action=OverrideAction(choices=["<blocked>"]),
        description="a <b>bold</b> ruleset",
    )
    response = Engine().evaluate(Payload(input="x"), [ruleset])
    html = response._repr_html_()
    assert html.startswith("<table") and "triggered" in html and "html_metric" in html and "0.9" in html
    assert "&lt;blocked&gt;" in html and "<blocked>" not in html
    assert "a &lt;b&gt;bold&lt;/b&gt; ruleset" in ruleset._repr_html_()
    stage = protect.create_stage("shown", stage_type="central", prioritized_rulesets=[ruleset])
    stage_html = stage._repr_html_()
    assert (
        "<b>shown</b> (central, v1, active, fail_open)" in stage_html and "html_metric gt 0.5" in stage_html
    )


def test_metric_errors_are_listed(metric: Callable[..., str]) -> None:
    def boom(_p: Payload) -> float:
        raise RuntimeError("scorer <down>")

    name = metric("html_broken", boom)
    html = Engine().evaluate(
        Payload(input="x"), [Ruleset(rules=[Rule(metric=name, operator="gt", target_value=0.5)])]
    )
    assert "scorer &lt;down&gt;" in html._repr_html_()

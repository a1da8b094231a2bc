"""TextWindow releases redactions with the action's strategy (not always placeholders)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest.importorskip("llama_index.core")

from stageguard import Payload, Protect, RedactAction, Rule, Ruleset, ScoreResult, Span
from stageguard.llama_index._window import TextWindow, follow
from stageguard.redaction import Vault


def cards(payload: Payload) -> ScoreResult:
    text = payload.output or ""
    spans, start = [], text.find("4111")
    while start >= 0:
        spans.append(Span(start=start, end=start + 19, label="credit_card_info", field="output"))
        start = text.find("4111", start + 19)
    return ScoreResult(value=["credit_card_info"] if spans else [], spans=spans)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("placeholder", "card <CREDIT_CARD_INFO> and <CREDIT_CARD_INFO> ok"),
        ("mask", "card **** **** **** 1111 and **** **** **** 1111 ok"),
        ("pseudonym", "card <CREDIT_CARD_INFO_1> and <CREDIT_CARD_INFO_1> ok"),
    ],
)
def test_window_applies_the_strategy(
    protect: Protect, metric: Callable[..., str], strategy: str, expected: str
) -> None:
    metric("li_cards", cards, kind="categories")
    stage = [
        Ruleset(rules=[Rule(metric="li_cards", operator="not_empty")], action=RedactAction(strategy=strategy))
    ]
    vault = Vault()
    text = "card 4111 1111 1111 1111 and 4111 1111 1111 1111 ok"
    window = TextWindow(window=24, check_every=6, vault=vault)

    def check(so_far: str) -> object:
        return protect.invoke(Payload(output=so_far), stage, vault=vault)

    pieces = list(follow(window, iter(text[i : i + 4] for i in range(0, len(text), 4)), check))  # type: ignore[arg-type]
    assert "".join(pieces) == expected
    if strategy == "pseudonym":
        assert vault.restore("".join(pieces)) == text

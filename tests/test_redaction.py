"""REDACT strategies (placeholder, mask, hash, pseudonym) and the vault that restores pseudonyms."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import pickle
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from stageguard import (
    InvalidRequestError,
    Payload,
    Protect,
    RedactAction,
    Request,
    Rule,
    Ruleset,
    ScoreResult,
    Span,
    ainvoke_protect,
    invoke_protect,
)
from stageguard.redaction import Vault, apply_redaction, mask, set_hash_key
from stageguard.rules import parse_rulesets

EMAIL, OTHER_EMAIL = "alice@example.com", "bob@example.org"
PHONE, CARD = "+1 415-555-0132", "4111 1111 1111 1111"
TEXT = f"Mail {EMAIL} or {OTHER_EMAIL}, call {PHONE}, card {CARD}, again {EMAIL}."
ORIGINALS = (EMAIL, OTHER_EMAIL, PHONE, CARD)


def _pii(strategy: str = "placeholder", **action: Any) -> list[Ruleset]:
    return [
        Ruleset(
            rules=[Rule(metric="input_pii", operator="not_empty")],
            action=RedactAction(strategy=strategy, **action),
        )
    ]


@pytest.fixture
def hash_key() -> Iterator[bytes]:
    key = b"test-key"
    set_hash_key(key)
    yield key
    set_hash_key(None)


def _expected_hash(key: bytes, label: str, value: str) -> str:
    return f"<{label}:{hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:8]}>"


# -- strategies -------------------------------------------------------------------------------------


def test_placeholder_is_the_default_and_unchanged(protect: Protect) -> None:
    response = protect.invoke(TEXT, _pii())
    assert response.text == (
        "Mail <EMAIL> or <EMAIL>, call <PHONE_NUMBER>, card <CREDIT_CARD_INFO>, again <EMAIL>."
    )
    assert RedactAction().strategy == "placeholder"


def test_mask_keeps_length_and_shape_and_last_four_of_numbers(protect: Protect) -> None:
    response = protect.invoke(TEXT, _pii("mask"))
    assert response.text == (
        "Mail *****@*******.*** or ***@*******.***, call +* ***-***-0132, card **** **** **** 1111, "
        "again *****@*******.***."
    )
    assert len(response.text) == len(TEXT)


@pytest.mark.parametrize(
    ("label", "value", "masked"),
    [
        ("credit_card_info", "4111-1111-1111-1111", "****-****-****-1111"),
        ("phone_number", "(415) 555-0132", "(***) ***-0132"),
        ("phone_number", "555-0132", "***-****"),  # fewer than 8 digits: nothing kept
        ("ssn", "123-45-6789", "***-**-****"),  # not a "last 4" number
        ("email", "a.b@x.io", "*.*@*.**"),
        ("password", "s3cr3t!#", "********"),  # a password keeps no symbol either
        ("name", "Jane Doe", "**** ***"),
    ],
)
def test_mask_rule(label: str, value: str, masked: str) -> None:
    assert mask(label, value) == masked


def test_hash_is_stable_keyed_and_short(protect: Protect, hash_key: bytes) -> None:
    response = protect.invoke(TEXT, _pii("hash"))
    email = _expected_hash(hash_key, "EMAIL", EMAIL)
    assert response.text == (
        f"Mail {email} or {_expected_hash(hash_key, 'EMAIL', OTHER_EMAIL)}, "
        f"call {_expected_hash(hash_key, 'PHONE_NUMBER', PHONE)}, "
        f"card {_expected_hash(hash_key, 'CREDIT_CARD_INFO', CARD)}, again {email}."
    )
    assert protect.invoke(TEXT, _pii("hash")).text == response.text  # same value, same token
    set_hash_key(b"another key")
    assert protect.invoke(TEXT, _pii("hash")).text != response.text


def test_hash_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGEGUARD_REDACTION_KEY", "from-env")
    set_hash_key(None)  # re-read the environment
    try:
        text, _ = apply_redaction(EMAIL, [Span(start=0, end=len(EMAIL), label="email")], strategy="hash")
        assert text == _expected_hash(b"from-env", "EMAIL", EMAIL)
    finally:
        monkeypatch.delenv("STAGEGUARD_REDACTION_KEY")
        set_hash_key(None)


def test_bad_hash_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        set_hash_key("")
    with pytest.raises(TypeError, match="str or bytes"):
        set_hash_key(42)  # type: ignore[arg-type]


def test_pseudonyms_are_numbered_per_label_and_reused_for_the_same_value(protect: Protect) -> None:
    vault = Vault()
    response = protect.invoke(TEXT, _pii("pseudonym"), vault=vault)
    assert response.text == (
        "Mail <EMAIL_1> or <EMAIL_2>, call <PHONE_NUMBER_1>, card <CREDIT_CARD_INFO_1>, again <EMAIL_1>."
    )
    assert response.notes is None
    assert vault.restore(response.text) == TEXT
    assert sorted(vault.pseudonyms) == ["<CREDIT_CARD_INFO_1>", "<EMAIL_1>", "<EMAIL_2>", "<PHONE_NUMBER_1>"]


def test_same_value_same_pseudonym_across_invokes_sharing_a_vault(protect: Protect) -> None:
    vault = Vault()
    protect.invoke(f"write to {OTHER_EMAIL}", _pii("pseudonym"), vault=vault)
    second = protect.invoke(f"cc {EMAIL} and {OTHER_EMAIL}", _pii("pseudonym"), vault=vault)
    assert second.text == "cc <EMAIL_2> and <EMAIL_1>"
    assert vault.restore(second.text) == f"cc {EMAIL} and {OTHER_EMAIL}"


def test_without_a_vault_numbering_restarts_and_the_response_says_so(protect: Protect) -> None:
    first = protect.invoke(f"write to {OTHER_EMAIL}", _pii("pseudonym"))
    second = protect.invoke(f"write to {EMAIL}", _pii("pseudonym"))
    assert first.text == "write to <EMAIL_1>" and second.text == "write to <EMAIL_1>"
    assert second.notes and "throw-away vault" in second.notes[0]
    assert protect.invoke("nothing here", _pii("pseudonym")).notes is None  # nothing was pseudonymised


@pytest.mark.parametrize("strategy", ["placeholder", "mask", "hash", "pseudonym"])
def test_redaction_is_idempotent(protect: Protect, strategy: str) -> None:
    vault = Vault()
    once = protect.invoke(TEXT, _pii(strategy), vault=vault)
    twice = protect.invoke(once.text, _pii(strategy), vault=vault)
    assert twice.text == once.text
    assert len(vault) == (4 if strategy == "pseudonym" else 0)


@pytest.mark.parametrize("strategy", ["placeholder", "mask", "hash", "pseudonym"])
def test_the_response_never_contains_a_redacted_value(protect: Protect, strategy: str) -> None:
    dumped = protect.invoke(TEXT, _pii(strategy), vault=Vault()).model_dump_json()
    for value in ORIGINALS:
        assert value not in dumped


def test_explanations_and_values_quoting_a_redacted_value_are_scrubbed(
    protect: Protect, metric: Callable[..., str]
) -> None:
    def finder(payload: Payload) -> ScoreResult:  # a custom detector that reports what it found
        start = payload.input.index(EMAIL)
        return ScoreResult(
            value=EMAIL,
            spans=[Span(start=start, end=start + len(EMAIL), label="email")],
            explanation=f"found {EMAIL} in the input",
        )

    name = metric("quoting_finder", finder, kind="category")
    rulesets = [
        Ruleset(
            rules=[Rule(metric=name, operator="neq", target_value="")],
            action=RedactAction(strategy="pseudonym"),
        )
    ]
    response = protect.invoke(f"mail {EMAIL}", rulesets, vault=Vault())
    assert response.text == "mail <EMAIL_1>"
    assert response.metric_results[name].explanation == "found <EMAIL_1> in the input"
    assert response.metric_results[name].value == "<EMAIL_1>"
    assert response.ruleset_results[0].rule_results[0].value == "<EMAIL_1>"
    assert EMAIL not in response.model_dump_json()


def test_no_redacted_value_is_logged(protect: Protect, caplog: pytest.LogCaptureFixture) -> None:
    vault = Vault()
    with caplog.at_level(logging.DEBUG):
        response = protect.invoke(TEXT, _pii("pseudonym"), vault=vault)
        logging.getLogger("stageguard").debug("vault: %r %s", vault, vault)
    assert response.text != TEXT
    for value in ORIGINALS:
        assert value not in caplog.text
    assert "<Vault: 4 pseudonym(s)>" in caplog.text


def test_output_redaction_leaves_the_input_alone(protect: Protect) -> None:
    rulesets = [
        Ruleset(
            rules=[Rule(metric="output_pii", operator="not_empty")],
            action=RedactAction(strategy="pseudonym"),
        )
    ]
    vault = Vault()
    response = protect.invoke(
        {"input": f"my mail is {EMAIL}", "output": f"Sent to {EMAIL}."}, rulesets, vault=vault
    )
    assert response.text == "Sent to <EMAIL_1>."
    assert vault.restore(response.text) == f"Sent to {EMAIL}."


# -- the vault --------------------------------------------------------------------------------------


def test_restore_json_restores_nested_tool_arguments() -> None:
    vault = Vault()
    email, phone = vault.pseudonym("email", EMAIL), vault.pseudonym("phone_number", PHONE)
    arguments = {
        "to": [email, "support@example.net"],
        "body": f"call {phone} or write {email}",
        "meta": {"retries": 3, "cc": (email,), "urgent": True, email: None},
        "unknown": "<EMAIL_9>",
    }
    assert vault.restore_json(arguments) == {
        "to": [EMAIL, "support@example.net"],
        "body": f"call {PHONE} or write {EMAIL}",
        "meta": {"retries": 3, "cc": (EMAIL,), "urgent": True, EMAIL: None},
        "unknown": "<EMAIL_9>",  # not from this vault: left as it is
    }
    assert arguments["to"] == [email, "support@example.net"]  # the input is not changed


def test_restore_leaves_placeholders_hashes_and_unknown_pseudonyms() -> None:
    vault = Vault()
    token = vault.pseudonym("email", EMAIL)
    assert token == "<EMAIL_1>"
    assert vault.restore(f"{token} <EMAIL> <EMAIL:3f2a9c1b> <EMAIL_2> <email_1>") == (
        f"{EMAIL} <EMAIL> <EMAIL:3f2a9c1b> <EMAIL_2> <email_1>"
    )
    assert Vault().restore(token) == token  # another run's vault knows nothing of it


def test_labels_become_token_names() -> None:
    vault = Vault()
    assert vault.pseudonym("credit card", CARD) == "<CREDIT_CARD_1>"
    assert vault.pseudonym("???", "x") == "<REDACTED_1>"
    assert vault.restore("<CREDIT_CARD_1>/<REDACTED_1>") == f"{CARD}/x"


def test_the_vault_never_shows_or_serialises_its_values() -> None:
    vault = Vault()
    vault.pseudonym("email", EMAIL)
    assert repr(vault) == str(vault) == "<Vault: 1 pseudonym(s)>"
    with pytest.raises(TypeError, match="never serialised"):
        pickle.dumps(vault)
    with pytest.raises(TypeError):
        json.dumps(vault)
    assert copy.copy(vault) is vault and copy.deepcopy({"v": vault})["v"] is vault
    assert "<EMAIL_1>" in vault and EMAIL not in vault and len(vault) == 1
    empty = Vault()
    assert bool(empty) and len(empty) == 0
    vault.clear()
    assert vault.restore("<EMAIL_1>") == "<EMAIL_1>" and vault.pseudonym("email", OTHER_EMAIL) == "<EMAIL_1>"


def test_redact_action_applies_its_strategy_directly() -> None:
    spans = [Span(start=5, end=5 + len(EMAIL), label="email")]
    text = f"Mail {EMAIL}!"
    vault = Vault()
    assert RedactAction().redact(text, spans) == "Mail <EMAIL>!"
    assert RedactAction(placeholder="[{label}]").redact(text, spans) == "Mail [EMAIL]!"
    assert RedactAction(strategy="mask").redact(text, spans) == "Mail *****@*******.***!"
    assert RedactAction(strategy="pseudonym").redact(text, spans, vault=vault) == "Mail <EMAIL_1>!"
    assert vault.restore("<EMAIL_1>") == EMAIL


# -- the invoke entry points thread the vault --------------------------------------------------------


async def test_ainvoke_shares_the_vault(protect: Protect) -> None:
    vault = Vault()
    first = await protect.ainvoke(f"to {EMAIL}", _pii("pseudonym"), vault=vault)
    second = await protect.ainvoke(f"to {OTHER_EMAIL} and {EMAIL}", _pii("pseudonym"), vault=vault)
    assert (first.text, second.text) == ("to <EMAIL_1>", "to <EMAIL_2> and <EMAIL_1>")


def test_invoke_request_takes_a_vault(protect: Protect) -> None:
    vault = Vault()
    request = Request(payload=Payload(input=f"to {EMAIL}"), prioritized_rulesets=_pii("pseudonym"))
    assert protect.invoke_request(request, vault=vault).text == "to <EMAIL_1>"
    assert vault.restore("<EMAIL_1>") == EMAIL


async def test_ainvoke_request_takes_a_vault(protect: Protect) -> None:
    vault = Vault()
    request = Request(payload=Payload(input=f"to {EMAIL}"), prioritized_rulesets=_pii("pseudonym"))
    assert (await protect.ainvoke_request(request, vault=vault)).text == "to <EMAIL_1>"
    assert len(vault) == 1


def test_functional_api_takes_a_vault(api: Protect) -> None:
    vault = Vault()
    invoke_protect(f"to {EMAIL}", _pii("pseudonym"), vault=vault)
    response = invoke_protect(f"to {OTHER_EMAIL}", _pii("pseudonym"), vault=vault)
    assert response.text == "to <EMAIL_2>" and vault.restore(response.text) == f"to {OTHER_EMAIL}"


async def test_async_functional_api_takes_a_vault(api: Protect) -> None:
    vault = Vault()
    response = await ainvoke_protect(f"to {EMAIL}", _pii("pseudonym"), vault=vault)
    assert response.text == "to <EMAIL_1>" and len(vault) == 1


def test_a_vault_of_the_wrong_type_is_refused(protect: Protect) -> None:
    with pytest.raises(InvalidRequestError, match=r"vault must be a stageguard\.redaction\.Vault, got dict"):
        protect.invoke(f"to {EMAIL}", _pii("pseudonym"), vault={})  # type: ignore[arg-type]


def test_a_stage_with_pseudonyms_uses_the_vault(protect: Protect) -> None:
    protect.create_stage("pii", stage_type="central", prioritized_rulesets=_pii("pseudonym"))
    vault = Vault()
    response = protect.invoke(f"to {EMAIL}", stage_name="pii", vault=vault)
    assert response.text == "to <EMAIL_1>" and vault.restore(response.text) == f"to {EMAIL}"


# -- the action's wire format -------------------------------------------------------------------------


def test_strategy_round_trips_and_the_default_is_left_out() -> None:
    rulesets = _pii("hash")
    data = json.loads(json.dumps([r.model_dump(mode="json") for r in rulesets]))
    assert data[0]["action"]["strategy"] == "hash"
    assert parse_rulesets(data) == rulesets
    assert "strategy" not in _pii()[0].model_dump(mode="json")["action"]  # JSON as before


def test_strategy_in_yaml_any_case() -> None:
    policy = yaml.safe_load(
        """
        rulesets:
          - rules: [{metric: input_pii, operator: any, target_value: [email]}]
            action: {type: redact, strategy: Pseudonym}
        """
    )
    action = parse_rulesets(policy)[0].action
    assert isinstance(action, RedactAction) and action.strategy == "pseudonym"


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"type": "REDACT", "strategy": "blur"}, "unknown redaction strategy 'blur'; use one of placeholder"),
        (
            {"type": "REDACT", "strategy": "mask", "placeholder": "[x]"},
            "placeholder applies only to strategy",
        ),
        ({"type": "OVERRIDE", "choices": ["no"], "strategy": "mask"}, "only REDACT actions take 'strategy'"),
    ],
)
def test_bad_strategies_are_clear_errors(action: dict[str, Any], message: str) -> None:
    rules = [{"metric": "input_pii", "operator": "not_empty"}]
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_rulesets([{"rules": rules, "action": action}])


def test_the_docs_example_prints_what_it_says(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/redaction.md's Python blocks run, and each ``print`` shows what its comment says."""
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "redaction.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", doc, re.S))
    expected = [line.split("# ", 1)[1] for line in code.splitlines() if line.startswith("print(")]
    exec(compile(code, "docs/redaction.md", "exec"), {})
    assert capsys.readouterr().out.splitlines() == expected

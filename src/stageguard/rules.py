"""Rules, actions and rulesets: Galileo's wire format, checked against the metric catalogue."""

from __future__ import annotations

import difflib
import random
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from ._build import FastPrivateAttributes
from .metrics import ValueKind, find_metric, get_metric
from .operators import RuleOperator, compare
from .payload import clean_before
from .redaction import STRATEGIES, RedactionStrategy, Vault, apply_redaction
from .scorers.base import Span
from .status import ExecutionStatus, coerce_status

TargetValue = str | float | int | list[str] | None

# Pass this as pydantic validation context to load rules whose custom metric is not registered in this
# process (stored stages, JSON from elsewhere); such a rule reports an error when it is evaluated.
LENIENT = {"lenient_metrics": True}


def foreign_data(value: Any, own: type[BaseModel]) -> Any:
    """Another library's object with the same fields (a ``galileo_core`` model, any pydantic model,
    anything with ``model_dump``) as a dict for ``own``; everything else unchanged."""
    if isinstance(value, (own, str, bytes, dict, list, tuple)):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return value


def enum_value(value: Any) -> Any:
    """An enum member (e.g. ``GalileoMetrics.input_pii``, Galileo's ``StageType.central``) as its value."""
    return value.value if isinstance(value, Enum) else value


def known_keys(model: type[BaseModel]) -> set[str]:
    """The keys ``model`` reads: its field names and every alias of them."""
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        if field.alias:
            keys.add(field.alias)
        alias = field.validation_alias
        if isinstance(alias, str):
            keys.add(alias)
        elif alias is not None:
            keys.update(a for a in getattr(alias, "choices", ()) if isinstance(a, str))
    return keys


def is_lenient(info: ValidationInfo) -> bool:
    """Whether validation runs under :data:`LENIENT` (stored stages, JSON from elsewhere)."""
    return bool(info.context and info.context.get("lenient_metrics"))


def reject_unknown_keys(
    value: Any,
    model: type[BaseModel],
    *,
    what: str,
    lenient: bool = False,
    accepted: Iterable[str] = (),
    hints: Mapping[str, str] | None = None,
) -> Any:
    """``value`` unchanged, or a ``ValueError`` naming the first key of a dict ``model`` does not read,
    with a "did you mean" suggestion: a typo such as ``subscripton:`` must not silently drop a webhook.

    ``accepted`` keys are ignored (those Galileo's own JSON carries, e.g. ``created_by``); ``hints`` gives
    a message for a known misplaced key. ``lenient`` (stored stages, JSON from another version: see
    :func:`is_lenient`) ignores unknown keys: stored data always loads.
    """
    if not isinstance(value, dict) or lenient:
        return value
    known = known_keys(model)
    unknown = [k for k in value if k not in known and k not in accepted]
    if not unknown:
        return value
    key = unknown[0]
    message = f"unknown key {key!r} in {what}"
    close = difflib.get_close_matches(str(key), sorted(known), n=1)
    if hints and key in hints:
        message += f": {hints[key]}"
    elif close:
        message += f"; did you mean {close[0]!r}?"
    else:
        message += f"; allowed keys: {', '.join(sorted(model.model_fields))}"
    raise ValueError(message)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Rule(FastPrivateAttributes, BaseModel):
    """``metric <operator> target_value``: triggers when the comparison holds."""

    model_config = ConfigDict(frozen=True)

    metric: str = Field(description="Metric name (canonical or any Galileo spelling).")
    operator: RuleOperator
    target_value: TargetValue = None
    _checked: bool = PrivateAttr(default=False)
    _given: str | None = PrivateAttr(default=None)

    _clean = field_validator("metric", "target_value", mode="before")(clean_before)

    @model_validator(mode="before")
    @classmethod
    def _foreign(cls, value: Any, info: ValidationInfo) -> Any:
        value = reject_unknown_keys(foreign_data(value, cls), cls, what="a rule", lenient=is_lenient(info))
        if isinstance(value, dict) and isinstance(value.get("metric"), Enum):
            value = {**value, "metric": enum_value(value["metric"])}
        return value

    def __eq__(self, other: object) -> bool:
        """Rules are equal when their fields are (however the caller spelled the metric)."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    @property
    def given_metric(self) -> str:
        """The metric as the caller spelled it (``metric`` is the canonical name)."""
        return self._given or self.metric

    @field_validator("operator", mode="before")
    @classmethod
    def _operator_any_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_catalogue(self, info: ValidationInfo) -> Rule:
        if self._checked:  # already checked (pydantic re-runs this when a Rule is nested)
            return self
        lenient = bool(info.context and info.context.get("lenient_metrics"))
        spec = find_metric(self.metric) if lenient else get_metric(self.metric)
        self._checked = True
        self._given = self.metric
        if spec is None:
            return self
        object.__setattr__(self, "metric", spec.name)
        op, target = self.operator, self.target_value
        allowed = ", ".join(sorted(o.value for o in spec.operators))
        if op not in spec.operators:
            raise ValueError(
                f"metric {spec.name!r} ({spec.kind.value}) does not support operator {op.value!r}; "
                f"allowed operators: {allowed}"
            )
        where = f"rule {spec.name} {op.value}"
        if op in (RuleOperator.empty, RuleOperator.not_empty):
            if target not in (None, [], ""):
                raise ValueError(f"{where} takes no target_value (got {target!r})")
            object.__setattr__(self, "target_value", None)
        elif spec.kind in (ValueKind.score, ValueKind.number):
            if not _is_number(target):
                raise ValueError(f"{where} needs a number as target_value (got {target!r})")
            if spec.kind is ValueKind.score and not 0.0 <= float(target) <= 1.0:  # type: ignore[arg-type]
                raise ValueError(
                    f"{where}: {spec.name} is a score in [0, 1], so target_value {target} never works"
                )
        elif op in (RuleOperator.all, RuleOperator.any):
            if isinstance(target, str):
                target = [target]
                object.__setattr__(self, "target_value", target)
            if not isinstance(target, list) or not target or not all(isinstance(t, str) for t in target):
                raise ValueError(
                    f"{where} needs a non-empty list of categories as target_value (got {target!r})"
                )
            self._check_labels(spec.labels, target, where)
        else:  # eq / neq / contains against one category
            if not isinstance(target, str):
                raise ValueError(
                    f"{where} needs a single category (a string) as target_value (got {target!r})"
                )
            self._check_labels(spec.labels, [target], where)
        return self

    @staticmethod
    def _check_labels(labels: tuple[str, ...] | None, targets: list[str], where: str) -> None:
        if labels is None:
            return
        unknown = [t for t in targets if t not in labels]
        if unknown:
            raise ValueError(f"{where}: unknown categories {unknown}; allowed: {', '.join(labels)}")

    def evaluate(self, value: Any) -> bool:
        """Whether this rule triggers for ``value``."""
        return compare(self.operator, value, self.target_value)


class ActionType(str, Enum):
    OVERRIDE = "OVERRIDE"
    PASSTHROUGH = "PASSTHROUGH"
    REDACT = "REDACT"  # stageguard extension: mask the spans that triggered


class Subscription(BaseModel):
    """POST the invoke's response to ``url`` when the ruleset's status is one of ``statuses``."""

    url: AnyHttpUrl
    statuses: list[ExecutionStatus] = Field(default_factory=lambda: [ExecutionStatus.triggered])

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any, info: ValidationInfo) -> Any:
        return reject_unknown_keys(
            foreign_data(value, cls), cls, what="a subscription", lenient=is_lenient(info)
        )

    @field_validator("statuses", mode="before")
    @classmethod
    def _statuses_any_case(cls, value: Any) -> Any:
        return [coerce_status(v) for v in value] if isinstance(value, list) else value


# stageguard's extension keys of an action, with the values they are left out of the JSON at: a stage
# that doesn't use them serialises exactly as before (and as Galileo's own JSON).
_EXTENSION_DEFAULTS: dict[str, Any] = {"review": False, "strategy": "placeholder"}


class _Action(BaseModel):
    subscriptions: list[Subscription] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, value: Any, info: ValidationInfo) -> Any:
        kind = value.get("type") if isinstance(value, dict) else None
        hints = {  # a key of another action type: say which one reads it
            key: f"only {other} actions take {key!r}"
            for key, other in (("choices", "OVERRIDE"), ("placeholder", "REDACT"), ("strategy", "REDACT"))
            if key not in cls.model_fields
        }
        if "review" not in cls.model_fields:
            hints["review"] = (
                "a PASSTHROUGH never changes the text, so there is nothing to review: "
                "put review: true on an OVERRIDE or REDACT action"
            )
        what = f"an action of type {kind}" if kind else "an action"
        return reject_unknown_keys(value, cls, what=what, lenient=is_lenient(info), hints=hints)

    # No return annotation: one would replace the model's JSON schema (the server's OpenAPI) with "any".
    @model_serializer(mode="wrap")
    def _omit_extension_defaults(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if isinstance(data, dict):
            for key, default in _EXTENSION_DEFAULTS.items():
                if key in data and data[key] == default:
                    del data[key]
        return data


class OverrideAction(_Action):
    """Replace the text with one of ``choices`` (picked at random).

    ``review`` (stageguard extension, ignored by Galileo's schema): an adapter with a human in the loop
    asks a person before applying the action; one without applies it as usual. See ``docs/redaction.md``.
    """

    type: Literal[ActionType.OVERRIDE] = ActionType.OVERRIDE
    choices: list[str] = Field(min_length=1)
    review: bool = False

    _clean = field_validator("choices", mode="before")(clean_before)

    def pick(self) -> str:
        return self.choices[0] if len(self.choices) == 1 else random.choice(self.choices)


class PassthroughAction(_Action):
    """Keep the text; the decision is still reported (and sent to subscriptions)."""

    type: Literal[ActionType.PASSTHROUGH] = ActionType.PASSTHROUGH


class RedactAction(_Action):
    """stageguard extension: replace the spans that triggered the ruleset.

    ``strategy`` says with what (see :mod:`stageguard.redaction` and ``docs/redaction.md``):
    ``placeholder`` (default) formats ``placeholder`` with ``label`` (``"<{label}>"`` gives ``<SSN>``);
    ``mask`` keeps the length (``****-****-****-1111``); ``hash`` gives a stable keyed token
    (``<EMAIL:3f2a9c1b>``); ``pseudonym`` gives ``<EMAIL_1>``, reversible with the run's
    :class:`~stageguard.redaction.Vault`. ``review`` as for :class:`OverrideAction`.
    """

    type: Literal[ActionType.REDACT] = ActionType.REDACT
    strategy: RedactionStrategy = "placeholder"
    placeholder: str = "<{label}>"
    review: bool = False

    _clean = field_validator("placeholder", mode="before")(clean_before)

    @field_validator("strategy", mode="before")
    @classmethod
    def _strategy_any_case(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in STRATEGIES:
            return value.lower()
        if isinstance(value, str):
            raise ValueError(f"unknown redaction strategy {value!r}; use one of {', '.join(STRATEGIES)}")
        return value

    @model_validator(mode="after")
    def _placeholder_only_for_placeholders(self) -> RedactAction:
        if self.strategy != "placeholder" and self.placeholder != "<{label}>":
            raise ValueError(
                f"placeholder applies only to strategy 'placeholder', not {self.strategy!r} "
                "(its tokens have a fixed form so they can be recognised)"
            )
        return self

    def redact(self, text: str, spans: list[Span], *, vault: Vault | None = None) -> str:
        """``text`` with ``spans`` replaced per this action's strategy (``pseudonym``: numbered in
        ``vault``, a throw-away one if none is given)."""
        if self.strategy == "pseudonym" and vault is None:
            vault = Vault()
        return apply_redaction(
            text, spans, strategy=self.strategy, placeholder=self.placeholder, vault=vault
        )[0]


Action = Annotated[OverrideAction | PassthroughAction | RedactAction, Field(discriminator="type")]


class Ruleset(BaseModel):
    """Rules that trigger together (AND), and the action to take when they do."""

    rules: list[Rule] = Field(min_length=1)
    action: Action = Field(default_factory=PassthroughAction)
    description: str | None = None

    _clean = field_validator("description", mode="before")(clean_before)

    @model_validator(mode="before")
    @classmethod
    def _foreign(cls, value: Any, info: ValidationInfo) -> Any:
        hints = {
            key: f"{key!r} belongs in the ruleset's action (action: {{type: ..., {key}: ...}})"
            for key in ("subscriptions", "choices", "placeholder", "strategy", "review", "type")
        }
        return reject_unknown_keys(
            foreign_data(value, cls), cls, what="a ruleset", lenient=is_lenient(info), hints=hints
        )

    @field_validator("action", mode="before")
    @classmethod
    def _default_and_case(cls, value: Any) -> Any:
        value = foreign_data(value, _Action)
        if not value:
            return PassthroughAction()
        if isinstance(value, dict) and isinstance(value.get("type"), str):
            return {**value, "type": value["type"].upper()}
        return value

    @property
    def metrics(self) -> set[str]:
        return {rule.metric for rule in self.rules}

    @property
    def action_summary(self) -> str:
        """What the action does, in words. PASSTHROUGH says it is the default: a ruleset written without
        an ``action`` becomes PASSTHROUGH (as in Galileo), which reports the decision but keeps the text."""
        action = self.action
        subscribed = f"; notifies {len(action.subscriptions)} subscription(s)" if action.subscriptions else ""
        if getattr(action, "review", False):
            subscribed = f"; asks a person to review first (where the app can){subscribed}"
        if isinstance(action, OverrideAction):
            choices = (
                action.choices[0] if len(action.choices) == 1 else f"one of {len(action.choices)} choices"
            )
            return f"OVERRIDE: the text is replaced with {choices!r}{subscribed}"
        if isinstance(action, RedactAction):
            how = {
                "placeholder": repr(action.placeholder),
                "mask": "masks of the same length",
                "hash": "keyed hashes",
                "pseudonym": "numbered pseudonyms",
            }[action.strategy]
            return f"REDACT: the triggering spans are replaced with {how}{subscribed}"
        return (
            "PASSTHROUGH: the decision is reported, the text is kept (the default for a ruleset without "
            f"an action){subscribed}"
        )

    def __str__(self) -> str:
        rules = " AND ".join(
            f"{r.given_metric} {r.operator.value}{'' if r.target_value is None else f' {r.target_value!r}'}"
            for r in self.rules
        )
        about = f" ({self.description})" if self.description else ""
        return f"{rules}{about} -> {self.action_summary}"

    def _repr_html_(self) -> str:
        from ._display import ruleset_html

        return ruleset_html(self)


def parse_rulesets(data: Any, *, lenient: bool = False) -> list[Ruleset]:
    """Rulesets from JSON-like data (a list, or a dict with ``prioritized_rulesets``/``rulesets``: a policy
    file, or a stage's JSON; any other key is an error unless ``lenient``)."""
    if isinstance(data, dict):
        if not lenient:
            from .stages import STAGE_EXTRA_KEYS, Stage

            reject_unknown_keys(data, Stage, what="the rulesets' object", accepted=STAGE_EXTRA_KEYS)
        data = data.get("prioritized_rulesets", data.get("rulesets", data))
    if not isinstance(data, list):
        raise ValueError("expected a list of rulesets (or an object with 'prioritized_rulesets')")
    context = LENIENT if lenient else None
    return [r if isinstance(r, Ruleset) else Ruleset.model_validate(r, context=context) for r in data]

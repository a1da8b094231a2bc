"""``Protect``: the engine, a stage store and a scorer registry wired together.

The functional API (``invoke_protect`` and friends) runs on a default ``Protect`` configured from the
environment (:func:`stageguard.api.protect_from_env`); apps that wire things explicitly create their own.
This core never imports the HTTP client: a remote store is passed in like any other.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any, TypeVar

from pydantic import ValidationError

from ._build import builder
from ._environ import env_project
from .engine import CompiledRulesets, Engine
from .errors import (
    InvalidRequestError,
    ProjectNotFoundError,
    StageConflictError,
    StageguardError,
    StageNotFoundError,
    StoreUnavailableError,
    one_line,
)
from .payload import ALL_FIELDS, Payload, clean_text, holds_plain_text, text_payload
from .redaction import Vault
from .response import MAX_TIMEOUT, Request, Response, StageMetadata
from .rules import Ruleset, enum_value, foreign_data
from .scorers.base import Scorer
from .scorers.registry import ScorerRegistry, default_registry
from .stages import MAX_VERSION, Project, Stage, StageType, check_payload_fields, payload_field_warnings
from .status import FailPolicy
from .store.base import StageStore, check_new_stage, check_version
from .store.sqlite import SQLiteStageStore

logger = logging.getLogger("stageguard")

DEFAULT_PROJECT = "default"
DEFAULT_TIMEOUT = 10.0  # seconds: the galileo SDK's default (galileo.constants.protect.TIMEOUT_SECS)
# Galileo's objects (galileo_core Payload/Ruleset, or any pydantic model with the same fields) are accepted
# wherever these are: they are converted through ``model_dump()``.
PayloadLike = Payload | Mapping[str, Any] | str | Any
RulesetsLike = Sequence[Ruleset | Mapping[str, Any] | Any]


def as_payload(payload: PayloadLike) -> Payload:
    """A Payload from a Payload, a dict, or a bare string (taken as the input)."""
    if isinstance(payload, Payload):
        return payload
    if isinstance(payload, str):
        return text_payload({"input": payload}) or Payload(input=payload)
    return Payload.model_validate(foreign_data(payload, Payload))


def as_rulesets(rulesets: Any, field: str = "prioritized_rulesets") -> list[Ruleset]:
    """Rulesets from a list of Ruleset objects or dicts; anything else is an :class:`InvalidRequestError`
    naming ``field`` (and the ruleset, for one that does not validate)."""
    if type(rulesets) in (list, tuple) and all(type(r) is Ruleset for r in rulesets):
        return list(rulesets)  # already parsed (a StageRef's, an app's): nothing to check
    if isinstance(rulesets, Mapping) and (
        "prioritized_rulesets" in rulesets or "rulesets" in rulesets
    ):  # {"prioritized_rulesets": [...]}, as parse_rulesets accepts
        rulesets = rulesets.get("prioritized_rulesets", rulesets.get("rulesets"))
    if isinstance(rulesets, (str, bytes, bytearray, Mapping)) or not isinstance(rulesets, Iterable):
        raise InvalidRequestError(f"{field} must be a list of rulesets, got {type(rulesets).__name__}")
    parsed = []
    for i, ruleset in enumerate(rulesets):
        try:
            parsed.append(ruleset if isinstance(ruleset, Ruleset) else Ruleset.model_validate(ruleset))
        except ValidationError as exc:
            message = one_line(exc)
            where = f"{field}[{i}]"
            raise InvalidRequestError(
                f"{where}.{message}" if exc.errors() and exc.errors()[0].get("loc") else f"{where}: {message}"
            ) from exc
    return parsed


def _name(value: Any, field: str, *, required: bool = False) -> str | None:
    """A stage or project name/id argument: a non-blank string, cleaned like every stored string."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        got = repr(value) if isinstance(value, str) or value is None else type(value).__name__
        raise InvalidRequestError(f"{field} must be a non-blank string, got {got}")
    return clean_text(value, nul=True)


def _field_warnings(
    rulesets: Sequence[Ruleset] | None, payload_fields: Any, strict: Any, stage_name: str
) -> list[str]:
    """:func:`payload_field_warnings` with the arguments checked; each warning is logged."""
    if not isinstance(strict, bool):
        raise InvalidRequestError(f"strict must be true or false, got {type(strict).__name__}")
    fields = check_payload_fields(payload_fields)
    warnings = payload_field_warnings(rulesets, fields, strict=strict, stage_name=stage_name)
    for warning in warnings:
        logger.warning("stage %r: %s", stage_name, warning)
    return warnings


def _with_warnings(stage: Stage, warnings: list[str]) -> Stage:
    return stage.model_copy(update={"warnings": warnings}) if warnings else stage


def _same_definition(stage: Stage, kind: StageType, rulesets: Sequence[Ruleset]) -> Stage:
    """``stage`` when it has type ``kind`` and (central) ``rulesets``; else a :class:`StageConflictError`
    saying what differs (``create_stage(exist_ok=True)`` never changes a stage behind the caller's back)."""
    if stage.type is not kind:
        raise StageConflictError(
            f"stage {stage.name!r} exists and is {stage.type.value}, not {kind.value} (delete it first)"
        )
    if kind is StageType.central:
        stored = [r.model_dump(mode="json") for r in stage.prioritized_rulesets]
        if stored != [r.model_dump(mode="json") for r in rulesets]:
            raise StageConflictError(
                f"stage {stage.name!r} exists with different rulesets (version {stage.version}): "
                "store yours as a new version with update_stage, or delete the stage first"
            )
    return stage


E = TypeVar("E", bound=Enum)
# A cached stage: the stage, the fields of its StageMetadata, whether its rulesets respell a metric
# (see _respelled), and its rulesets compiled for the engine.
_StageEntry = tuple[Stage, dict[str, Any], bool, CompiledRulesets]


def _enum(kind: type[E], value: Any, field: str) -> E:
    try:
        return kind(enum_value(value))  # another library's enum (Galileo's StageType) by its value
    except (ValueError, TypeError):
        allowed = ", ".join(member.value for member in kind)
        raise InvalidRequestError(f"{field} must be one of {allowed}, got {value!r}") from None


_REQUEST_FIELDS = tuple(Request.model_fields)
_new_request = builder(Request)
_stage_metadata = builder(StageMetadata)


def _plain_name(value: Any) -> bool:
    """Whether a name argument is one :class:`Request` would keep as it is (a clean, non-blank str)."""
    return value is None or (
        type(value) is str and clean_text(value, nul=True) is value and bool(value.strip())
    )


def _plain_metadata(value: Any) -> bool:
    """Whether ``metadata`` is one validation would keep as it is: ``None``, or a flat dict of clean
    strings to clean strings, ints, finite floats, booleans or ``None`` (what adapters send)."""
    if value is None:
        return True
    if type(value) is not dict:
        return False
    for key, item in value.items():
        if type(key) is not str or clean_text(key) is not key:
            return False
        kind = type(item)
        if kind is str:
            if clean_text(item) is not item:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif item is not None and kind is not int and kind is not bool:
            return False
    return True


def _plain_request(args: Mapping[str, Any]) -> Request | None:
    """The :class:`Request` validating ``args`` would build, built directly when every argument already
    has its final type and value (a Payload, Ruleset objects, clean names, a float time-out, flat clean
    metadata, no headers: an app's usual invoke, and what the adapters send); else ``None`` and
    :func:`build_request` validates. Arguments that are no field of a request are ignored, as validation
    ignores them."""
    try:
        values = {name: args[name] for name in _REQUEST_FIELDS}
    except KeyError:  # validation gives a missing argument its default
        return None
    payload, rulesets, timeout = values["payload"], values["prioritized_rulesets"], values["timeout"]
    version, policy = values["stage_version"], values["fail_policy"]
    if not (
        type(payload) is Payload
        and (rulesets is None or (type(rulesets) is list and all(type(r) is Ruleset for r in rulesets)))
        and (type(timeout) is float or type(timeout) is int)
        and 0 < timeout <= MAX_TIMEOUT  # False for NaN
        and (version is None or (type(version) is int and 0 <= version <= MAX_VERSION))
        and _plain_metadata(values["metadata"])
        and values["headers"] is None
        and (policy is None or type(policy) is FailPolicy)
        and type(values["shadow"]) is bool
        and _plain_name(values["stage_name"])
        and _plain_name(values["stage_id"])
        and _plain_name(values["project_name"])
        and _plain_name(values["project_id"])
    ):
        return None
    if not _still_valid(payload):
        return None  # validation cleans it, or says what is wrong
    values["timeout"] = float(timeout)
    if values["metadata"] is not None:
        values["metadata"] = dict(values["metadata"])  # validation copies it too
    if rulesets is not None:
        values["prioritized_rulesets"] = list(rulesets)
    own = _private(payload, "_sanitized")
    sanitized = list(dict.fromkeys(own)) if own else []
    return _new_request(values, {"_sanitized": sanitized, "_notes": []})


def _still_valid(payload: Payload) -> bool:
    """Whether ``payload`` passes the checks validating a request re-runs on it (it may have been changed
    since it was built): not empty, text cleaned (here, as validation would). Quick for a payload of
    clean text only (:func:`~stageguard.payload.holds_plain_text`)."""
    if holds_plain_text(payload):
        return True
    try:
        payload._not_empty()  # type: ignore[operator]  # cleans what needs it, as validation would
    except ValueError:
        return False
    return True


def build_request(args: Mapping[str, Any]) -> Request:
    """A ``Request`` from Galileo-named invoke arguments (``locals()`` of an invoke; ``self`` and
    ``vault``, which never leaves the process, ignored).

    Every argument is validated here, before anything is looked up or evaluated; a wrong one raises
    :class:`InvalidRequestError` naming it.
    """
    plain = _plain_request(args)
    if plain is not None:
        return plain
    args = {k: v for k, v in args.items() if k not in ("self", "vault")}
    try:
        payload = as_payload(args.pop("payload"))
    except ValidationError as exc:
        raise InvalidRequestError(f"payload: {one_line(exc)}") from exc
    rulesets = args.pop("prioritized_rulesets")
    if rulesets is not None:
        rulesets = as_rulesets(rulesets)
    check_version(args["stage_version"], "stage_version")
    timeout = args["timeout"]
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidRequestError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
    try:
        return Request.model_validate({"payload": payload, "prioritized_rulesets": rulesets, **args})
    except ValidationError as exc:
        message = one_line(exc)
        if message.startswith("timeout"):
            message = f"timeout must be a positive, finite number of seconds: {message}"
        raise InvalidRequestError(message) from exc


def _private(model: Any, name: str) -> Any:
    """A private attribute of a pydantic model, or None: ``model._name`` without the slow path pydantic
    takes for it (an AttributeError raised and caught on every read), for the invoke's hot path: 0.09 µs
    a read, against 0.55 µs through :class:`~stageguard._build.FastPrivateAttributes` and 1.9 µs plain."""
    private = getattr(model, "__pydantic_private__", None)
    return private.get(name) if private else getattr(model, name, None)


def _respelled(rulesets: Iterable[Ruleset] | None) -> bool:
    """Whether a rule of ``rulesets`` names its metric otherwise than canonically (``given_metric``)."""
    return any(
        (_private(rule, "_given") or rule.metric) != rule.metric
        for ruleset in rulesets or ()
        for rule in ruleset.rules
    )


def _sanitized_fields(request: Request) -> list[str]:
    """``request.sanitized`` (see :func:`_private`)."""
    return list(_private(request, "_sanitized") or ())


def _set_private(model: Any, name: str, value: Any) -> None:
    """``model._name = value`` without pydantic's ``__setattr__`` (see :func:`_private`)."""
    private = getattr(model, "__pydantic_private__", None)
    if private is None:
        setattr(model, name, value)
    else:
        private[name] = value


def finish_response(request: Request, response: Response) -> Response:
    """``response`` with the request's notes, and each rule result's metric spelled as the request's rule
    spelled it (``canonical_metric`` then holds the canonical name)."""
    notes = _private(request, "_notes")
    if notes:
        response.notes = [*(response.notes or []), *notes]
    for ruleset in response.ruleset_results:
        if len(ruleset.rules) != len(ruleset.rule_results):
            continue
        for rule, result in zip(ruleset.rules, ruleset.rule_results, strict=True):
            given = _private(rule, "_given") or rule.metric  # Rule.given_metric
            if given != rule.metric and result.metric == rule.metric:
                result.metric, result.canonical_metric = given, rule.metric
    return response


def spellings_differ(request: Request) -> bool:
    """Whether :func:`finish_response` has anything to change in the response to ``request``."""
    return bool(_private(request, "_notes")) or _respelled(request.prioritized_rulesets)


def finish_json(request: Request, content: bytes) -> bytes:
    """:func:`finish_response` on a response's JSON (the server's path); ``content`` itself when there is
    nothing to change (the common case: canonical spellings, no notes)."""
    if not spellings_differ(request):
        return content
    data = json.loads(content)
    if not isinstance(data, dict):
        return content
    notes = _private(request, "_notes")
    if notes:
        data["notes"] = [*(data.get("notes") or []), *notes]
    meta = data.get("stage_metadata") or {}
    rulesets = request.prioritized_rulesets or []
    results = data.get("ruleset_results") or []
    if meta.get("stage_type") != StageType.central.value and len(results) == len(rulesets):
        for ruleset, result in zip(rulesets, results, strict=True):
            rule_results = result.get("rule_results") or []
            if len(rule_results) != len(ruleset.rules):
                continue
            for rule, rule_result in zip(ruleset.rules, rule_results, strict=True):
                if rule.given_metric != rule.metric and rule_result.get("metric") == rule.metric:
                    rule_result["metric"], rule_result["canonical_metric"] = rule.given_metric, rule.metric
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _check_vault(vault: Any) -> None:
    if vault is not None and not isinstance(vault, Vault):
        raise InvalidRequestError(f"vault must be a stageguard.redaction.Vault, got {type(vault).__name__}")


class Protect:
    """Stages, versions and invokes on one store, with one engine and scorer registry.

    ``scorers`` overrides the scorer of individual metrics (e.g. an LLM judge for ``completeness``)
    while every other metric keeps its built-in scorer.
    """

    def __init__(
        self,
        store: StageStore | None = None,
        *,
        engine: Engine | None = None,
        scorers: Mapping[str, Scorer] | None = None,
        fail_policy: FailPolicy | None = None,
    ) -> None:
        self.store = store if store is not None else SQLiteStageStore()
        registry = ScorerRegistry(scorers, parent=default_registry) if scorers else None
        self.engine = engine or Engine(registry)
        self.default_fail_policy = fail_policy
        self._cache: dict[tuple[Any, ...], _StageEntry] = {}
        self._projects: dict[str, str] = {}
        self._generation: object = None
        self._lock = threading.Lock()

    # -- projects

    def resolve_project(
        self, project_id: str | None = None, project_name: str | None = None, *, create: bool = False
    ) -> Project:
        """The project by id or name, else from Galileo's environment variables, else "default"."""
        project_id = _name(str(project_id), "project_id") if project_id else None
        project_name = _name(project_name, "project_name")
        if project_id is None and project_name is None:
            project_id, project_name = env_project()
        if project_id is not None:
            project = self.store.get_project(project_id=project_id)
            if project is None:
                raise ProjectNotFoundError(f"project {project_id} does not exist")
            return project
        name = project_name or DEFAULT_PROJECT
        project = self.store.get_project(name=name)
        if project is None:
            if not create:
                raise ProjectNotFoundError(f"project {name!r} does not exist (create a stage in it first)")
            try:
                project = self.store.create_project(name)
            except StageConflictError:  # created concurrently
                project = self.store.get_project(name=name)
                assert project is not None
        return project

    # -- stages

    def create_stage(
        self,
        name: str,
        *,
        stage_type: StageType | str = StageType.local,
        prioritized_rulesets: RulesetsLike | None = None,
        description: str | None = None,
        paused: bool = False,
        fail_policy: FailPolicy | str = FailPolicy.fail_open,
        project_id: str | None = None,
        project_name: str | None = None,
        payload_fields: Sequence[str] | None = None,
        strict: bool = False,
        exist_ok: bool = False,
    ) -> Stage:
        """Create a stage; a central one gets version 1 with ``prioritized_rulesets``.

        Every argument is checked before anything is written (the project included).
        ``payload_fields`` declares the payload fields the stage will receive (e.g. ``["input", "output"]``,
        all the galileo SDK's ``Payload`` has); a rule whose metric can never be evaluated with them is
        reported in the returned stage's ``warnings`` and logged, or, with ``strict=True``, is an
        :class:`InvalidRequestError` (nothing is written).

        A stage of that name already in the project is a :class:`StageConflictError`; with
        ``exist_ok=True`` (get-or-create, for scripts and notebooks run more than once) it is returned as
        it is, provided it has the same type and, for a central stage, the same rulesets in its latest
        version. Different ones are still a :class:`StageConflictError`: change them with
        :meth:`update_stage` (a new version), never silently. Its paused state, fail policy and
        description are left as they are.
        """
        checked = _name(name, "name", required=True)
        assert checked is not None
        name = checked
        kind = _enum(StageType, stage_type, "stage_type")
        policy = _enum(FailPolicy, fail_policy, "fail_policy")
        rulesets = as_rulesets(prioritized_rulesets) if prioritized_rulesets is not None else None
        if description is not None:
            if not isinstance(description, str):
                raise InvalidRequestError(f"description must be a string, got {type(description).__name__}")
            description = clean_text(description, nul=True)
        if not isinstance(paused, bool):
            raise InvalidRequestError(f"paused must be true or false, got {type(paused).__name__}")
        if not isinstance(exist_ok, bool):
            raise InvalidRequestError(f"exist_ok must be true or false, got {type(exist_ok).__name__}")
        check_new_stage(name, kind, rulesets)
        warnings = _field_warnings(rulesets, payload_fields, strict, name)
        project = self.resolve_project(project_id, project_name, create=True)
        existing = self.store.get_stage(project.id, name=name) if exist_ok else None
        if existing is None:
            try:
                stage = self.store.create_stage(
                    project.id,
                    name,
                    stage_type=kind,
                    prioritized_rulesets=rulesets or None,
                    description=description,
                    paused=paused,
                    fail_policy=policy,
                )
                return _with_warnings(stage, warnings)
            except StageConflictError as exc:
                if not exist_ok:
                    raise StageConflictError(
                        f"{exc}: pass exist_ok=True to get it back, or change its rulesets with update_stage"
                    ) from None
                existing = self.store.get_stage(project.id, name=name)  # created concurrently
                if existing is None:
                    raise
        return _with_warnings(_same_definition(existing, kind, rulesets or []), warnings)

    def get_stage(
        self,
        stage_name: str | None = None,
        *,
        stage_id: str | None = None,
        version: int | None = None,
        project_id: str | None = None,
        project_name: str | None = None,
    ) -> Stage | None:
        """The stage (latest version, or ``version``), or ``None`` when it does not exist."""
        if stage_id is None and stage_name is None:
            raise InvalidRequestError("give a stage_name or a stage_id")
        version = check_version(version)
        stage_name = _name(stage_name, "stage_name")
        stage_id = _name(str(stage_id), "stage_id") if stage_id is not None else None
        if stage_id is not None and project_id is None and project_name is None:
            return self.store.get_stage(None, stage_id=stage_id, version=version)
        try:
            project = self.resolve_project(project_id, project_name)
        except ProjectNotFoundError:
            return None
        return self.store.get_stage(project.id, stage_id=stage_id, name=stage_name, version=version)

    def require_stage(self, stage_name: str | None = None, **kwargs: Any) -> Stage:
        stage = self.get_stage(stage_name, **kwargs)
        if stage is None:
            what = f"stage {stage_name or kwargs.get('stage_id')!r}"
            if kwargs.get("version") is not None:
                what += f" version {kwargs['version']}"
            raise StageNotFoundError(f"{what} does not exist")
        return stage

    def list_stages(self, project_id: str | None = None, project_name: str | None = None) -> list[Stage]:
        try:
            project = self.resolve_project(project_id, project_name)
        except ProjectNotFoundError:
            return []
        return self.store.list_stages(project.id)

    def update_stage(
        self,
        stage_name: str | None = None,
        *,
        prioritized_rulesets: RulesetsLike,
        stage_id: str | None = None,
        project_id: str | None = None,
        project_name: str | None = None,
        payload_fields: Sequence[str] | None = None,
        strict: bool = False,
    ) -> Stage:
        """Store a new version of a central stage (an empty list clears its rules).

        ``payload_fields`` and ``strict`` as in :meth:`create_stage`.
        """
        rulesets = as_rulesets(prioritized_rulesets)
        stage = self.require_stage(
            stage_name, stage_id=stage_id, project_id=project_id, project_name=project_name
        )
        warnings = _field_warnings(rulesets, payload_fields, strict, stage.name)
        return _with_warnings(self.store.update_stage(stage.id, rulesets), warnings)

    def pause_stage(self, stage_name: str | None = None, **kwargs: Any) -> Stage:
        return self.store.set_paused(self.require_stage(stage_name, **kwargs).id, True)

    def resume_stage(self, stage_name: str | None = None, **kwargs: Any) -> Stage:
        return self.store.set_paused(self.require_stage(stage_name, **kwargs).id, False)

    def set_fail_policy(
        self, stage_name: str | None = None, *, fail_policy: FailPolicy | str, **kwargs: Any
    ) -> Stage:
        policy = _enum(FailPolicy, fail_policy, "fail_policy")
        return self.store.set_fail_policy(self.require_stage(stage_name, **kwargs).id, policy)

    def delete_stage(self, stage_name: str | None = None, **kwargs: Any) -> bool:
        return self.store.delete_stage(self.require_stage(stage_name, **kwargs).id)

    # -- invoke

    def invoke(
        self,
        payload: PayloadLike,
        prioritized_rulesets: RulesetsLike | None = None,
        project_id: str | None = None,
        project_name: str | None = None,
        stage_id: str | None = None,
        stage_name: str | None = None,
        stage_version: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        *,
        fail_policy: FailPolicy | str | None = None,
        shadow: bool = False,
        vault: Vault | None = None,
    ) -> Response:
        """Check ``payload`` against a stage (by name or id) or inline rulesets.

        ``vault`` (a :class:`~stageguard.redaction.Vault`, one per run) keeps the pseudonyms of REDACT
        actions with ``strategy="pseudonym"`` so they can be restored; it stays in this process.
        """
        request = build_request(locals())
        return self.invoke_request(request, vault=vault)

    async def ainvoke(
        self,
        payload: PayloadLike,
        prioritized_rulesets: RulesetsLike | None = None,
        project_id: str | None = None,
        project_name: str | None = None,
        stage_id: str | None = None,
        stage_name: str | None = None,
        stage_version: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        *,
        fail_policy: FailPolicy | str | None = None,
        shadow: bool = False,
        vault: Vault | None = None,
    ) -> Response:
        """Async :meth:`invoke`: scorers run concurrently on the running loop."""
        request = build_request(locals())
        return await self.ainvoke_request(request, vault=vault)

    def invoke_request(self, request: Request, *, vault: Vault | None = None) -> Response:
        """Evaluate a built :class:`Request` (``vault`` as in :meth:`invoke`)."""
        _check_vault(vault)
        plan, to_finish = self._resolve(request)
        if isinstance(plan, Response):
            return plan
        response = self.engine.evaluate(request.payload, **plan, vault=vault)
        return finish_response(request, response) if to_finish else response

    async def ainvoke_request(self, request: Request, *, vault: Vault | None = None) -> Response:
        """Async :meth:`invoke_request`."""
        _check_vault(vault)
        plan, to_finish = self._resolve(request)
        if isinstance(plan, Response):
            return plan
        response = await self.engine.aevaluate(request.payload, **plan, vault=vault)
        return finish_response(request, response) if to_finish else response

    def fields_read(
        self,
        prioritized_rulesets: RulesetsLike | None = None,
        project_id: str | None = None,
        project_name: str | None = None,
        stage_id: str | None = None,
        stage_name: str | None = None,
        stage_version: int | None = None,
    ) -> frozenset[str]:
        """The payload fields an invoke of this stage reads (the arguments select it as in :meth:`invoke`):
        what an adapter needs to put in the payload. ``input`` and ``output`` are the checked text and are
        always sent; adapters leave out the conversation, the tool specs, the tool calls or the retrieved
        context when no scorer of the stage reads them.

        Every field (:data:`~stageguard.payload.PAYLOAD_FIELDS`) when it can't be known: a scorer that
        doesn't declare its :attr:`~stageguard.scorers.base.Scorer.fields_read` (custom metrics), or a
        stage that can't be looked up now (the invoke then answers as it does for that).
        """
        given = prioritized_rulesets or ()
        try:
            if stage_name is not None or stage_id is not None:
                stage, _, _, compiled = self._cached_stage_entry(
                    stage_name, stage_id, stage_version, project_id, project_name
                )
                if stage.type is StageType.central:
                    return self.engine.fields_read(compiled)  # cached with the compiled rulesets
            rulesets = as_rulesets(given)
        except StageguardError:
            return ALL_FIELDS
        return self.engine.fields_read(rulesets)

    def _plan(self, request: Request) -> dict[str, Any] | Response:
        """Resolve the stage of a request into engine arguments (or a paused response)."""
        return self._resolve(request)[0]

    def _resolve(self, request: Request) -> tuple[dict[str, Any] | Response, bool]:
        """:meth:`_plan`, and whether :func:`finish_response` has anything to do: the request has notes,
        or a rule of the rulesets used spells its metric otherwise than canonically."""
        rulesets = request.prioritized_rulesets
        fail_policy = request.fail_policy or self.default_fail_policy
        notes: list[str] = []
        _set_private(request, "_notes", notes)
        stage_metadata = None
        respelled = None
        if request.stage_name is not None or request.stage_id is not None:
            try:
                stage, metadata, stage_respelled, compiled = self._cached_stage_entry(
                    request.stage_name,
                    request.stage_id,
                    request.stage_version,
                    request.project_id,
                    request.project_name,
                )
            except StoreUnavailableError as exc:
                policy = FailPolicy(fail_policy or FailPolicy.fail_open)
                logger.warning("stage store unavailable, answering %s: %s", policy.value, exc)
                unavailable = self.engine.unavailable_response(
                    request.payload,
                    f"stage store unavailable: {exc}",
                    policy,
                    request.metadata,
                    request.headers,
                    _sanitized_fields(request),
                )
                return unavailable, False
            stage_metadata = _stage_metadata(dict(metadata))  # a copy: responses are separate
            if stage.paused:
                paused = self.engine.paused_response(
                    request.payload,
                    stage_metadata,
                    request.metadata,
                    request.headers,
                    _sanitized_fields(request),
                )
                return paused, False
            if stage.type is StageType.central:
                if rulesets:  # as Galileo: a central stage's rulesets come from its definition
                    notes.append(
                        f"stage {stage.name!r} is central: the {len(rulesets)} prioritized_rulesets passed "
                        f"were ignored; version {stage.version}'s rulesets were used"
                    )
                rulesets, respelled = compiled, stage_respelled
            elif not rulesets:  # as Galileo (the SDK sends []): nothing to check, NOT_TRIGGERED
                notes.append(
                    f"stage {stage.name!r} is local and no prioritized_rulesets were passed: "
                    "nothing was checked"
                )
                rulesets = []
            fail_policy = fail_policy or stage.fail_policy
        elif rulesets is None:
            raise InvalidRequestError("give a stage (stage_name or stage_id) or prioritized_rulesets")
        fail_policy = fail_policy or FailPolicy.fail_open
        if respelled is None:
            respelled = _respelled(rulesets)
        plan = {
            "rulesets": rulesets,
            "timeout": request.timeout,
            "fail_policy": fail_policy if type(fail_policy) is FailPolicy else FailPolicy(fail_policy),
            "shadow": request.shadow,
            "stage_metadata": stage_metadata,
            "metadata": request.metadata,
            "headers": request.headers,
            "sanitized": _sanitized_fields(request),
        }
        return plan, respelled or bool(notes)

    def _cached_stage_entry(
        self,
        stage_name: str | None,
        stage_id: str | None,
        stage_version: int | None,
        project_id: str | None,
        project_name: str | None,
    ) -> _StageEntry:
        """The stage selected, the fields of its :class:`StageMetadata`, whether its rulesets respell a
        metric (:func:`_respelled`) and its rulesets compiled, cached until the store reports a change
        (another process included): a new version, a pause, a fail policy change."""
        generation = self.store.generation()
        project: tuple[str | None, str | None] = (project_id, project_name)
        if project == (None, None):  # the project comes from the environment, read now (it may change)
            env_id, env_name = env_project()
            project = ("env", env_id) if env_id else ("env-name", env_name or DEFAULT_PROJECT)
        key = (*project, stage_id, stage_name, stage_version)
        if generation == self._generation:  # a read needs no lock: entries are only added for it
            entry = self._cache.get(key)
        else:
            with self._lock:
                if generation != self._generation:
                    self._cache.clear()
                    self._generation = generation
                entry = self._cache.get(key)
        if entry is None:
            stage = self.require_stage(
                stage_name,
                stage_id=stage_id,
                version=stage_version,
                project_id=project_id,
                project_name=project_name,
            )
            metadata = StageMetadata(
                project_id=stage.project_id,
                stage_id=stage.id,
                stage_name=stage.name,
                stage_version=stage.version,
                stage_type=stage.type,
            )
            rulesets = stage.prioritized_rulesets
            entry = (stage, metadata.__dict__, _respelled(rulesets), CompiledRulesets(rulesets))
            with self._lock:
                if generation == self._generation:
                    self._cache[key] = entry
        return entry

    def close(self) -> None:
        self.engine.close()
        self.store.close()

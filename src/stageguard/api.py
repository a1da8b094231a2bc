"""Galileo's functional API (same names and arguments) on a default, environment-configured ``Protect``."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from .errors import InvalidRequestError
from .payload import Payload
from .protect import DEFAULT_TIMEOUT, PayloadLike, Protect, RulesetsLike
from .redaction import Vault
from .response import Response
from .stages import Stage, StageType
from .status import FailPolicy
from .store import open_store
from .store.base import StageStore
from .store.sqlite import SQLiteStageStore

_default: Protect | None = None
_lock = threading.Lock()


def store_from_env() -> StageStore:
    """The stage store the environment chooses: the server at ``STAGEGUARD_URL`` (with
    ``STAGEGUARD_API_KEY``; stages cached for ``STAGEGUARD_CACHE_TTL`` seconds, evaluated here) when set,
    else the database at ``STAGEGUARD_DB`` (a SQLite file, ``sqlite:///path`` or ``postgresql://...``;
    default: a SQLite file in the user's data directory, see :func:`stageguard.store.default_db_path`)."""
    if os.environ.get("STAGEGUARD_URL"):
        from .client.remote_store import RemoteStageStore  # the HTTP client only when asked for

        return RemoteStageStore.from_env()
    db = os.environ.get("STAGEGUARD_DB")
    return open_store(db) if db else SQLiteStageStore()


def protect_from_env() -> Protect:
    """A ``Protect`` on :func:`store_from_env` (what the functional API uses by default)."""
    return Protect(store_from_env())


def get_default_protect() -> Protect:
    """The ``Protect`` the functional API uses, created from the environment on first use."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = protect_from_env()
    return _default


def set_default_protect(protect: Protect | None) -> None:
    """Use ``protect`` for the functional API (``None``: rebuild from the environment next time)."""
    global _default
    with _lock:
        _default = protect


def _stage_from_env(args: dict[str, Any]) -> dict[str, Any]:
    """Invoke arguments with ``stage_name``/``stage_id``/``stage_version`` taken from
    ``GALILEO_STAGE_NAME``/``GALILEO_STAGE_ID``/``GALILEO_STAGE_VERSION`` when not given, each on its own,
    as the galileo SDK's ``Request`` does (an argument always wins over its variable)."""
    for field, variable in (("stage_name", "GALILEO_STAGE_NAME"), ("stage_id", "GALILEO_STAGE_ID")):
        if args[field] is None:
            args[field] = os.environ.get(variable) or None
    version = os.environ.get("GALILEO_STAGE_VERSION")
    if args["stage_version"] is None and version:
        try:
            args["stage_version"] = int(version)
        except ValueError:
            raise InvalidRequestError(f"GALILEO_STAGE_VERSION must be an integer, got {version!r}") from None
    return args


def create_protect_stage(
    project_id: str | None = None,
    project_name: str | None = None,
    name: str | None = None,
    stage_type: StageType | str = StageType.local,
    pause: bool = False,
    prioritized_rulesets: RulesetsLike | None = None,
    description: str | None = None,
    *,
    fail_policy: FailPolicy | str = FailPolicy.fail_open,
    payload_fields: Sequence[str] | None = None,
    strict: bool = False,
    exist_ok: bool = False,
) -> Stage:
    """Create a stage (central: with its rulesets, version 1; local: without).

    ``payload_fields`` (stageguard's extra) declares the payload fields the stage will receive: a rule that
    can never be evaluated with them is listed in the stage's ``warnings`` and logged (``strict=True``:
    :class:`InvalidRequestError`). ``exist_ok=True`` (stageguard's extra) returns the stage when it
    already exists with the same type and rulesets, so a script can run again; different rulesets are
    still a :class:`StageConflictError` (see :meth:`Protect.create_stage`)."""
    if not name:
        raise ValueError("create_protect_stage needs a name")
    return get_default_protect().create_stage(
        name,
        stage_type=stage_type,
        prioritized_rulesets=prioritized_rulesets,
        description=description,
        paused=pause,
        fail_policy=fail_policy,
        project_id=project_id,
        project_name=project_name,
        payload_fields=payload_fields,
        strict=strict,
        exist_ok=exist_ok,
    )


def get_protect_stage(
    project_id: str | None = None,
    project_name: str | None = None,
    stage_id: str | None = None,
    stage_name: str | None = None,
    *,
    stage_version: int | None = None,
) -> Stage | None:
    """The stage by name or id (latest version, or ``stage_version``), or ``None``."""
    return get_default_protect().get_stage(
        stage_name, stage_id=stage_id, version=stage_version, project_id=project_id, project_name=project_name
    )


def update_protect_stage(
    project_id: str | None = None,
    project_name: str | None = None,
    stage_id: str | None = None,
    stage_name: str | None = None,
    prioritized_rulesets: RulesetsLike | None = None,
    *,
    payload_fields: Sequence[str] | None = None,
    strict: bool = False,
) -> Stage:
    """Store a new version of a central stage (``payload_fields``/``strict`` as in
    :func:`create_protect_stage`)."""
    return get_default_protect().update_stage(
        stage_name,
        prioritized_rulesets=prioritized_rulesets or [],
        stage_id=stage_id,
        project_id=project_id,
        project_name=project_name,
        payload_fields=payload_fields,
        strict=strict,
    )


def pause_protect_stage(
    project_id: str | None = None,
    project_name: str | None = None,
    stage_id: str | None = None,
    stage_name: str | None = None,
) -> Stage:
    """Pause a stage: it lets everything through until resumed."""
    return get_default_protect().pause_stage(
        stage_name, stage_id=stage_id, project_id=project_id, project_name=project_name
    )


def resume_protect_stage(
    project_id: str | None = None,
    project_name: str | None = None,
    stage_id: str | None = None,
    stage_name: str | None = None,
) -> Stage:
    """Resume a paused stage."""
    return get_default_protect().resume_stage(
        stage_name, stage_id=stage_id, project_id=project_id, project_name=project_name
    )


def invoke_protect(
    payload: Payload | PayloadLike,
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
    """Check ``payload`` against a stage or inline rulesets; see :meth:`Protect.invoke`.

    As in the galileo SDK: the default ``timeout`` is 10 s, and a stage not named here comes from
    ``GALILEO_STAGE_NAME``/``GALILEO_STAGE_ID`` (its version from ``GALILEO_STAGE_VERSION``).
    ``vault`` (stageguard's extra) keeps pseudonyms for restoring; it never leaves this process.
    """
    # the same argument names as Protect.invoke
    return get_default_protect().invoke(**_stage_from_env(locals()))


async def ainvoke_protect(
    payload: Payload | PayloadLike,
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
    """Async :func:`invoke_protect`."""
    return await get_default_protect().ainvoke(**_stage_from_env(locals()))

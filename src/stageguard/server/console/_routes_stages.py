"""A stage: its rulesets, versions and their diff, pause / resume, and a new version from JSON or YAML.

Reads and changes go through the API's own functions (``state.stage``, ``_versions``, ``_set``,
``_update``, ``RulesetsBody``), so roles, project isolation (another project's stage is a 404) and error
messages are exactly the API's.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ...stages import Stage
from .._errors import ApiError, as_api_error, invalid
from .._routes_stages import Version, _set, _update, _versions
from .._schemas import RulesetsBody
from ._render import page, redirect
from ._session import Editor, Session, Viewer, checked_form, state_of

router = APIRouter()

# The notices a page shows after a change, chosen by code: the query string never supplies the text.
NOTICES = {
    "paused": "Stage paused: invokes let everything through unchanged, with status paused.",
    "resumed": "Stage resumed: invokes evaluate its rulesets again.",
    "created": "New version {version} created.",
}

# API errors shown on the edit form (the text stays editable); others (404, 503) get the error page.
FORM_STATUSES = (409, 413, 422)


@router.get("/stages/{stage_id}", name="stage")
def stage_page(
    request: Request, stage_id: str, session: Viewer, version: Version = None, notice: str | None = None
) -> Response:
    """The stage's settings and its rulesets (latest version, or ``?version=N``) in priority order."""
    state = state_of(request)
    stage = state.stage(session.principal, stage_id, version)
    latest = stage.version if version is None else state.stage(session.principal, stage_id).version
    message = NOTICES.get(notice or "")
    return page(
        request,
        "stage.html",
        session,
        stage=stage,
        latest=latest,
        notice=message.format(version=stage.version) if message else None,
    )


@router.post("/stages/{stage_id}/state", name="stage_state")
async def set_state(request: Request, stage_id: str, session: Editor) -> Response:
    """Pause (``pause=true``) or resume (``pause=false``) the stage, as ``PUT /stages/{id}?pause=`` does."""
    form = await checked_form(request, session)
    pause = {"true": True, "false": False}.get(str(form.get("pause")))
    if pause is None:
        raise invalid("pause must be true or false", ("form", "pause"))
    await run_in_threadpool(_set, state_of(request), session.principal, stage_id, pause, None)
    notice = "paused" if pause else "resumed"
    return redirect(request, "stage", query=f"notice={notice}", stage_id=stage_id)


@router.get("/stages/{stage_id}/versions", name="versions")
def versions_page(
    request: Request, stage_id: str, session: Viewer, a: Version = None, b: Version = None
) -> Response:
    """The stage's versions and, with ``?a=N&b=M``, a side-by-side diff of their rulesets."""
    state = state_of(request)
    stage = state.stage(session.principal, stage_id)
    versions = _versions(state, session.principal, stage_id).versions
    diff = None
    if a is not None and b is not None:  # an unknown version is the API's 404
        old, new = (state.stage(session.principal, stage_id, v) for v in (a, b))
        diff = side_by_side(_pretty(old), _pretty(new))
    return page(request, "versions.html", session, stage=stage, versions=versions, a=a, b=b, diff=diff)


@router.get("/stages/{stage_id}/edit", name="edit")
def edit_page(request: Request, stage_id: str, session: Editor) -> Response:
    """The latest version's rulesets as JSON, to edit into a new version."""
    stage = state_of(request).stage(session.principal, stage_id)
    text = json.dumps(_rulesets_json(stage), indent=2, ensure_ascii=False)
    return _edit_form(request, session, stage, text, "json")


@router.post("/stages/{stage_id}/edit")
async def save_edit(request: Request, stage_id: str, session: Editor) -> Response:
    """A new version from the posted JSON or YAML, validated as ``POST /stages/{id}`` validates its body;
    problems are listed on the form (same messages, status 422) with the text kept as typed."""
    form = await checked_form(request, session)
    state = state_of(request)
    stage = await run_in_threadpool(state.stage, session.principal, stage_id)
    text, fmt = str(form.get("rulesets") or ""), str(form.get("format") or "json")
    try:
        # validated as FastAPI validates the API's body (from_attributes), so the messages match
        body = RulesetsBody.model_validate(_parse(text, fmt), from_attributes=True)
        created = await run_in_threadpool(_update, state, session.principal, stage_id, body)
    except Exception as exc:
        error = as_api_error(exc)
        if error is None or error.status not in FORM_STATUSES:
            raise error or exc from None
        # FastAPI puts an invalid body's problems under "body"; the API's own checks already do
        prefix = ("body",) if isinstance(exc, ValidationError) else ()
        return _edit_form(request, session, stage, text, fmt, _problems(error, prefix), error.status)
    return redirect(request, "stage", query=f"version={created.version}&notice=created", stage_id=stage_id)


def _edit_form(
    request: Request,
    session: Session,
    stage: Stage,
    text: str,
    fmt: str,
    errors: list[dict[str, str]] | None = None,
    status: int = 200,
) -> Response:
    return page(
        request, "edit.html", session, status=status, stage=stage, text=text, fmt=fmt, errors=errors or []
    )


def _parse(text: str, fmt: str) -> Any:
    """The rulesets typed as JSON or YAML, as the body ``POST /stages/{id}`` takes: a bare list of
    rulesets becomes ``{"prioritized_rulesets": [...]}``."""
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise invalid(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    elif fmt == "yaml":
        try:
            import yaml
        except ImportError:
            raise invalid(
                "reading YAML needs PyYAML on the server (pip install 'stageguard[yaml]'); "
                "choose JSON instead"
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise invalid(f"not valid YAML: {exc}") from None
    else:
        raise invalid(f"format must be json or yaml, not {fmt!r}", ("form", "format"))
    return {"prioritized_rulesets": data} if isinstance(data, list) else data


def _problems(error: ApiError, prefix: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """One ``{loc, msg}`` per problem: the texts of the API's JSON error (its ``detail``)."""
    detail = error.detail if isinstance(error.detail, list) else [{"loc": [], "msg": error.detail}]
    return [
        {
            "loc": ".".join(str(part) for part in (*prefix, *problem.get("loc", ()))),
            "msg": str(problem["msg"]),
        }
        for problem in detail
    ]


def _rulesets_json(stage: Stage) -> list[dict[str, Any]]:
    return [ruleset.model_dump(mode="json") for ruleset in stage.prioritized_rulesets]


def _pretty(stage: Stage) -> list[str]:
    """The stage's rulesets as pretty JSON lines (sorted keys, so only real changes differ)."""
    return json.dumps(_rulesets_json(stage), indent=2, sort_keys=True, ensure_ascii=False).splitlines()


@dataclass(frozen=True)
class DiffRow:
    """One row of a side-by-side diff: ``kind`` is same, added, removed or changed; a side without a line
    (an added line has no left side) has ``None``."""

    kind: str
    left_no: int | None
    left: str | None
    right_no: int | None
    right: str | None


def side_by_side(old: list[str], new: list[str]) -> list[DiffRow]:
    """``old`` and ``new`` aligned line by line: replaced blocks are paired up as changed rows, and what
    one side has more of is removed (left only) or added (right only)."""
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for i, j in zip_longest(range(i1, i2), range(j1, j2)):
            if tag == "equal":
                kind = "same"
            elif i is not None and j is not None:
                kind = "changed"
            else:
                kind = "added" if i is None else "removed"
            rows.append(
                DiffRow(
                    kind,
                    None if i is None else i + 1,
                    None if i is None else old[i],
                    None if j is None else j + 1,
                    None if j is None else new[j],
                )
            )
    return rows

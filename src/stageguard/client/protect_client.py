"""``ProtectClient``: invoke stages on a stageguard server and manage them, sync and async.

Each operation is written once, as a generator that yields the HTTP calls it needs and receives their
results; ``_run`` drives it with blocking calls, ``_arun`` with awaited ones. So the sync and async
methods can't drift apart.

An invoke never raises because the server is down, slow or failing: it answers under the fail policy
(the call's, else the client's, else fail-open: status ``error``/``timeout``, text unchanged) and logs
why. Mistakes (unknown stage, bad key, invalid rules) still raise.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Generator
from typing import Any, TypeVar

from .._environ import env_project
from ..engine import fail_policy_response
from ..errors import ProjectNotFoundError, StageNotFoundError
from ..payload import ALL_FIELDS
from ..protect import PayloadLike, RulesetsLike, build_request
from ..response import Request, Response
from ..stages import Project, Stage, StageType
from ..status import FailPolicy
from ._errors import MalformedAnswerError, ServerUnavailableError
from ._http import Call, HttpClient
from ._wire import (
    env_float,
    first_project,
    parsed,
    project_of,
    rulesets_json,
    stage_of,
    stages_of,
    version_params,
)

logger = logging.getLogger("stageguard.client")

T = TypeVar("T")
Op = Generator[Call, Any, T]

# The share of an invoke's budget the server may spend computing metrics; the rest is for the network.
_SERVER_SHARE = 0.9


def _create_body(
    stage_type: StageType | str,
    rulesets: RulesetsLike | None,
    description: str | None,
    paused: bool,
    fail_policy: FailPolicy | str,
) -> dict[str, Any]:
    return {
        "type": StageType(stage_type).value,
        "prioritized_rulesets": rulesets_json(rulesets),
        "description": description,
        "paused": paused,
        "fail_policy": FailPolicy(fail_policy).value,
    }


def _response(data: Any) -> Response:
    def parse(value: Any) -> Response:
        if not isinstance(value, dict):
            raise TypeError(f"expected a JSON object, got {type(value).__name__}")
        return Response.model_validate(value)

    return parsed("invoke", parse, data)


class ProtectClient:
    """A stageguard server's API: invokes and stage management, each as ``name`` and ``aname``.

    ``url``/``api_key`` default to ``STAGEGUARD_URL``/``STAGEGUARD_API_KEY``; ``timeout`` (default
    ``STAGEGUARD_TIMEOUT`` or 5 s) bounds management calls, an invoke's own ``timeout`` bounds it.
    Without a project, calls use ``GALILEO_PROJECT_ID``/``GALILEO_PROJECT``, else the key's project.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = None,
        retries: int = 2,
        fail_policy: FailPolicy | str | None = None,
        http: HttpClient | None = None,
    ) -> None:
        if http is None:
            url = url or os.environ.get("STAGEGUARD_URL")
            if not url:
                raise ValueError("no server URL: pass url= or set STAGEGUARD_URL")
            api_key = api_key or os.environ.get("STAGEGUARD_API_KEY")
            if not api_key:
                raise ValueError("no API key: pass api_key= or set STAGEGUARD_API_KEY")
            timeout = timeout if timeout is not None else env_float("STAGEGUARD_TIMEOUT", 5.0)
            http = HttpClient(url, api_key, timeout=timeout, retries=retries)
        self.http = http
        self.fail_policy = FailPolicy(fail_policy) if fail_policy is not None else None
        self._projects: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"ProtectClient({self.http.url!r})"

    # -- drivers

    def _run(self, op: Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(self.http.send(call))
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            op.close()

    async def _arun(self, op: Op[T]) -> T:
        try:
            call = next(op)
            while True:
                call = op.send(await self.http.asend(call))
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            op.close()

    def close(self) -> None:
        self.http.close()

    async def aclose(self) -> None:
        await self.http.aclose()

    def __enter__(self) -> ProtectClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> ProtectClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- operations (generators of calls)

    def _project_op(self, project_id: str | None, project_name: str | None) -> Op[str]:
        """The project id: given, by name, from Galileo's variables, else the key's own project."""
        if project_id:
            return str(project_id)
        if not project_name:
            env_id, env_name = env_project()
            if env_id:
                return env_id
            project_name = env_name or ""
        cached = self._projects.get(project_name)
        if cached is not None:
            return cached
        if project_name:
            found = first_project((yield Call("GET", "/projects", params={"project_name": project_name})))
            if found is None:
                raise ProjectNotFoundError(
                    f"project {project_name!r} not found (an API key only sees its own project)"
                )
            pid = found.id
        else:
            me = yield Call("GET", "/current_user")
            pid = parsed("current user", lambda data: str(data["project_id"]), me)
        self._projects[project_name] = pid
        return pid

    def _project_info_op(self, project_id: str | None, name: str | None) -> Op[Project | None]:
        if project_id is not None:
            data = yield Call("GET", f"/projects/{project_id}", missing_ok=True)
            return project_of(data) if data is not None else None
        found = yield Call("GET", "/projects", params={"project_name": name} if name else None)
        return first_project(found)

    def _get_op(
        self,
        stage_name: str | None,
        stage_id: str | None,
        version: int | None,
        project_id: str | None,
        project_name: str | None,
    ) -> Op[Stage | None]:
        if stage_id is None and stage_name is None:
            raise ValueError("give a stage_name or a stage_id")
        if stage_id is not None and not project_id and not project_name:
            data = yield Call("GET", f"/stages/{stage_id}", params=version_params(version), missing_ok=True)
        else:
            pid = yield from self._project_op(project_id, project_name)
            params = {"stage_id": stage_id} if stage_id is not None else {"stage_name": stage_name}
            data = yield Call(
                "GET",
                f"/projects/{pid}/stages",
                params={**params, **version_params(version)},
                missing_ok=True,
            )
        return stage_of(data) if data is not None else None

    def _require_op(self, stage_name: str | None, stage_id: str | None, **where: Any) -> Op[Stage]:
        stage = yield from self._get_op(
            stage_name, stage_id, None, where.get("project_id"), where.get("project_name")
        )
        if stage is None:
            raise StageNotFoundError(f"stage {stage_name or stage_id!r} does not exist")
        return stage

    def _stage_id_op(self, stage_name: str | None, stage_id: str | None, **where: Any) -> Op[str]:
        if stage_id is not None:
            return str(stage_id)
        stage = yield from self._require_op(stage_name, None, **where)
        return stage.id

    def _create_op(
        self, name: str, body: dict[str, Any], project_id: str | None, project_name: str | None
    ) -> Op[Stage]:
        pid = yield from self._project_op(project_id, project_name)
        data = yield Call("POST", f"/projects/{pid}/stages", json={"name": name, "project_id": pid, **body})
        return stage_of(data)

    def _list_op(self, project_id: str | None, project_name: str | None) -> Op[list[Stage]]:
        pid = yield from self._project_op(project_id, project_name)
        data = yield Call("GET", f"/projects/{pid}/stages/all")
        return stages_of(data)

    def _versions_op(self, stage_name: str | None, stage_id: str | None, **where: Any) -> Op[list[int]]:
        sid = yield from self._stage_id_op(stage_name, stage_id, **where)
        data = yield Call("GET", f"/stages/{sid}/versions")
        return parsed("versions", lambda d: [int(v) for v in d["versions"]], data)

    def _update_op(
        self, stage_name: str | None, stage_id: str | None, rulesets: RulesetsLike | None, **where: Any
    ) -> Op[Stage]:
        body = {"prioritized_rulesets": rulesets_json(rulesets)}
        sid = yield from self._stage_id_op(stage_name, stage_id, **where)
        data = yield Call("POST", f"/stages/{sid}", json=body)
        return stage_of(data)

    def _set_op(
        self, stage_name: str | None, stage_id: str | None, params: dict[str, Any], **where: Any
    ) -> Op[Stage]:
        sid = yield from self._stage_id_op(stage_name, stage_id, **where)
        data = yield Call("PUT", f"/stages/{sid}", params=params)
        return stage_of(data)

    def _delete_op(self, stage_name: str | None, stage_id: str | None, **where: Any) -> Op[bool]:
        sid = yield from self._stage_id_op(stage_name, stage_id, **where)
        data = yield Call("DELETE", f"/stages/{sid}", missing_ok=True)
        return data is not None and parsed("delete", lambda d: bool(d["deleted"]), data)

    # -- management, sync

    def get_project(self, project_id: str | None = None, name: str | None = None) -> Project | None:
        return self._run(self._project_info_op(project_id, name))

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
    ) -> Stage:
        body = _create_body(stage_type, prioritized_rulesets, description, paused, fail_policy)
        return self._run(self._create_op(name, body, project_id, project_name))

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
        return self._run(self._get_op(stage_name, stage_id, version, project_id, project_name))

    def list_stages(self, project_id: str | None = None, project_name: str | None = None) -> list[Stage]:
        return self._run(self._list_op(project_id, project_name))

    def list_versions(
        self, stage_name: str | None = None, *, stage_id: str | None = None, **where: Any
    ) -> list[int]:
        return self._run(self._versions_op(stage_name, stage_id, **where))

    def update_stage(
        self,
        stage_name: str | None = None,
        *,
        prioritized_rulesets: RulesetsLike,
        stage_id: str | None = None,
        **where: Any,
    ) -> Stage:
        """Store a new version of a central stage."""
        return self._run(self._update_op(stage_name, stage_id, prioritized_rulesets, **where))

    def pause_stage(
        self, stage_name: str | None = None, *, stage_id: str | None = None, **where: Any
    ) -> Stage:
        return self._run(self._set_op(stage_name, stage_id, {"pause": "true"}, **where))

    def resume_stage(
        self, stage_name: str | None = None, *, stage_id: str | None = None, **where: Any
    ) -> Stage:
        return self._run(self._set_op(stage_name, stage_id, {"pause": "false"}, **where))

    def set_fail_policy(
        self,
        stage_name: str | None = None,
        *,
        fail_policy: FailPolicy | str,
        stage_id: str | None = None,
        **where: Any,
    ) -> Stage:
        params = {"fail_policy": FailPolicy(fail_policy).value}
        return self._run(self._set_op(stage_name, stage_id, params, **where))

    def delete_stage(
        self, stage_name: str | None = None, *, stage_id: str | None = None, **where: Any
    ) -> bool:
        return self._run(self._delete_op(stage_name, stage_id, **where))

    # -- management, async

    async def acreate_stage(
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
    ) -> Stage:
        body = _create_body(stage_type, prioritized_rulesets, description, paused, fail_policy)
        return await self._arun(self._create_op(name, body, project_id, project_name))

    async def aget_stage(
        self,
        stage_name: str | None = None,
        *,
        stage_id: str | None = None,
        version: int | None = None,
        project_id: str | None = None,
        project_name: str | None = None,
    ) -> Stage | None:
        return await self._arun(self._get_op(stage_name, stage_id, version, project_id, project_name))

    async def alist_stages(
        self, project_id: str | None = None, project_name: str | None = None
    ) -> list[Stage]:
        return await self._arun(self._list_op(project_id, project_name))

    async def alist_versions(
        self, stage_name: str | None = None, *, stage_id: str | None = None, **where: Any
    ) -> list[int]:
        return await self._arun(self._versions_op(stage_name, stage_id, **where))

    async def aupdate_stage(
        self,
        stage_name: str | None = None,
        *,
        prioritized_rulesets: RulesetsLike,
        stage_id: str | None = None,
        **where: Any,
    ) -> Stage:
        return await self._arun(self._update_op(stage_name, stage_id, prioritized_rulesets, **where))

    async def apause_stage(
        self, stage_name: str | None = None, *, stage_id: str | None = None, **where: Any
    ) -> Stage:
        return await self._arun(self._set_op(stage_name, stage_id, {"pause": "true"}, **where))

    async def aresume_stage(
        self, stage_name: str | None = None, *, stage_id: str | None = None, **where: Any
    ) -> Stage:
        return await self._arun(self._set_op(stage_name, stage_id, {"pause": "false"}, **where))

    async def aset_fail_policy(
        self,
        stage_name: str | None = None,
        *,
        fail_policy: FailPolicy | str,
        stage_id: str | None = None,
        **where: Any,
    ) -> Stage:
        params = {"fail_policy": FailPolicy(fail_policy).value}
        return await self._arun(self._set_op(stage_name, stage_id, params, **where))

    async def adelete_stage(
        self, stage_name: str | None = None, *, stage_id: str | None = None, **where: Any
    ) -> bool:
        return await self._arun(self._delete_op(stage_name, stage_id, **where))

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
        timeout: float = 300.0,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        *,
        fail_policy: FailPolicy | str | None = None,
        shadow: bool = False,
    ) -> Response:
        """Check ``payload`` on the server (Galileo's arguments); never raises for server outages."""
        request = build_request(locals())
        start = time.perf_counter()
        try:
            return _response(self.http.send(self._invoke_call(request)))
        except ServerUnavailableError as exc:
            return self._unavailable(request, exc, start)

    async def ainvoke(
        self,
        payload: PayloadLike,
        prioritized_rulesets: RulesetsLike | None = None,
        project_id: str | None = None,
        project_name: str | None = None,
        stage_id: str | None = None,
        stage_name: str | None = None,
        stage_version: int | None = None,
        timeout: float = 300.0,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        *,
        fail_policy: FailPolicy | str | None = None,
        shadow: bool = False,
    ) -> Response:
        """Async :meth:`invoke`."""
        request = build_request(locals())
        start = time.perf_counter()
        try:
            return _response(await self.http.asend(self._invoke_call(request)))
        except ServerUnavailableError as exc:
            return self._unavailable(request, exc, start)

    def fields_read(self, *args: Any, **kwargs: Any) -> frozenset[str]:
        """Every payload field (:meth:`Protect.fields_read <stageguard.Protect.fields_read>`): the
        server's scorers decide what they read, so adapters send the server the whole payload."""
        return ALL_FIELDS

    @staticmethod
    def _invoke_call(request: Request) -> Call:
        """The budget covers the whole round trip: the server gets most of it for its metrics."""
        body = request.model_dump(mode="json", exclude_none=True)
        body["timeout"] = request.timeout * _SERVER_SHARE
        if not body.get("shadow"):
            body.pop("shadow", None)
        return Call("POST", "/protect/invoke", json=body, timeout=request.timeout)

    def _unavailable(self, request: Request, exc: ServerUnavailableError, start: float) -> Response:
        policy = request.fail_policy or self.fail_policy or FailPolicy.fail_open
        what = "answered unexpectedly" if isinstance(exc, MalformedAnswerError) else "unavailable"
        logger.warning("stageguard server %s, answering %s: %s", what, policy.value, exc)
        return fail_policy_response(
            request.payload,
            f"stageguard server {what}: {exc}",
            policy,
            timed_out=exc.timed_out,
            metadata=request.metadata,
            headers=request.headers,
            execution_time=time.perf_counter() - start,
        )

"""``RemoteStageStore``: stages fetched from a stageguard server, evaluated locally.

``Protect(RemoteStageStore(...))`` runs the built-in scorers in the app's process on stages the
governance team manages centrally. ``generation()`` changes every ``cache_ttl`` seconds, so ``Protect``
re-reads a stage at most that often: new versions and pause/resume reach every app within the TTL
without a redeploy, and an invoke costs no network round trip in between.

When the server is down or slow, the last stage fetched is served (with a warning in the logs); without
one, :class:`~stageguard.errors.StoreUnavailableError` makes the invoke answer under the fail policy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

from ..errors import ProjectNotFoundError, StoreUnavailableError
from ..rules import Ruleset
from ..stages import Project, Stage, StageType
from ..status import FailPolicy
from ..store.base import StageStore
from ._http import Call
from ._wire import env_float, first_project, project_of, stage_of, version_params
from .protect_client import ProtectClient

logger = logging.getLogger("stageguard.client")

DEFAULT_CACHE_TTL = 5.0
MAX_CACHE_TTL = 300.0
DEFAULT_STORE_TIMEOUT = 2.0
_DEFAULT_PROJECT = "default"  # Protect's name for "no project given"
_LAST_KNOWN_MAX = 1024
_WARN_EVERY = 30.0


class RemoteStageStore(StageStore):
    """The stage store of a stageguard server (``STAGEGUARD_URL``, ``STAGEGUARD_API_KEY``).

    ``cache_ttl`` (``STAGEGUARD_CACHE_TTL``, default 5 s, at most 300 s; 0 disables caching) bounds
    how stale a stage may be. ``timeout`` (``STAGEGUARD_TIMEOUT``, default 2 s) bounds each fetch,
    retries included; after a failed fetch the server is left alone for ``outage_backoff`` seconds
    (fetches fail at once), so a dead server doesn't stall invokes. The project ``default`` means the API
    key's own project.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        cache_ttl: float | None = None,
        timeout: float | None = None,
        outage_backoff: float = 2.0,
        client: ProtectClient | None = None,
    ) -> None:
        if cache_ttl is None:
            cache_ttl = env_float("STAGEGUARD_CACHE_TTL", DEFAULT_CACHE_TTL)
        if not 0 <= cache_ttl <= MAX_CACHE_TTL:
            raise ValueError(f"cache_ttl must be between 0 and {MAX_CACHE_TTL:g} seconds, got {cache_ttl}")
        if timeout is None:
            timeout = env_float("STAGEGUARD_TIMEOUT", DEFAULT_STORE_TIMEOUT)
        self.cache_ttl = cache_ttl
        self.client = client or ProtectClient(url, api_key, timeout=timeout)
        self.outage_backoff = outage_backoff
        self._down_until = -float("inf")
        self._outage: StoreUnavailableError | None = None
        self._writes = 0
        self._projects: dict[tuple[str, str], Project] = {}
        self._last_known: OrderedDict[Hashable, Stage] = OrderedDict()
        self._warned: dict[Hashable, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> RemoteStageStore:
        return cls()

    def __repr__(self) -> str:
        return f"RemoteStageStore({self.client.http.url!r}, cache_ttl={self.cache_ttl:g})"

    # -- caching

    def generation(self) -> object:
        if self.cache_ttl <= 0:
            return object()
        with self._lock:
            return (int(time.monotonic() / self.cache_ttl), self._writes)

    def _wrote(self) -> None:
        with self._lock:
            self._writes += 1

    def _remember(self, key: Hashable, stage: Stage | None) -> None:
        with self._lock:
            self._warned.pop(key, None)
            if stage is None:
                self._last_known.pop(key, None)
                return
            self._last_known[key] = stage
            self._last_known.move_to_end(key)
            while len(self._last_known) > _LAST_KNOWN_MAX:
                self._last_known.popitem(last=False)

    def _fallback(self, key: Hashable, exc: StoreUnavailableError) -> Stage:
        with self._lock:
            stage = self._last_known.get(key)
            if stage is None:
                raise exc
            now = time.monotonic()
            warn = now - self._warned.get(key, -_WARN_EVERY) >= _WARN_EVERY
            if warn:
                self._warned[key] = now
        if warn:
            logger.warning(
                "stageguard server unavailable, serving the last known version (v%s) of stage %r: %s",
                stage.version,
                stage.name,
                exc,
            )
        return stage

    def _read(self, call: Call) -> Any:
        """A read; after a failure, reads fail at once for ``outage_backoff`` s (a dead or blackholed
        server must not stall every invoke for a time-out)."""
        with self._lock:
            outage = self._outage if time.monotonic() < self._down_until else None
        if outage is not None:
            raise outage
        try:
            return self.client.http.send(call)
        except StoreUnavailableError as exc:
            with self._lock:
                self._down_until, self._outage = time.monotonic() + self.outage_backoff, exc
            raise

    # -- projects

    def create_project(self, name: str) -> Project:
        raise ProjectNotFoundError(
            f"project {name!r} is not visible to this API key: on a server, projects come with their keys "
            f"(stageguard keys create --project {name} --role admin)"
        )

    def get_project(self, *, project_id: str | None = None, name: str | None = None) -> Project | None:
        if project_id is None and name is None:
            raise ValueError("give a project id or name")
        key = ("id", str(project_id)) if project_id is not None else ("name", str(name))
        with self._lock:
            cached = self._projects.get(key)
        if cached is not None:  # projects never change name or id
            return cached
        if project_id is not None:
            data = self._read(Call("GET", f"/projects/{project_id}", missing_ok=True))
            project = project_of(data) if data is not None else None
        else:
            project = first_project(self._read(Call("GET", "/projects", params={"project_name": name})))
            if project is None and name == _DEFAULT_PROJECT:
                project = first_project(self._read(Call("GET", "/projects")))  # the key's own project
        if project is not None:
            with self._lock:
                self._projects[key] = project
        return project

    def list_projects(self) -> list[Project]:
        data = self.client.http.send(Call("GET", "/projects/all"))
        if not isinstance(data, list):
            return [project_of(data)]  # raises: not a list of projects
        return [project_of(item) for item in data]

    # -- stages

    def create_stage(
        self,
        project_id: str,
        name: str,
        *,
        stage_type: StageType = StageType.local,
        prioritized_rulesets: Sequence[Ruleset] | None = None,
        description: str | None = None,
        paused: bool = False,
        fail_policy: FailPolicy = FailPolicy.fail_open,
    ) -> Stage:
        stage = self.client.create_stage(
            name,
            stage_type=stage_type,
            prioritized_rulesets=prioritized_rulesets,
            description=description,
            paused=paused,
            fail_policy=fail_policy,
            project_id=project_id,
        )
        self._wrote()
        return stage

    def get_stage(
        self,
        project_id: str | None,
        *,
        stage_id: str | None = None,
        name: str | None = None,
        version: int | None = None,
    ) -> Stage | None:
        key = (project_id, stage_id, name, version)
        if stage_id is not None and project_id is None:
            call = Call("GET", f"/stages/{stage_id}", params=version_params(version), missing_ok=True)
        elif project_id is not None and (stage_id is not None or name is not None):
            params = {"stage_id": stage_id} if stage_id is not None else {"stage_name": name}
            call = Call(
                "GET",
                f"/projects/{project_id}/stages",
                params={**params, **version_params(version)},
                missing_ok=True,
            )
        else:
            raise ValueError("give a stage id, or a project and a stage name")
        try:
            data = self._read(call)
            stage = stage_of(data) if data is not None else None
        except StoreUnavailableError as exc:
            return self._fallback(key, exc)
        self._remember(key, stage)
        return stage

    def list_stages(self, project_id: str) -> list[Stage]:
        return self.client.list_stages(project_id=project_id)

    def list_versions(self, stage_id: str) -> list[int]:
        return self.client.list_versions(stage_id=stage_id)

    def update_stage(self, stage_id: str, prioritized_rulesets: Sequence[Ruleset]) -> Stage:
        stage = self.client.update_stage(stage_id=stage_id, prioritized_rulesets=prioritized_rulesets)
        self._wrote()
        return stage

    def set_paused(self, stage_id: str, paused: bool) -> Stage:
        client = self.client
        stage = client.pause_stage(stage_id=stage_id) if paused else client.resume_stage(stage_id=stage_id)
        self._wrote()
        return stage

    def set_fail_policy(self, stage_id: str, fail_policy: FailPolicy) -> Stage:
        stage = self.client.set_fail_policy(stage_id=stage_id, fail_policy=fail_policy)
        self._wrote()
        return stage

    def delete_stage(self, stage_id: str) -> bool:
        deleted = self.client.delete_stage(stage_id=stage_id)
        self._wrote()
        return deleted

    def close(self) -> None:
        self.client.close()

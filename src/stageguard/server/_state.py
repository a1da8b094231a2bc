"""What one server process holds: its settings, databases, engine and authenticator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from ..protect import Protect
from ..rules import Ruleset
from ..stages import Stage
from ._allowlist import Allowlist
from ._auth import Authenticator, Principal
from ._db import Databases
from ._errors import ApiError
from ._runtime import InvokeRunner, KeyGate
from ._settings import ServerSettings


@dataclass
class ServerState:
    settings: ServerSettings
    databases: Databases
    protect: Protect
    auth: Authenticator
    allowlist: Allowlist
    runner: InvokeRunner
    gate: KeyGate

    def stage(self, caller: Principal, stage_id: str, version: int | None = None) -> Stage:
        """The caller's stage (404 for missing stages and other projects' stages alike)."""
        stage = self.databases.stages.get_stage(caller.project_id, stage_id=stage_id, version=version)
        if stage is None:
            what = f"stage {stage_id}" + (f" version {version}" if version is not None else "")
            raise ApiError(
                404, f"{what} not found in project {caller.project_name!r}", code="stage_not_found"
            )
        return stage

    def check_subscriptions(self, rulesets: Sequence[Ruleset] | None) -> None:
        """422 when a subscription URL is not allowed by the webhook allowlist."""
        problems = self.allowlist.check_rulesets(rulesets)
        if problems:
            raise ApiError(
                422,
                [{"loc": ["body", *loc], "msg": msg, "type": "webhook_not_allowed"} for loc, msg in problems],
            )


async def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.stageguard
    return state


State = Annotated[ServerState, Depends(_state)]

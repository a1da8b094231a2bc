"""Every decision becomes a LangChain custom event, so it shows in ``astream_events`` and in traces."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManager, BaseCallbackManager, CallbackManager
from langchain_core.runnables import RunnableConfig, ensure_config
from langchain_core.runnables.config import (
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    patch_config,
)

from ..response import Response

EVENT_NAME = "stageguard_decision"
"""Name of the custom event every guard dispatches for each decision."""


def decision_data(response: Response, *, where: str, stage: str | None) -> dict[str, Any]:
    """What a trace needs to show about one decision (JSON-friendly)."""
    meta = response.stage_metadata
    action = response.shadow_action_result if response.shadow else response.action_result
    return {
        "stage": meta.stage_name if meta else stage,
        "stage_version": meta.stage_version if meta else None,
        "where": where,
        "status": response.status.value,
        "triggered_rules": [
            {
                "metric": rule.metric,
                "operator": rule.operator.value,
                "target_value": rule.target_value,
                "value": rule.value,
            }
            for rule in response.triggered_rules
        ],
        "action": action.type.value if action else None,
        "applied": response.applied,
        "shadow": response.shadow,
        "failure": response.failure.reason if response.failure else None,
        "execution_time": response.trace_metadata.execution_time,
        "trace_id": response.trace_metadata.id,
    }


def unobserved(config: RunnableConfig | None) -> RunnableConfig | None:
    """The config to run with directly when no callback handler can see a run made here, else None.

    No tracer, ``astream_events`` or user handler listening means a guard can skip opening a run of its
    own: about 100 µs of LangChain bookkeeping that nobody would see. A config handed down by a parent
    run already holds every handler the environment adds; a top-level call is configured here first.
    """
    callbacks = config.get("callbacks") if config is not None else None
    if isinstance(callbacks, BaseCallbackManager):
        return config if not callbacks.handlers else None
    config = ensure_config(config)
    manager = get_callback_manager_for_config(config)
    return None if manager.handlers else patch_config(config, callbacks=manager)


def listening(config: RunnableConfig | None) -> RunnableConfig | None:
    """The run config if some handler would receive an event (building the event costs time)."""
    config = config if config is not None else ensure_config()
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        return config if callbacks.handlers and callbacks.parent_run_id is not None else None
    return None  # a plain handler list only exists outside a run: there is no run to attach to


def report(data: dict[str, Any], config: RunnableConfig) -> None:
    """Dispatch the decision as a custom event of the current run (see :func:`listening`)."""
    manager: CallbackManager = get_callback_manager_for_config(config)
    if manager.parent_run_id is not None:
        manager.on_custom_event(EVENT_NAME, data, run_id=manager.parent_run_id)


async def areport(data: dict[str, Any], config: RunnableConfig) -> None:
    """Async :func:`report` (async handlers are awaited, not scheduled)."""
    manager: AsyncCallbackManager = get_async_callback_manager_for_config(config)
    if manager.parent_run_id is not None:
        await manager.on_custom_event(EVENT_NAME, data, run_id=manager.parent_run_id)

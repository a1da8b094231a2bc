"""A Guard hands its stream back without a generator layer of its own: every way in streams the same.

Standalone and in a chain, sync and async, with nobody listening (the guard opens no run) and with a
handler attached (a traced run of the guard): the same chunks, the same check, the run seen when watched.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.output_parsers import StrOutputParser

from stageguard import Protect
from stageguard.langchain import Guard, GuardrailTriggered


class Runs(BaseCallbackHandler):
    """Names of the chain runs that started."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.started.append(kwargs.get("name") or "")


async def _chunks(runnable: Any, value: Any, config: Any, use_async: bool) -> list[Any]:
    if use_async:
        return [chunk async for chunk in runnable.astream(value, config)]
    return list(runnable.stream(value, config))


@pytest.mark.parametrize("use_async", [False, True])
@pytest.mark.parametrize("watched", [False, True])
async def test_chain_streams_alike_watched_or_not(
    protect: Protect, rules: Any, chat: Any, use_async: bool, watched: bool
) -> None:
    runs = Runs()
    config = {"callbacks": [runs]} if watched else None
    clean = (
        chat("all good here")
        | StrOutputParser()
        | Guard(prioritized_rulesets=rules.mask(), field="output", protect=protect)
    )
    chunks = await _chunks(clean, "hi", config, use_async)
    assert len(chunks) > 1 and "".join(chunks) == "all good here"  # unchanged: the model's own chunking
    masked = (
        chat("the secret is out")
        | StrOutputParser()
        | Guard(prioritized_rulesets=rules.mask(), field="output", protect=protect)
    )
    changed = await _chunks(masked, "hi", config, use_async)
    assert len(changed) == 1 and "secret" not in changed[0]  # changed: one checked chunk
    guard_runs = [name for name in runs.started if name.startswith("Guard[")]
    assert len(guard_runs) == (2 if watched else 0)


@pytest.mark.parametrize("use_async", [False, True])
async def test_standalone_guard_streams_and_raises_when_read(
    protect: Protect, rules: Any, use_async: bool
) -> None:
    guard = Guard(prioritized_rulesets=rules.mask(), protect=protect)
    [masked] = await _chunks(guard, "a secret plan", None, use_async)
    assert masked.startswith("a ") and masked.endswith(" plan") and "secret" not in masked
    raising = Guard(prioritized_rulesets=rules.block(), protect=protect, on_trigger="raise")
    stream = raising.astream("the secret") if use_async else raising.stream("the secret")
    with pytest.raises(GuardrailTriggered):  # the check runs as the stream is read
        if use_async:
            [chunk async for chunk in stream]  # type: ignore[union-attr]
        else:
            list(stream)  # type: ignore[arg-type]

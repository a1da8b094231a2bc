"""Shared fixtures: an in-memory Protect (also one that keeps the payloads it checks), and custom metrics
that are removed after each test."""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import stageguard
from stageguard import Payload, Protect, SQLiteStageStore, register_metric
from stageguard.metrics import remove_custom_metric
from stageguard.scorers.registry import default_registry

EXIT_DEADLINE = 120  # seconds


@pytest.hookimpl(trylast=True)
def pytest_unconfigure() -> None:
    """A thread the interpreter joins at exit and that never ends would hang the run after its summary
    (a CI run once did, until its time limit): past ``EXIT_DEADLINE``, print every thread's stack and
    exit with status 1."""
    faulthandler.dump_traceback_later(EXIT_DEADLINE, exit=True, file=sys.__stderr__)


@pytest.fixture
def protect() -> Iterator[Protect]:
    instance = Protect(SQLiteStageStore(":memory:"))
    yield instance
    instance.close()


@pytest.fixture
def metric() -> Iterator[Callable[..., str]]:
    """Register a custom metric for one test: ``metric("name", fn, kind=...)``."""
    names: list[str] = []

    def make(name: str, fn: Callable[..., Any], **kwargs: Any) -> str:
        register_metric(name, fn, replace=True, **kwargs)
        names.append(name)
        return name

    yield make
    for name in names:
        default_registry.unregister(name)
        remove_custom_metric(name)


_GALILEO_ENV = (
    "GALILEO_PROJECT",
    "GALILEO_PROJECT_NAME",
    "GALILEO_PROJECT_ID",
    "GALILEO_STAGE_NAME",
    "GALILEO_STAGE_ID",
    "GALILEO_STAGE_VERSION",
)


@pytest.fixture
def api(protect: Protect, monkeypatch: pytest.MonkeyPatch) -> Iterator[Protect]:
    """The functional API (``invoke_protect`` ...) on the in-memory ``protect``, no Galileo variables set."""
    import stageguard

    for name in _GALILEO_ENV:
        monkeypatch.delenv(name, raising=False)
    stageguard.set_default_protect(protect)
    yield protect
    stageguard.set_default_protect(None)


class SpyProtect(Protect):
    """A real in-memory Protect that keeps every payload it is asked to check (what adapters send)."""

    def __init__(self) -> None:
        super().__init__(SQLiteStageStore(":memory:"))
        self.payloads: list[Payload] = []

    def invoke(self, payload: Any, *args: Any, **kwargs: Any) -> Any:
        self.payloads.append(payload)
        return super().invoke(payload, *args, **kwargs)

    async def ainvoke(self, payload: Any, *args: Any, **kwargs: Any) -> Any:
        self.payloads.append(payload)
        return await super().ainvoke(payload, *args, **kwargs)


@pytest.fixture
def spy_protect() -> Iterator[Callable[[], SpyProtect]]:
    """``spy_protect()``: a new :class:`SpyProtect` (closed after the test)."""
    made: list[SpyProtect] = []

    def make() -> SpyProtect:
        made.append(SpyProtect())
        return made[-1]

    yield make
    for instance in made:
        instance.close()


@pytest.fixture
def slow_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """``(class, attribute)`` of every read by stageguard's code that took pydantic's slow path
    (``BaseModel.__getattr__``: a private attribute read as ``self._name``, or a missing attribute), about
    1.7 µs each; models read on hot paths take their private attributes from ``__pydantic_private__``
    (``stageguard._build.FastPrivateAttributes``)."""
    reads: list[tuple[str, str]] = []
    original = BaseModel.__getattr__
    package = str(Path(stageguard.__file__).parent)

    def counting(self: BaseModel, name: str) -> Any:
        if sys._getframe(1).f_code.co_filename.startswith(package):
            reads.append((type(self).__name__, name))
        return original(self, name)

    monkeypatch.setattr(BaseModel, "__getattr__", counting)
    return reads

"""``_environ.getenv``: the invoke's fast read of environment variables agrees with ``os.environ.get``
whatever is set, changed or removed through ``os.environ``."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stageguard._environ import getenv

NAMES = ["STAGEGUARD_TEST_ENV_A", "STAGEGUARD_TEST_ENV_B", "STAGEGUARD_TEST_ENV_É"]
values = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=20)
steps = st.lists(st.tuples(st.sampled_from(NAMES), st.none() | values), max_size=12)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_getenv_agrees_with_os_environ(changes: list[tuple[str, str | None]]) -> None:
    try:
        for name, value in changes:
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
            for each in NAMES:
                assert getenv(each) == os.environ.get(each)
    finally:
        for name in NAMES:
            os.environ.pop(name, None)


def test_a_plain_dict_as_os_environ_is_read_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", {"STAGEGUARD_TEST_ENV_A": "x"})
    assert getenv("STAGEGUARD_TEST_ENV_A") == "x" and getenv("STAGEGUARD_TEST_ENV_B") is None


def test_invoke_reads_the_project_variables_at_each_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from stageguard import Protect, SQLiteStageStore

    protect = Protect(SQLiteStageStore(":memory:"))
    for project in ("one", "two"):
        protect.create_stage("guard", project_name=project, stage_type="central", prioritized_rulesets=[])
    monkeypatch.delenv("GALILEO_PROJECT_ID", raising=False)
    monkeypatch.delenv("GALILEO_PROJECT_NAME", raising=False)
    ids = {project: protect.resolve_project(project_name=project).id for project in ("one", "two")}
    for project in ("one", "two", "one"):
        monkeypatch.setenv("GALILEO_PROJECT", project)
        metadata = protect.invoke("hello", stage_name="guard").stage_metadata
        assert metadata is not None and metadata.project_id == ids[project]
    protect.close()

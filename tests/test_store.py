"""The SQLite stage store: versions, pause, local vs central, atomic writes, concurrent writers."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from stageguard import Rule, Ruleset, SQLiteStageStore, StageConflictError, StageNotFoundError, StageType
from stageguard.store.sqlite import default_db_path


def _rulesets(threshold: float) -> list[Ruleset]:
    return [Ruleset(rules=[Rule(metric="input_toxicity", operator="gt", target_value=threshold)])]


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStageStore:
    return SQLiteStageStore(tmp_path / "stages.db")


def test_central_stage_versions_are_immutable(store: SQLiteStageStore) -> None:
    project = store.create_project("p")
    stage = store.create_stage(
        project.id, "s", stage_type=StageType.central, prioritized_rulesets=_rulesets(0.1)
    )
    assert stage.version == 1
    v2 = store.update_stage(stage.id, _rulesets(0.2))
    v3 = store.update_stage(stage.id, [])
    assert (v2.version, v3.version) == (2, 3)
    assert store.list_versions(stage.id) == [1, 2, 3]
    assert store.get_stage(project.id, name="s").prioritized_rulesets == []  # latest
    pinned = store.get_stage(project.id, name="s", version=1)
    assert pinned is not None and pinned.version == 1
    assert pinned.prioritized_rulesets[0].rules[0].target_value == 0.1
    assert store.get_stage(project.id, name="s", version=9) is None


def test_get_returns_none_when_missing(store: SQLiteStageStore) -> None:
    project = store.create_project("p")
    assert store.get_stage(project.id, name="nope") is None
    assert store.get_stage(project.id, stage_id="00000000-0000-4000-8000-000000000000") is None
    assert store.get_project(name="other") is None


def test_stage_by_id_is_scoped_to_its_project(store: SQLiteStageStore) -> None:
    a, b = store.create_project("a"), store.create_project("b")
    stage = store.create_stage(a.id, "s")
    assert store.get_stage(a.id, stage_id=stage.id) is not None
    assert store.get_stage(b.id, stage_id=stage.id) is None


def test_local_stage_rules(store: SQLiteStageStore) -> None:
    project = store.create_project("p")
    with pytest.raises(StageConflictError, match="local stages are created without rulesets"):
        store.create_stage(project.id, "bad", stage_type=StageType.local, prioritized_rulesets=_rulesets(0.1))
    local = store.create_stage(project.id, "loc")
    assert local.type is StageType.local and local.version is None
    with pytest.raises(StageConflictError, match="is local"):
        store.update_stage(local.id, _rulesets(0.1))


def test_names_unique_per_project(store: SQLiteStageStore) -> None:
    a, b = store.create_project("a"), store.create_project("b")
    store.create_stage(a.id, "s")
    store.create_stage(b.id, "s")
    with pytest.raises(StageConflictError, match="already exists"):
        store.create_stage(a.id, "s")
    with pytest.raises(StageConflictError):
        store.create_project("a")


def test_pause_resume_fail_policy_delete(store: SQLiteStageStore) -> None:
    project = store.create_project("p")
    stage = store.create_stage(
        project.id, "s", stage_type=StageType.central, prioritized_rulesets=_rulesets(0.1)
    )
    assert store.set_paused(stage.id, True).paused
    assert not store.set_paused(stage.id, False).paused
    assert store.set_fail_policy(stage.id, "fail_closed").fail_policy == "fail_closed"
    assert store.delete_stage(stage.id)
    assert store.get_stage(project.id, stage_id=stage.id) is None
    assert store.list_versions(stage.id) == []
    with pytest.raises(StageNotFoundError):
        store.set_paused(stage.id, True)


def test_failed_write_leaves_nothing_half_written(
    store: SQLiteStageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = store.create_project("p")
    stage = store.create_stage(
        project.id, "s", stage_type=StageType.central, prioritized_rulesets=_rulesets(0.1)
    )
    # Make the second statement of the update (moving latest_version) fail after the version row was inserted.
    store._conn.execute(
        "CREATE TEMP TRIGGER fail_update BEFORE UPDATE OF latest_version ON stages "
        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    with pytest.raises(sqlite3.DatabaseError, match="disk on fire"):
        store.update_stage(stage.id, _rulesets(0.5))
    assert store.list_versions(stage.id) == [1]
    assert store.get_stage(project.id, name="s").version == 1


def test_concurrent_updates_from_threads(store: SQLiteStageStore, tmp_path: Path) -> None:
    project = store.create_project("p")
    stage = store.create_stage(
        project.id, "s", stage_type=StageType.central, prioritized_rulesets=_rulesets(0.1)
    )
    stores = [SQLiteStageStore(tmp_path / "stages.db") for _ in range(4)]  # separate connections too

    def work(s: SQLiteStageStore) -> None:
        for _ in range(15):
            s.update_stage(stage.id, _rulesets(0.3))

    threads = [threading.Thread(target=work, args=(s,)) for s in [*stores, store, store]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.list_versions(stage.id) == list(range(1, 1 + 1 + 15 * 6))


def _update_in_process(path: str, stage_id: str, count: int) -> None:
    s = SQLiteStageStore(path)
    for _ in range(count):
        s.update_stage(stage_id, _rulesets(0.4))


def test_concurrent_updates_from_processes(store: SQLiteStageStore) -> None:
    project = store.create_project("p")
    stage = store.create_stage(
        project.id, "s", stage_type=StageType.central, prioritized_rulesets=_rulesets(0.1)
    )
    ctx = multiprocessing.get_context("spawn")
    processes = [ctx.Process(target=_update_in_process, args=(store.path, stage.id, 20)) for _ in range(4)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
        assert p.exitcode == 0
    assert store.list_versions(stage.id) == list(range(1, 82))


def test_generation_notices_other_connections(store: SQLiteStageStore, tmp_path: Path) -> None:
    other = SQLiteStageStore(tmp_path / "stages.db")
    before = store.generation()
    assert store.generation() == before
    other.create_project("x")
    assert store.generation() != before


def test_default_path_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STAGEGUARD_DB", str(tmp_path / "x.db"))
    assert default_db_path() == tmp_path / "x.db"
    monkeypatch.delenv("STAGEGUARD_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_db_path() == tmp_path / "stageguard" / "stages.db"


def test_memory_store() -> None:
    store = SQLiteStageStore(":memory:")
    project = store.create_project("p")
    assert store.create_stage(project.id, "s").name == "s"


def test_update_returns_the_version_it_wrote(store: SQLiteStageStore, tmp_path: Path) -> None:
    project = store.create_project("p")
    stage = store.create_stage(
        project.id, "s", stage_type=StageType.central, prioritized_rulesets=_rulesets(0.1)
    )
    other = SQLiteStageStore(tmp_path / "stages.db")
    written: list[int] = []
    lock = threading.Lock()

    def work(s: SQLiteStageStore) -> None:
        for _ in range(10):
            version = s.update_stage(stage.id, _rulesets(0.2)).version
            with lock:
                written.append(version)

    threads = [threading.Thread(target=work, args=(s,)) for s in (store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(written) == list(range(2, 22))

"""The stageguard CLI: stages, check, score, clear one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from stageguard.cli import main

RULESETS = [
    {
        "description": "long inputs",
        "rules": [{"metric": "cli_len", "operator": "gt", "target_value": 10}],
        "action": {"type": "OVERRIDE", "choices": ["too long"]},
    }
]


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "cli.db")


@pytest.fixture
def cli_len(metric: Callable[..., str]) -> str:
    return metric("cli_len", lambda p: float(len(p.input or "")), kind="number")


def run(db: str, *args: str) -> int:
    return main(["--db", db, *args])


def test_stage_lifecycle(db: str, tmp_path: Path, cli_len: str, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULESETS))
    assert run(db, "stages", "create", "guard", "--file", str(rules), "--description", "d") == 0
    assert "created guard" in capsys.readouterr().out
    yaml_rules = tmp_path / "rules.yaml"
    yaml_rules.write_text(
        "prioritized_rulesets:\n  - rules:\n      - {metric: cli_len, operator: gt, target_value: 100}\n"
        "    action: {type: OVERRIDE, choices: [way too long]}\n"
    )
    assert run(db, "stages", "update", "guard", "--file", str(yaml_rules)) == 0
    assert "v2" in capsys.readouterr().out
    assert run(db, "stages", "versions", "guard") == 0
    assert capsys.readouterr().out.strip() == "1 2"
    assert run(db, "stages", "get", "guard", "--version", "1") == 0
    assert json.loads(capsys.readouterr().out)["prioritized_rulesets"][0]["action"]["choices"] == ["too long"]
    assert run(db, "stages", "list") == 0
    assert "guard" in capsys.readouterr().out
    assert run(db, "stages", "list", "--json") == 0
    assert json.loads(capsys.readouterr().out)[0]["version"] == 2

    assert run(db, "check", "--stage", "guard", "--version", "1", "a rather long text") == 0
    out = capsys.readouterr().out
    assert "TRIGGERED" in out and "text: too long" in out and "cli_len gt 10" in out
    assert run(db, "check", "--stage", "guard", "--json", "short") == 0
    assert json.loads(capsys.readouterr().out)["status"] == "NOT_TRIGGERED"

    assert run(db, "stages", "pause", "guard") == 0
    assert run(db, "check", "--stage", "guard", "x" * 200) == 0
    assert "PAUSED" in capsys.readouterr().out
    assert run(db, "stages", "resume", "guard") == 0
    assert run(db, "stages", "delete", "guard") == 0
    capsys.readouterr()
    assert run(db, "stages", "get", "guard") == 2
    assert capsys.readouterr().err.strip() == "stageguard: error: stage 'guard' does not exist"


def test_local_stage_check_with_rulesets(
    db: str, tmp_path: Path, cli_len: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"prioritized_rulesets": RULESETS}))
    assert run(db, "stages", "create", "loc", "--type", "local") == 0
    assert run(db, "check", "--stage", "loc", "--rulesets", str(rules), "--shadow", "a long long text") == 0
    out = capsys.readouterr().out
    assert "shadow" in out and "text: a long long text" in out


def test_errors_are_one_line(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"rules": [{"metric": "input_tone", "operator": "gt", "target_value": 0.3}]}]')
    assert run(db, "stages", "create", "g", "--file", str(bad)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not support operator 'gt'" in err and "Traceback" not in err
    assert run(db, "stages", "create", "g", "--file", str(tmp_path / "missing.json")) == 2
    assert "no such file" in capsys.readouterr().err
    assert run(db, "check", "--stage", "nope", "hello") == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(ValueError):
        main(["--db", db, "--debug", "stages", "create", "g", "--file", str(bad)])


def test_score_writes_values(
    db: str, tmp_path: Path, cli_len: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "abc", "label": 1}\n\n{"input": "abcdef"}\n')
    out = tmp_path / "out.jsonl"
    assert run(db, "score", "--metric", "cli_len", str(data), "--out", str(out)) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"text": "abc", "label": 1, "value": 3.0}, {"input": "abcdef", "value": 6.0}]


def test_score_errors(db: str, tmp_path: Path, cli_len: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "abc"}\n{"text": broken\n')
    assert run(db, "score", "--metric", "cli_len", str(data)) == 1  # scored, with a row error
    assert f"{data}:2: not valid JSON" in capsys.readouterr().err
    assert run(db, "score", "--metric", "what_metric", str(data)) == 2
    assert "unknown metric 'what_metric'" in capsys.readouterr().err
    assert run(db, "score", "--metric", "cli_len", str(tmp_path / "none.jsonl")) == 2
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"label": 1}\n')
    assert run(db, "score", "--metric", "cli_len", str(empty)) == 1
    assert "empty.jsonl:1: payload is empty" in capsys.readouterr().err


def test_score_reports_rows_missing_required_fields(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"output": "a"}\n{"input": "q", "output": "a"}\n')
    assert run(db, "score", "--metric", "context_adherence", str(data)) == 1  # a row could not be scored
    missing, from_input = map(json.loads, capsys.readouterr().out.splitlines())
    assert missing["value"] is None and "input" in missing["error"]
    assert from_input["value"] is not None  # input + output suffice: the context is read from the input


def test_entry_point_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stageguard.cli", "--db", str(tmp_path / "x.db"), "stages", "list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "no stages"

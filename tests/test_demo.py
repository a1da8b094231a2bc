"""``stageguard demo`` end to end: the three guarded apps decide what the README says they do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("langchain")
pytest.importorskip("llama_index.core")

from stageguard.cli import main
from stageguard.demo import run_demo


def _returned(rows: list[list[str]], app: str, case: str) -> str:
    return next(r[6] for r in reversed(rows) if r[0] == app and r[1] == case)


def test_demo_decisions(tmp_path: Path) -> None:
    rows = run_demo(tmp_path / "demo.db")
    assert _returned(rows, "LangChain RAG", "benign question") == "The store opens at 9am on Saturday."
    assert _returned(rows, "LangChain RAG", "prompt injection").startswith("I can't follow instructions")
    pii = [r for r in rows if r[1] == "PII in the prompt" and r[2].startswith("user-input")]
    assert pii[0][5] == "REDACT" and "ssn" in pii[0][3] and "email" in pii[0][3]
    assert pii[0][6] == "My SSN is <SSN> and my email is <EMAIL>. Refunds?"  # what the app went on with
    assert (
        _returned(rows, "LangChain RAG", "answer not in the context")
        == "I couldn't find that in our documents."
    )
    assert _returned(rows, "LangChain agent", "failing tool").startswith("Our systems are having trouble")
    assert (
        _returned(rows, "LangChain agent", "blocked tool call")
        == "This action needs a human: it was not run."
    )
    assert _returned(rows, "LlamaIndex RAG", "benign question").startswith("Standard shipping takes")
    assert _returned(rows, "LlamaIndex RAG", "toxic model answer").startswith("Sorry, I can't phrase")
    paused = rows[-1]
    assert paused[4] == "paused" and paused[6] == "My system prompt is: ..."


def test_demo_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(tmp_path / "cli-demo.db"), "demo"]) == 0
    out = capsys.readouterr().out
    assert "stageguard demo" in out and "guard decisions triggered" in out


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_demo_fits_the_terminal_when_piped(tmp_path: Path, columns: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEGUARD_")}
    result = subprocess.run(
        [sys.executable, "-m", "stageguard", "demo"],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": str(columns)},
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    table = result.stdout.splitlines()[:-1]  # the closing line names the store's path
    assert max(len(line) for line in table) <= columns
    assert "<SSN>" in result.stdout and "guard decisions triggered" in result.stdout

"""``stageguard demo`` end to end: the three guarded apps decide what the README says they do."""

from __future__ import annotations

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

"""Shared by the CLI and evaluation tests: the CLI on a pseudo-terminal, and the rulesets evaluated."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

INJECTION = {
    "description": "injection",
    "rules": [{"metric": "prompt_injection", "operator": "gte", "target_value": 0.5}],
    "action": {"type": "OVERRIDE", "choices": ["blocked"]},
}
TOXIC = {
    "description": "toxicity",
    "rules": [{"metric": "input_toxicity", "operator": "gt", "target_value": 0.5}],
    "action": {"type": "OVERRIDE", "choices": ["be nice"]},
}
PII = {
    "description": "pii",
    "rules": [{"metric": "input_pii", "operator": "not_empty"}],
    "action": {"type": "REDACT"},
}


def on_a_terminal(args: list[str], cwd: Path, *, stdin_tty: bool, stdin: bytes = b"") -> tuple[int, str, str]:
    """Run the CLI with stderr (or stdin) on a pseudo-terminal; returns (exit code, stdout, terminal text)."""
    controller, terminal = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STAGEGUARD_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "stageguard", *args],
        cwd=cwd,
        stdin=terminal if stdin_tty else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stdin_tty else terminal,
        env={**environ, "COLUMNS": "80", "TERM": "xterm"},
    )
    os.close(terminal)
    if stdin_tty:
        os.write(controller, stdin)
    seen = b""
    while True:  # read the terminal until the process closes it
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    out, err = process.communicate(timeout=120)
    os.close(controller)
    return process.returncode, out.decode(), (err or b"").decode() + seen.decode(errors="replace")

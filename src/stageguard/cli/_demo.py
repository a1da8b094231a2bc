"""``stageguard demo``: a short tour of stages and the engine on the embedded defaults."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any


def add_parser(commands: Any) -> None:
    demo = commands.add_parser("demo", help="run the demo (embedded store, built-in scorers, no network)")
    demo.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        run_demo(Path(args.db) if args.db else Path(tmp) / "demo.db")
    return 0

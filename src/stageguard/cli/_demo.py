"""``stageguard demo``: a short tour of stages and the engine on the embedded defaults."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from ._db import open_store

# What the demo's apps import: checked first, so a missing extra is one line with its install command.
_NEEDS = ("langchain_core", "langchain.agents", "langgraph", "llama_index.core")


def add_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the demo (a throwaway store unless --db, built-in scorers, no network)",
        description="Three guarded apps (LangChain RAG, LangChain agent, LlamaIndex RAG) on fake models. "
        'Needs: pip install "stageguard[all]".',
    )
    demo.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    for module in _NEEDS:
        importlib.import_module(module)
    from ..demo import run_demo

    if args.db:  # only an explicit --db: the demo never writes its stages into $STAGEGUARD_DB
        run_demo(open_store(args.db))
        return 0
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run_demo(Path(tmp) / "demo.db")
    return 0

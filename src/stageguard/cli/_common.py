"""Helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._db import chosen_db, open_store

if TYPE_CHECKING:  # imported when a command runs: ``--help`` doesn't load the engine
    from ..protect import Protect


def protect_from(args: argparse.Namespace) -> Protect:
    """``--db`` wins; else a server at ``$STAGEGUARD_URL``; else ``$STAGEGUARD_DB`` or the default file."""
    from ..api import protect_from_env
    from ..protect import Protect

    if getattr(args, "db", None) or not os.environ.get("STAGEGUARD_URL"):
        db = chosen_db(args)
        if db is not None:
            return Protect(open_store(db))
    return protect_from_env()


def read_structured(path: str) -> Any:
    """JSON or YAML (by extension) from ``path``; ``-`` reads JSON from stdin."""
    import sys

    if path == "-":
        return json.loads(sys.stdin.read())
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError("reading YAML needs PyYAML: pip install 'stageguard[yaml]'") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not valid YAML: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None


def project_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", help="project name (default: $GALILEO_PROJECT or 'default')")
    parser.add_argument("--project-id", help="project id")

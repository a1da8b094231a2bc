"""Helpers shared by the CLI commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..protect import Protect
from ..store.sqlite import SQLiteStageStore


def protect_from(args: argparse.Namespace) -> Protect:
    return Protect(SQLiteStageStore(args.db)) if args.db else Protect.from_env()


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

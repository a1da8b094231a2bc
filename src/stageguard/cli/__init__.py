"""The ``stageguard`` command line: manage stages, check texts, score files, run the demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import StageguardError, one_line
from . import _check, _demo, _server, _stages


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stageguard", description="Runtime guardrails for LLM apps.")
    parser.add_argument("--version", action="version", version=f"stageguard {__version__}")
    parser.add_argument(
        "--db", help="stage store: a SQLite file (default: $STAGEGUARD_DB or the user data dir)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _stages.add_parser(commands)
    _check.add_parsers(commands)
    _demo.add_parser(commands)
    _server.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
        return result
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (StageguardError, ValueError, OSError, CLIError) as exc:
        if args.debug:
            raise
        print(f"stageguard: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

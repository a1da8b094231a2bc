"""The ``stageguard`` command line: manage stages, check texts, score files, evaluate stage versions,
report on the server's decision log, run the demo.

Exit codes: 0 success; 1 ``check --fail-on-trigger`` triggered, or ``score`` / ``eval`` finished with row
errors; 2 an error (one line on stderr, with a hint; ``--debug`` shows the traceback); 3 an ``eval``
gate (``--max-fpr``, ``--min-recall``) failed; 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import StageguardError, UnknownMetricError, one_line
from . import _check, _demo, _eval, _metrics, _report, _server, _stages
from ._db import add_db_arg

# The extra that installs a missing top-level module, for the install hint.
_EXTRAS = {
    "langchain": "langchain",
    "langchain_core": "langchain",
    "langgraph": "langchain",
    "llama_index": "llama-index",
    "rich": "demo",
    "yaml": "yaml",
    "fastapi": "server",
    "uvicorn": "server",
    "sqlalchemy": "server",
    "psycopg": "server",
    "jwt": "server",
    "limits": "server",
    "presidio_analyzer": "presidio",
    "onnxruntime": "onnx",
    "matplotlib": "report",
}

EPILOG = (
    "--db works before or after the command. Exit codes: 0 ok; 1 'check --fail-on-trigger' triggered or "
    "'score'/'eval' had row errors; 2 error; 3 an 'eval' gate failed; 130 interrupted."
)


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of every command (``stages list``, ``serve``...), the ones that take options."""
    leaves = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                leaves.extend(_leaf_parsers(child) or [child])
    return leaves


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stageguard", description="Runtime guardrails for LLM apps.", epilog=EPILOG
    )
    parser.add_argument("--version", action="version", version=f"stageguard {__version__}")
    add_db_arg(parser, top_level=True)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _stages.add_parser(commands)
    _check.add_parsers(commands)
    _eval.add_parser(commands)
    _report.add_parser(commands)
    _demo.add_parser(commands)
    _metrics.add_parser(commands)
    _server.add_parsers(commands)
    for leaf in _leaf_parsers(parser):
        add_db_arg(leaf)
    return parser


def install_hint(exc: ImportError) -> str:
    """One line for a missing optional dependency: what is missing and the ``pip install`` that fixes it."""
    message = one_line(exc)
    if "pip install" in message:
        return message
    module = (exc.name or "").split(".")[0]
    extra = _EXTRAS.get(module)
    if extra is None:
        return f"{message} (is the package installed in this environment?)"
    return f'{module} is not installed: pip install "stageguard[{extra}]"'


def _quiet_stdout() -> None:
    """After a broken pipe (``stageguard ... | head``): send the rest of stdout nowhere, so the
    interpreter's final flush doesn't print a second error."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
        sys.stdout.flush()  # a reader that went away shows up here, inside the handlers below
        return result
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader stopped reading (``| head``): that is its choice, not an error.
        _quiet_stdout()
        return 0
    except Exception as exc:
        if args.debug:
            raise
        if isinstance(exc, ImportError) and not (exc.name or "").startswith("stageguard"):
            message = install_hint(exc)
        elif isinstance(exc, (StageguardError, ValueError, OSError, CLIError, sqlite3.Error)):
            message = one_line(exc)
            if isinstance(exc, UnknownMetricError):
                message += " See them all with: stageguard metrics"
        else:  # a bug: still one line, and the way to see more
            message = f"unexpected {type(exc).__name__}: {one_line(exc)} (run with --debug for the traceback)"
        print(f"stageguard: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

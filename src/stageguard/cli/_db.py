"""``--db``: one way to name the database, for every command.

``--db`` (or ``$STAGEGUARD_DB``) is a SQLite file, ``sqlite:///path`` or ``postgresql://user:password@host/db``.
It is accepted before or after the command (``stageguard --db X stages list`` and
``stageguard stages list --db X`` are the same). Anything else is a one-line error, and a URL is never
taken for a file path, so no directory is ever created from one.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..store.base import StageStore

# The store package (and pydantic under it) is imported when a command opens the database, not for
# ``--help`` or argument parsing.
SERVER_EXTRA = 'pip install "stageguard[server]"'  # the same as ``stageguard.store._open.SERVER_EXTRA``

__all__ = ["SERVER_EXTRA", "add_db_arg", "check_db", "chosen_db", "open_store", "redacted"]

DB_HELP = (
    "the database: a SQLite file, sqlite:///path or postgresql://user:password@host/db "
    "(default: $STAGEGUARD_DB, else stages.db in the user data dir); accepted before or after the command"
)


def add_db_arg(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """``--db`` on the main parser and on every command. Commands leave the attribute unset when the
    option is absent, so ``stageguard --db X CMD`` keeps the X given before the command."""
    default = None if top_level else argparse.SUPPRESS
    parser.add_argument("--db", metavar="DB", default=default, help=DB_HELP)


def check_db(db: str) -> str:
    """See :func:`stageguard.store._open.check_db`."""
    from ..store import _open

    return _open.check_db(db)


def open_store(db: str) -> StageStore:
    """See :func:`stageguard.store._open.open_store`."""
    from ..store import _open

    return _open.open_store(db)


def redacted(db: str) -> str:
    """See :func:`stageguard.store._open.redacted`."""
    from ..store import _open

    return _open.redacted(db)


def chosen_db(args: argparse.Namespace) -> str | None:
    """``--db``, else ``$STAGEGUARD_DB``, checked; ``None`` when neither is set."""
    db = getattr(args, "db", None) or os.environ.get("STAGEGUARD_DB") or None
    return check_db(db) if db else None

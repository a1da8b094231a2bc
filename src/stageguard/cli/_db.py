"""``--db``: one way to name the database, for every command.

``--db`` (or ``$STAGEGUARD_DB``) is a SQLite file, ``sqlite:///path`` or ``postgresql://user:password@host/db``.
It is accepted before or after the command (``stageguard --db X stages list`` and
``stageguard stages list --db X`` are the same). Anything else is a one-line error, and a URL is never
taken for a file path, so no directory is ever created from one.
"""

from __future__ import annotations

import argparse
import os

from ..store._open import SERVER_EXTRA, check_db, open_store, redacted

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


def chosen_db(args: argparse.Namespace) -> str | None:
    """``--db``, else ``$STAGEGUARD_DB``, checked; ``None`` when neither is set."""
    db = getattr(args, "db", None) or os.environ.get("STAGEGUARD_DB") or None
    return check_db(db) if db else None

"""The JWT signing secret: ``STAGEGUARD_JWT_SECRET``, else a file only its owner can read
(``STAGEGUARD_JWT_SECRET_FILE``, else created next to the SQLite database or in the user data
directory). Never stored in the database.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from ..store.postgres import is_postgres_url
from ..store.sqlite import default_db_path
from ._db import sqlite_path
from ._settings import ServerSettings

logger = logging.getLogger("stageguard.server")

MIN_LENGTH = 32


def default_secret_file(db: str) -> Path:
    """Where the generated secret lives: next to a SQLite database, else in the user data directory."""
    if is_postgres_url(db):
        return default_db_path().parent / "jwt-secret"
    return Path(sqlite_path(db)).expanduser().with_name(Path(sqlite_path(db)).name + ".jwt-secret")


def _read(path: Path) -> str:
    mode = path.stat().st_mode
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"the JWT secret file {path} is readable by other users (mode {stat.S_IMODE(mode):o}): "
            f"chmod 600 {path}"
        )
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < MIN_LENGTH:
        raise ValueError(f"the JWT secret in {path} must be at least {MIN_LENGTH} characters")
    return secret


def _create(path: Path) -> None:
    """Write a new secret to a private temporary file, then link it into place: a concurrent worker
    either creates it first (we use theirs) or reads the complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
        os.link(tmp, path)
        logger.info("created the JWT signing secret in %s (mode 600)", path)
    except FileExistsError:  # another worker made it first
        pass
    finally:
        tmp.unlink(missing_ok=True)


def jwt_secret(settings: ServerSettings) -> str:
    """The secret that signs tokens; every process of a deployment must get the same one."""
    if settings.jwt_secret:
        return settings.jwt_secret
    if settings.jwt_secret_file:
        path = Path(settings.jwt_secret_file).expanduser()
        if not path.exists():
            raise ValueError(f"the JWT secret file {path} (STAGEGUARD_JWT_SECRET_FILE) does not exist")
        return _read(path)
    path = default_secret_file(settings.db)
    if not path.exists():
        _create(path)
        if is_postgres_url(settings.db):
            logger.warning(
                "created a JWT secret in %s for this host; servers on several hosts must share one: set "
                "STAGEGUARD_JWT_SECRET or STAGEGUARD_JWT_SECRET_FILE",
                path,
            )
    return _read(path)

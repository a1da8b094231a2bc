"""``stageguard serve`` and ``stageguard keys create|list|revoke`` (the ``server`` extra).

FastAPI, uvicorn and SQLAlchemy are imported only when these commands run, so the rest of the CLI works
without the extra.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from ._db import SERVER_EXTRA, check_db, redacted
from ._metrics import entry_points_enabled, load_metrics, metrics_arg

if TYPE_CHECKING:
    from ..server import Databases

_EXTRA = f"the server needs the server extra: {SERVER_EXTRA}"


def add_parsers(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the stageguard server (HTTP API, Galileo compatible)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8088, help="port (default: 8088)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    serve.add_argument(
        "--webhook-allowlist",
        help="hosts subscriptions may call: '*' (public hosts; the default), names, '*.domain', IPs, CIDRs "
        "(default: $STAGEGUARD_WEBHOOK_ALLOWLIST or '*')",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument("--access-log", action="store_true", help="log every request (costs throughput)")
    metrics_arg(serve)
    serve.set_defaults(handler=_serve)

    keys = commands.add_parser("keys", help="manage the server's API keys")
    sub = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create an API key (printed once, stored hashed)")
    create.add_argument("--project", required=True, help="the project the key reaches (created if new)")
    create.add_argument(
        "--role", required=True, choices=["admin", "app"], help="admin manages stages; app invokes"
    )
    create.add_argument("--name", help="a label, e.g. the app or team using the key")
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=_create)
    listing = sub.add_parser("list", help="list API keys (never their secrets)")
    listing.add_argument("--project", help="only this project's keys")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
    revoke = sub.add_parser("revoke", help="revoke an API key (effective within seconds on every server)")
    revoke.add_argument("key", help="the key's id or its displayed prefix (sgk_...)")
    revoke.set_defaults(handler=_revoke)


def _db(args: argparse.Namespace) -> str:
    """``--db``, else ``$STAGEGUARD_SERVER_DB``, ``$STAGEGUARD_DB`` or the user data dir."""
    chosen = getattr(args, "db", None)
    if not chosen:
        try:
            from ..server import ServerSettings
        except ImportError as exc:
            raise ImportError(f"{_EXTRA} ({exc})", name=exc.name) from None
        chosen = ServerSettings.from_env().db
    return check_db(str(chosen))


def _open(args: argparse.Namespace) -> Databases:
    try:
        from ..server import open_databases
    except ImportError as exc:
        raise ImportError(f"{_EXTRA} ({exc})", name=exc.name) from None
    return open_databases(_db(args))


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401  (the extra's server, checked before anything starts)

        from ..server import ServerSettings, open_databases
        from ..server._settings import parse_allowlist
    except ImportError as exc:
        raise ImportError(f"{_EXTRA} ({exc})", name=exc.name) from None
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    db = _db(args)
    modules = load_metrics(args)  # fail here, in one line, if a metrics module can't be imported
    allowlist = args.webhook_allowlist
    settings = ServerSettings.from_env(
        db=db, webhook_allowlist=parse_allowlist(allowlist) if allowlist is not None else None
    )
    open_databases(db).close()  # create the schema once, and fail here if the database is unreachable
    # Workers are separate processes configured by the environment: put the choices there.
    os.environ["STAGEGUARD_SERVER_DB"] = db
    if allowlist is not None:
        os.environ["STAGEGUARD_WEBHOOK_ALLOWLIST"] = allowlist
    os.environ["STAGEGUARD_METRICS"] = ",".join(modules)
    os.environ["STAGEGUARD_METRIC_ENTRY_POINTS"] = "1" if entry_points_enabled(args) else "0"
    print(
        f"stageguard server on http://{args.host}:{args.port} with {args.workers} worker(s), "
        f"database {redacted(db)}",
        file=sys.stderr,
    )
    if settings.console:
        console = f"http://{args.host}:{args.port}/console/"
        print(f"web console: {console} (log in with an API key)", file=sys.stderr)
    from ..server import _workers

    _workers.run(
        "stageguard.server.app:create_app_from_env",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=args.access_log,
    )
    return 0


def _create(args: argparse.Namespace) -> int:
    databases = _open(args)
    try:
        from ..errors import StageConflictError

        store = databases.stages
        project = store.get_project(name=args.project)
        if project is None:
            try:
                project = store.create_project(args.project)
            except StageConflictError:  # created concurrently
                project = store.get_project(name=args.project)
                assert project is not None
        key, secret = databases.keys.create(project.id, project.name, args.role, args.name)
    finally:
        databases.close()
    if args.json:
        print(json.dumps({**key.as_json(), "api_key": secret}, indent=2))
    else:
        print(secret)
        print(
            f"created {key.role.value} key {key.prefix}... (id {key.id}) for project {key.project_name!r}; "
            "this is the only time the key is shown",
            file=sys.stderr,
        )
    return 0


def _list(args: argparse.Namespace) -> int:
    databases = _open(args)
    try:
        keys = databases.keys.list(args.project)
    finally:
        databases.close()
    if args.json:
        print(json.dumps([key.as_json() for key in keys], indent=2))
        return 0
    if not keys:
        print("no keys")
    for key in keys:
        state = "active" if key.active else "revoked"
        print(
            f"{key.prefix}...  {key.id}  {key.project_name:<20} {key.role.value:<5} {state:<7} "
            f"{key.created_at:%Y-%m-%d}  {key.name or ''}".rstrip()
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    databases = _open(args)
    try:
        key = databases.keys.revoke(args.key)
    except LookupError as exc:
        raise ValueError(str(exc.args[0]) if exc.args else "no such key") from None
    finally:
        databases.close()
    print(f"revoked {key.prefix}... (id {key.id}, project {key.project_name!r})")
    return 0

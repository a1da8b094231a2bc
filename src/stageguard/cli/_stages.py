"""``stageguard stages ...``: create, list, get, update, pause, resume, versions, delete."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ..errors import StageNotFoundError
from ._common import project_args, protect_from, read_structured

if TYPE_CHECKING:  # the models are imported when a command runs, not for ``--help``
    from ..stages import Stage


def add_parser(commands: Any) -> None:
    stages = commands.add_parser("stages", help="manage stages in the store")
    sub = stages.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = sub.add_parser("create", help="create a stage")
    create.add_argument("name")
    create.add_argument("--type", choices=["central", "local"], default="central")
    create.add_argument("--file", help="rulesets as JSON or YAML (a list, or {prioritized_rulesets: [...]})")
    create.add_argument("--description")
    create.add_argument("--paused", action="store_true")
    create.add_argument("--fail-policy", choices=["fail_open", "fail_closed"], default="fail_open")
    create.set_defaults(handler=_create)

    listing = sub.add_parser("list", help="list the stages of a project")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    get = sub.add_parser("get", help="show a stage (latest version or --version)")
    get.add_argument("name")
    get.add_argument("--version", type=int)
    get.set_defaults(handler=_get)

    update = sub.add_parser("update", help="store a new version of a central stage")
    update.add_argument("name")
    update.add_argument("--file", required=True, help="rulesets as JSON or YAML")
    update.set_defaults(handler=_update)

    for name, handler, text in (
        ("pause", _pause, "pause a stage (it lets everything through)"),
        ("resume", _resume, "resume a paused stage"),
        ("versions", _versions, "list the versions of a central stage"),
        ("delete", _delete, "delete a stage and its versions"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("name")
        parser.set_defaults(handler=handler)

    for parser in sub.choices.values():
        project_args(parser)


def _where(args: argparse.Namespace) -> dict[str, Any]:
    return {"project_name": args.project, "project_id": args.project_id}


def _summary(stage: Stage) -> str:
    version = f"v{stage.version}" if stage.version is not None else "-"
    state = "paused" if stage.paused else "active"
    rulesets = len(stage.prioritized_rulesets)
    return f"{stage.name:<24} {stage.type.value:<8} {version:<5} {state:<7} {rulesets} rulesets"


def _print_stage(stage: Stage) -> None:
    print(json.dumps(stage.model_dump(mode="json"), indent=2))
    _note_passthrough(stage)


def _note_passthrough(stage: Stage) -> None:
    """Say on stderr which rulesets only report: PASSTHROUGH is also what a ruleset without ``action``
    gets (Galileo's default), which is easy to miss in a policy file."""
    from ..rules import ActionType

    passing = [
        str(index)
        for index, ruleset in enumerate(stage.prioritized_rulesets, 1)
        if ruleset.action.type is ActionType.PASSTHROUGH
    ]
    if passing:
        print(
            f"note: ruleset {', '.join(passing)} of {stage.name} only report when triggered (PASSTHROUGH, "
            "the default for a ruleset without an action); give it an OVERRIDE or REDACT action to act",
            file=sys.stderr,
        )


def _create(args: argparse.Namespace) -> int:
    from ..rules import parse_rulesets

    rulesets = parse_rulesets(read_structured(args.file)) if args.file else None
    stage = protect_from(args).create_stage(
        args.name,
        stage_type=args.type,
        prioritized_rulesets=rulesets,
        description=args.description,
        paused=args.paused,
        fail_policy=args.fail_policy,
        **_where(args),
    )
    print(f"created {_summary(stage)}  id={stage.id}")
    _note_passthrough(stage)
    return 0


def _list(args: argparse.Namespace) -> int:
    stages = protect_from(args).list_stages(**_where(args))
    if args.json:
        print(json.dumps([s.model_dump(mode="json") for s in stages], indent=2))
    elif not stages:
        print("no stages")
    for stage in stages if not args.json else []:
        print(_summary(stage))
    return 0


def _get(args: argparse.Namespace) -> int:
    stage = protect_from(args).require_stage(args.name, version=args.version, **_where(args))
    _print_stage(stage)
    return 0


def _update(args: argparse.Namespace) -> int:
    from ..rules import parse_rulesets

    rulesets = parse_rulesets(read_structured(args.file))
    stage = protect_from(args).update_stage(args.name, prioritized_rulesets=rulesets, **_where(args))
    print(f"updated {_summary(stage)}")
    _note_passthrough(stage)
    return 0


def _pause(args: argparse.Namespace) -> int:
    print(f"paused {_summary(protect_from(args).pause_stage(args.name, **_where(args)))}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    print(f"resumed {_summary(protect_from(args).resume_stage(args.name, **_where(args)))}")
    return 0


def _versions(args: argparse.Namespace) -> int:
    protect = protect_from(args)
    stage = protect.require_stage(args.name, **_where(args))
    versions = protect.store.list_versions(stage.id)
    print(" ".join(str(v) for v in versions) if versions else f"{stage.name} is local: it has no versions")
    return 0


def _delete(args: argparse.Namespace) -> int:
    if not protect_from(args).delete_stage(args.name, **_where(args)):
        raise StageNotFoundError(f"stage {args.name!r} does not exist")
    print(f"deleted {args.name}")
    return 0

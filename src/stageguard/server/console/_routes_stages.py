"""A stage: its rulesets, versions and their diff, pause / resume, and a new version from JSON or YAML."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()


@router.get("/stages/{stage_id}", name="stage")
def stage_page(stage_id: str) -> str:  # placeholder until the stage page lands
    return stage_id

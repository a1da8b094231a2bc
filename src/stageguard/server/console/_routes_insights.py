"""What a stage does: the try-it form, decision-log charts, and evaluation reports."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()


@router.get("/reports", name="reports")
def reports_page() -> str:  # placeholder until the reports page lands
    return "reports"

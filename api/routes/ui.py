"""The web dashboard: static files served by the API itself, no separate front-end server."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/")


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui")

"""Every error in one shape: RFC 9457 problem details (`application/problem+json`).

`detail` is one human sentence that says what to fix; validation failures also list each
problem under `errors`. No handler lets an exception out as a bare 500 page.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from budgetprune.errors import BudgetPruneError

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str
    errors: list[str] | None = None


def _doc(description: str) -> dict[str, object]:
    return {
        "model": Problem,
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


#: Error answers every authenticated route may give, for the OpenAPI document.
COMMON_ERRORS: dict[int | str, dict[str, object]] = {
    401: _doc("no token, or a wrong one"),
    403: _doc("the token may not act on this resource"),
    404: _doc("no such resource (or not yours)"),
    422: _doc("the request is invalid: `detail` says what to fix"),
}


def problem(status: int, detail: str, request: Request, **extra: object) -> JSONResponse:
    body: dict[str, object] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    } | extra
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = problem(exc.status_code, str(exc.detail), request)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in exc.errors()
        ]
        return problem(422, "; ".join(errors), request, errors=errors)

    @app.exception_handler(BudgetPruneError)
    async def _ours(request: Request, exc: BudgetPruneError) -> JSONResponse:
        return problem(422, str(exc), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem(500, "internal error; the server logged it", request)

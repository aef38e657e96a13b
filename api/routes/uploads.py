"""Uploads: checkpoints (.safetensors, or .pt/.pth loaded only with weights_only=True) and data
sets (zip of ImageFolder splits), streamed to the user's upload folder with a size limit and
checked before they are kept. Jobs then name them by the returned path."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict

from api.deps import CurrentUser, SettingsDep
from api.problems import COMMON_ERRORS
from budgetprune.filecheck import (
    UnsafeFileError,
    check_dataset_zip,
    check_safetensors,
    check_torch_archive,
)

router = APIRouter(responses=COMMON_ERRORS, prefix="/v1/uploads", tags=["uploads"])

Kind = Literal["checkpoint", "dataset"]
_SUFFIXES: dict[str, Kind] = {
    ".safetensors": "checkpoint",
    ".pt": "checkpoint",
    ".pth": "checkpoint",
    ".zip": "dataset",
}


class UploadPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "path": "/srv/budgetprune/uploads/3f2a.../9c1d2e3f4a5b-cifar10.zip",
                    "kind": "dataset",
                    "bytes": 65314233,
                    "sha256": "09dc35afe39ee77513ba893b09c51690ac075f6ae7071f376e77ef5b648adb7b",
                }
            ]
        }
    )

    path: str
    kind: Kind
    bytes: int
    sha256: str


def _check(path: Path, suffix: str) -> None:
    if suffix == ".safetensors":
        check_safetensors(path)
    elif suffix in (".pt", ".pth"):
        check_torch_archive(path)
    else:
        check_dataset_zip(path)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadPublic,
    responses={413: {"description": "over the size limit"}, 422: {"description": "refused"}},
)
async def upload(
    request: Request,
    user: CurrentUser,
    settings: SettingsDep,
    name: Annotated[str, Query(min_length=1, max_length=200, description="file name")],
) -> UploadPublic:
    """Send the file as the raw request body (application/octet-stream)."""
    suffix = Path(name).suffix.lower()
    if suffix not in _SUFFIXES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unsupported file type {suffix or '(none)'}: send .safetensors, .pt/.pth or .zip",
        )
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"uploads are limited to {limit} bytes"
        )
    folder = settings.uploads_dir / user.id
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(name).name)[:100]
    final = folder / f"{uuid.uuid4().hex[:12]}-{safe}"
    tmp = final.with_name(final.name + ".part")
    digest, size = hashlib.sha256(), 0
    try:
        with tmp.open("wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(
                        status.HTTP_413_CONTENT_TOO_LARGE, f"uploads are limited to {limit} bytes"
                    )
                digest.update(chunk)
                fh.write(chunk)
        if size == 0:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the upload is empty")
        try:
            await run_in_threadpool(_check, tmp, suffix)
        except UnsafeFileError as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"{safe} refused: {exc}"
            ) from None
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return UploadPublic(
        path=str(final.resolve()), kind=_SUFFIXES[suffix], bytes=size, sha256=digest.hexdigest()
    )

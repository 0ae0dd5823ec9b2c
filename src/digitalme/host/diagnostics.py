"""Test-only routes for exercising the monitoring (mounted only outside Production)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

router = APIRouter(prefix="/test", tags=["diagnostics"])

MAX_SLOW_SECONDS = 30.0


class SlowResult(BaseModel):
    slept_seconds: float


@router.post("/slow-endpoint", response_model=SlowResult)
async def slow_endpoint(
    seconds: Annotated[float, Query(ge=0, le=MAX_SLOW_SECONDS)] = 3.0,
) -> SlowResult:
    """Answer after ``seconds`` (at most 30), to trigger latency alerts on purpose."""
    await asyncio.sleep(seconds)
    return SlowResult(slept_seconds=seconds)

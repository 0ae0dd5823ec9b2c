"""Personality profiles: CRUD for their owners (admins see and manage all).

Each successful creation, update (PUT or PATCH) and read (one profile or a page
of them) counts one value of ``business.profiles`` by ``action``, for the admin
business figures (:mod:`digitalme.monitoring.dashboard.business`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from digitalme.host.auth.deps import CurrentPrincipal
from digitalme.host.auth.service import Principal
from digitalme.host.errors import NotFound
from digitalme.host.models import PersonalityProfile
from digitalme.host.state import HostServices, Services, Session
from digitalme.monitoring.dashboard.business import PROFILES_METRIC, ProfileAction

router = APIRouter(prefix="/api/personality", tags=["personality"])

MAX_DATA_BYTES = 64 * 1024


def _bounded(data: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_DATA_BYTES:
        raise ValueError(f"must be at most {MAX_DATA_BYTES} bytes serialised (got {size})")
    return data


ProfileName = Annotated[str, Field(min_length=1, max_length=200)]
ProfileData = Annotated[dict[str, Any], AfterValidator(_bounded)]


class ProfileCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: ProfileName
    data: ProfileData = Field(default_factory=dict)


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: ProfileName | None = None
    data: ProfileData | None = None


class ProfileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    data: dict[str, Any]
    owner_id: int
    created_at: datetime
    updated_at: datetime


async def load_profile(
    session: AsyncSession, principal: Principal, profile_id: int
) -> PersonalityProfile:
    """The profile if the caller may see it; NotFound otherwise (existence is not revealed)."""
    profile = await session.get(PersonalityProfile, profile_id)
    if profile is None or (profile.owner_id != principal.user_id and not principal.is_admin):
        raise NotFound(f"id: no personality profile {profile_id}")
    return profile


@router.post("", response_model=ProfileOut, status_code=201)
async def create_profile(
    body: ProfileCreate, principal: CurrentPrincipal, services: Services, session: Session
) -> PersonalityProfile:
    now = services.clock.now()
    profile = PersonalityProfile(
        owner_id=principal.user_id, name=body.name, data=body.data, created_at=now, updated_at=now
    )
    session.add(profile)
    await session.commit()
    count_profiles(services, ProfileAction.CREATED)
    return profile


@router.get("", response_model=list[ProfileOut])
async def list_profiles(
    principal: CurrentPrincipal,
    services: Services,
    session: Session,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[PersonalityProfile]:
    query = select(PersonalityProfile).order_by(PersonalityProfile.id).limit(limit).offset(offset)
    if not principal.is_admin:
        query = query.where(PersonalityProfile.owner_id == principal.user_id)
    profiles = list(await session.scalars(query))
    count_profiles(services, ProfileAction.QUERIED)
    return profiles


@router.get("/{profile_id}", response_model=ProfileOut)
async def get_profile(
    profile_id: int, principal: CurrentPrincipal, services: Services, session: Session
) -> PersonalityProfile:
    profile = await load_profile(session, principal, profile_id)
    count_profiles(services, ProfileAction.QUERIED)
    return profile


@router.put("/{profile_id}", response_model=ProfileOut)
async def replace_profile(
    profile_id: int,
    body: ProfileCreate,
    principal: CurrentPrincipal,
    services: Services,
    session: Session,
) -> PersonalityProfile:
    update = ProfileUpdate(name=body.name, data=body.data)
    return await _apply(session, services, principal, profile_id, update)


@router.patch("/{profile_id}", response_model=ProfileOut)
async def update_profile(
    profile_id: int,
    body: ProfileUpdate,
    principal: CurrentPrincipal,
    services: Services,
    session: Session,
) -> PersonalityProfile:
    return await _apply(session, services, principal, profile_id, body)


@router.delete("/{profile_id}", status_code=204)
async def delete_profile(
    profile_id: int, principal: CurrentPrincipal, session: Session
) -> Response:
    profile = await load_profile(session, principal, profile_id)
    await session.delete(profile)
    await session.commit()
    return Response(status_code=204)


async def _apply(
    session: AsyncSession,
    services: Services,
    principal: Principal,
    profile_id: int,
    update: ProfileUpdate,
) -> PersonalityProfile:
    profile = await load_profile(session, principal, profile_id)
    if update.name is not None:
        profile.name = update.name
    if update.data is not None:
        profile.data = update.data
    profile.updated_at = services.clock.now()
    await session.commit()
    count_profiles(services, ProfileAction.UPDATED)
    return profile


def count_profiles(services: HostServices, action: ProfileAction) -> None:
    """One value of ``business.profiles``; who acted is never a dimension."""
    if services.telemetry is not None:
        services.telemetry.track_metric(PROFILES_METRIC, 1.0, {"action": action.value})

"""Routes: login, the current user, and admin management of users and API keys."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from digitalme.host.auth import api_keys
from digitalme.host.auth.deps import AdminPrincipal, CurrentPrincipal
from digitalme.host.errors import Forbidden, NotFound
from digitalme.host.models import ApiKey, User
from digitalme.host.state import Services, Session, client_ip_of
from digitalme.host.users import create_user, list_users
from digitalme.settings import Role

router = APIRouter(prefix="/api", tags=["auth"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: str
    display_name: str
    role: Role
    created_at: datetime
    last_login_date: datetime | None


class LoginResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: UserOut


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=8, max_length=1024)
    role: Role = Role.USER
    display_name: str | None = Field(default=None, min_length=1, max_length=200)


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    use_count: int


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="shown once; only its hash is stored")


@router.post("/auth/login", response_model=LoginResponse)
async def login(
    body: LoginRequest, request: Request, services: Services, session: Session
) -> LoginResponse:
    token, user = await services.auth.login(
        session, body.email, body.password, client_ip_of(request)
    )
    return LoginResponse(
        access_token=token,
        expires_in=int(services.auth.tokens.lifetime.total_seconds()),
        user=UserOut.model_validate(user),
    )


@router.get("/auth/me", response_model=UserOut)
async def me(principal: CurrentPrincipal, session: Session) -> User:
    user = await session.get(User, principal.user_id)
    if user is None:
        raise NotFound("user not found")
    return user


@router.get("/users", response_model=list[UserOut])
async def users(_: AdminPrincipal, session: Session) -> list[User]:
    return list(await list_users(session))


@router.post("/users", response_model=UserOut, status_code=201)
async def add_user(
    body: UserCreate, principal: AdminPrincipal, services: Services, session: Session
) -> User:
    if body.role is not Role.USER and principal.role is not Role.SUPER_ADMIN:
        raise Forbidden("only a SuperAdmin may create Admin or SuperAdmin users")
    return await create_user(
        session,
        services.clock,
        email=body.email,
        password=body.password,
        role=body.role,
        display_name=body.display_name,
    )


@router.get("/users/{user_id}/api-keys", response_model=list[ApiKeyOut])
async def user_api_keys(user_id: int, _: AdminPrincipal, session: Session) -> list[ApiKey]:
    await _existing_user(session, user_id)
    rows = await session.scalars(
        select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)
    )
    return list(rows)


@router.post("/users/{user_id}/api-keys", response_model=ApiKeyCreated, status_code=201)
async def create_api_key(
    user_id: int, body: ApiKeyCreate, _: AdminPrincipal, services: Services, session: Session
) -> ApiKeyCreated:
    await _existing_user(session, user_id)
    new = api_keys.generate_key()
    key = ApiKey(
        user_id=user_id,
        name=body.name,
        prefix=new.prefix,
        key_hash=new.key_hash,
        created_at=services.clock.now(),
        use_count=0,
    )
    session.add(key)
    await session.commit()
    return ApiKeyCreated.model_validate(
        {**ApiKeyOut.model_validate(key).model_dump(), "key": new.key}
    )


@router.delete("/api-keys/{key_id}", status_code=204)
async def revoke_api_key(
    key_id: int, _: AdminPrincipal, services: Services, session: Session
) -> Response:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"key_id: no API key {key_id}")
    if key.revoked_at is None:
        key.revoked_at = services.clock.now()
        await session.commit()
    return Response(status_code=204)


async def _existing_user(session: Session, user_id: int) -> None:
    if await session.get(User, user_id) is None:
        raise NotFound(f"user_id: no user {user_id}")

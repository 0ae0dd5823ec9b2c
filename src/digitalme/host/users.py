"""User accounts: creation, listing and the first SuperAdmin."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from digitalme.host.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, hash_password
from digitalme.host.errors import BadRequest, Conflict
from digitalme.host.models import User
from digitalme.monitoring.clock import Clock
from digitalme.settings import Role


def normalize_email(email: str) -> str:
    """Lower-cased and stripped; refuses what cannot be an address (BadRequest naming the field)."""
    value = email.strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or not domain or len(value) > 320 or any(c.isspace() for c in value):
        raise BadRequest("email: not a valid email address", code="validation_error")
    return value


def check_password(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise BadRequest(
            f"password: must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
            code="validation_error",
        )


async def create_user(
    session: AsyncSession,
    clock: Clock,
    *,
    email: str,
    password: str,
    role: Role = Role.USER,
    display_name: str | None = None,
) -> User:
    """Create and commit a user; Conflict if the email is taken."""
    address = normalize_email(email)
    check_password(password)
    user = User(
        email=address,
        display_name=(display_name or address.split("@")[0])[:200],
        role=str(role),
        password_hash=hash_password(password),
        created_at=clock.now(),
        failed_attempts=0,
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(f"email: a user with email {address} already exists") from None
    return user


async def list_users(session: AsyncSession) -> Sequence[User]:
    return (await session.scalars(select(User).order_by(User.id))).all()


async def ensure_first_admin(
    session: AsyncSession, clock: Clock, *, email: str, password: str | None
) -> str | None:
    """Create a SuperAdmin when there is no user at all.

    Returns the generated password when one had to be made (to be shown once),
    otherwise None (also when users already exist).
    """
    count = await session.scalar(select(func.count()).select_from(User))
    if count:
        return None
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(18)
    await create_user(session, clock, email=email, password=password, role=Role.SUPER_ADMIN)
    return generated

"""Test accounts shared by the API tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from digitalme.settings import Role

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
PASSWORD = "correct horse battery staple"


@dataclass
class Account:
    id: int
    email: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


MakeAccount = Callable[..., Any]

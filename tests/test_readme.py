"""The README documents every settings key (the table is the configuration reference)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from digitalme.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from keys(annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def test_every_settings_key_is_in_the_readme_table() -> None:
    text = README.read_text()
    missing = [key for key in keys(Settings) if f"| `{key}` |" not in text]
    assert missing == []


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join(README.read_text().splitlines()[:40])
    assert "make run" in head
    assert "make test" in head

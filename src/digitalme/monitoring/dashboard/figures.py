"""Figures only the host knows, for the metrics API: it registers a source per name.

The monitoring layer never imports the host, yet some dashboard figures live
there: the database connection pool's usage, the number of active API keys or
of users. The host registers an async source for each (``figures.register(
"database.pool", read_pool)``) returning a flat mapping of numbers; a route
asks :meth:`HostFigures.read` and shows nothing (never an invented number) for
a name nobody registered or whose source failed or took longer than
``timeout``. A failing source is logged once per outage, and never fails the
route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from digitalme.monitoring.outages import Outages

__all__ = ["FigureSource", "Figures", "HostFigures"]

Figures = Mapping[str, int | float | None]
FigureSource = Callable[[], Awaitable[Figures]]

DEFAULT_TIMEOUT = 2.0  # seconds


class HostFigures:
    """Named async sources of figures, registered by the host."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._sources: dict[str, FigureSource] = {}
        self._outages = Outages(
            "digitalme.monitoring.dashboard",
            failed="host_figures_failed",
            recovered="host_figures_recovered",
            key="figures",
        )

    def register(self, name: str, source: FigureSource) -> None:
        """Add (or replace) the source of ``name``."""
        self._sources[name] = source

    def names(self) -> list[str]:
        return sorted(self._sources)

    async def read(self, name: str) -> dict[str, int | float | None] | None:
        """The figures of ``name``; None when it has no source or the source failed."""
        source = self._sources.get(name)
        if source is None:
            return None
        try:
            figures = dict(await asyncio.wait_for(source(), self.timeout))
        except Exception as exc:
            self._outages.failed(name, type(exc).__name__)
            return None
        self._outages.recovered(name)
        return figures

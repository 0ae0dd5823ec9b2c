"""Deployment markers: which version went out when, and who shipped it.

Recorded by the deployment pipeline (``POST /api/deployments`` or ``digitalme
deployments record``) and drawn on the uptime timeline and the dashboard's
charts, so that a change in latency or errors can be read against releases.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from digitalme.monitoring.alerts.model import new_id

__all__ = ["Deployment"]


class Deployment(BaseModel):
    """One deployment of ``version``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=new_id, max_length=36)
    version: str = Field(min_length=1, max_length=100)
    deployed_by: str = Field(min_length=1, max_length=200)
    at: AwareDatetime
    description: str = Field(default="", max_length=2000)

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "version": self.version,
            "deployed_by": self.deployed_by,
            "at": self.at.isoformat(),
            "description": self.description,
        }

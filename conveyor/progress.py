"""The one progress shape every pipeline reports through its ``progress`` query."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

#: Name of the query every Conveyor workflow answers with a :class:`Progress`.
PROGRESS_QUERY = "progress"


class Progress(BaseModel):
    """Where a workflow is: stage, percent, done/total units, a message, and when it last moved."""

    model_config = ConfigDict(frozen=True)

    stage: str = "starting"
    percent: float = 0.0
    done: int = 0
    total: int = 0
    message: str = ""
    started_at: datetime | None = None
    updated_at: datetime | None = None

    def advance(self, now: datetime, **changes: object) -> Progress:
        """A copy with ``changes`` applied and ``updated_at`` (and ``started_at`` once) set to ``now``."""
        data = self.model_dump()
        data.update(changes)
        data["updated_at"] = now
        if data["started_at"] is None:
            data["started_at"] = now
        data["percent"] = max(0.0, min(100.0, float(data["percent"])))
        return Progress.model_validate(data)

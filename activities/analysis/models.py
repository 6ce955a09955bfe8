"""The analysis pipeline's table: one row per task, the user-facing record of a run."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from activities.analysis.catalog import tool_cost
from conveyor.db import Base
from conveyor.models import CreditHold
from conveyor.records import RunColumns
from conveyor.runs import RunStatus


class AnalysisTask(RunColumns, Base):
    """A routed analysis job: which tool and agents, on which files, and what came out.

    ``created`` until ``process`` queues it; ``stage`` is what the run is doing (loading, preparing, an agent's
    id, publishing), ``current_agent`` the agent running now.
    """

    __tablename__ = "analysis_tasks"
    __table_args__ = (Index("ix_analysis_tasks_user_created", "user_id", "created_at"),)

    task_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    tool_id: Mapped[str] = mapped_column(String(64))
    agents: Mapped[list[str]] = mapped_column(JSON, default=list)
    current_agent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    input_files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    credits_cost: Mapped[int] = mapped_column(Integer, default=0)

    def credits_due(self, session: Session, held: CreditHold) -> int:
        """The credits of the agents that delivered their outputs (all of them once completed)."""
        if self.status == RunStatus.COMPLETED.value:
            return held.amount
        done = (self.result or {}).get("agents_completed") or []
        return tool_cost(self.tool_id, [a for a in done if isinstance(a, str)])

"""Attribution workflows (seed 004's ML service): per-portal ingest, per-campaign samplers, fatigue approvals and
the winner index. Deterministic: every read and write is an activity; randomness is ``workflow.random()`` in
handlers, never in queries.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.attribution import contract  # noqa: F401

# === ingest and sampler (owner: main session) ===

# === end ingest and sampler ===

# === fatigue and approvals (owner: fatigue helper) ===

# === end fatigue and approvals ===

# === winner index (owner: index helper) ===

# === end winner index ===

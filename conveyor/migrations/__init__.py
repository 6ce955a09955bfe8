"""Alembic migrations (``versions/``, loaded by path) and the column builders they share (``columns``)."""

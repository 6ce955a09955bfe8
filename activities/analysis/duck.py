"""DuckDB connections of the analysis worker, each opened with the worker's resource limits."""

from __future__ import annotations

from pathlib import Path

import duckdb

from activities.analysis.limits import AnalysisLimits


def connect(limits: AnalysisLimits, workdir: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory connection capped in memory and threads that spills into ``workdir/spill`` up to a cap.

    The configuration is locked, so no query can raise its own limits, and extensions are never fetched from
    the network (JSON and Parquet are built in).
    """
    return duckdb.connect(
        config={
            "memory_limit": f"{limits.duckdb_memory_mb}MiB",
            "threads": limits.duckdb_threads,
            "temp_directory": str(workdir / "spill"),
            "max_temp_directory_size": f"{limits.duckdb_max_temp_mb}MiB",
            "autoinstall_known_extensions": False,
            "lock_configuration": True,
        }
    )

"""A throwaway PostgreSQL cluster for tests of the PostgreSQL path (the Debian ``postgresql`` package's binaries)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conveyor.temporal import free_port


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    assert found, "PostgreSQL server binaries are missing: scripts/bootstrap.sh installs the postgresql package"
    return Path(found[-1]).parent


def _as_owner(cmd: list[str]) -> list[str]:
    """Run as the postgres user when we are root (initdb refuses root)."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster on a free port; yields an asyncpg URL to an empty database ``conveyor``."""
    # not under pytest's tmp folder: that one is private to root, and the server runs as postgres
    bin_dir, root, port = _pg_bin(), Path(tempfile.mkdtemp(prefix="conveyor-pg-")), free_port()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data = root / "data"

    def run(*cmd: str) -> None:
        subprocess.run(_as_owner(list(cmd)), check=True, capture_output=True, timeout=120)

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "conveyor", "--auth=trust", "-E", "UTF8")
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "conveyor", "conveyor")
        yield f"postgresql+asyncpg://conveyor@127.0.0.1:{port}/conveyor"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)

"""Benchmark: what starting the API costs, against the web framework alone, in one run.

A fresh interpreter imports ``api.app`` (every pipeline's router, contracts and tables), and another imports
only ``fastapi`` + ``sqlalchemy`` + ``temporalio.client`` (the framework and clients any such API needs). The two
alternate ``--rounds`` times; medians, peak memory and the ratio are printed, with whether any worker-side library
(onnxruntime, chromadb, playwright, …) was loaded. Usage: ``python -m bench.imports [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from rich.console import Console
from rich.table import Table

HEAVY = ("onnxruntime", "chromadb", "playwright", "langgraph", "duckdb", "polars", "faster_whisper", "ctranslate2")
PROBE = """
import importlib, json, resource, sys, time
started = time.perf_counter()
for name in sys.argv[1:]:
    importlib.import_module(name)
seconds = time.perf_counter() - started
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
sys.stdout.write(json.dumps({"seconds": seconds, "rss_mb": rss_mb, "modules": sorted(sys.modules)}))
"""
CASES = {
    "api.app": ["api.app"],
    "framework only": ["fastapi", "sqlalchemy.ext.asyncio", "temporalio.client"],
}


def measure(modules: list[str]) -> dict[str, object]:
    """Import ``modules`` in a fresh interpreter: seconds, peak RSS and the modules loaded."""
    done = subprocess.run([sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout)
    return result


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {name: [] for name in CASES}
    memory: dict[str, list[float]] = {name: [] for name in CASES}
    heavy: dict[str, set[str]] = {name: set() for name in CASES}
    for _ in range(args.rounds):
        for name, modules in CASES.items():
            result = measure(modules)
            seconds[name].append(float(result["seconds"]))  # type: ignore[arg-type]
            memory[name].append(float(result["rss_mb"]))  # type: ignore[arg-type]
            loaded = {str(m).partition(".")[0] for m in result["modules"]}  # type: ignore[attr-defined]
            heavy[name] |= loaded & set(HEAVY)
    base = statistics.median(seconds["framework only"])
    table = Table("import", "median s", "peak RSS MB", "ratio to framework", "worker-side libraries loaded")
    for name in CASES:
        median = statistics.median(seconds[name])
        table.add_row(
            name,
            f"{median:.3f}",
            f"{statistics.median(memory[name]):.0f}",
            f"{median / base:.2f}",
            ", ".join(sorted(heavy[name])) or "none",
        )
    Console().print(table)


if __name__ == "__main__":
    main()

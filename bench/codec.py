"""Benchmark: what encrypting payloads costs, against the plain converter, measured side by side in one run.

Both converters turn the same inputs into Temporal payloads and back: a crawl request (small), a page visit's
result with its findings (medium), and an analysis result of 1 MB (large). The plain one is Conveyor's pydantic
converter alone; the other adds the AES-GCM codec every worker and client uses. The two alternate per round;
medians per operation and the ratio are printed. Usage: ``python -m bench.codec [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from rich.console import Console
from rich.table import Table
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter

from conveyor.codec import KeyRing, encrypting_converter

SAMPLES: dict[str, Any] = {
    "crawl request (small)": {"url": "https://docs.example.test/guide/", "max_pages": 60, "max_depth": 3},
    "page result (medium)": {
        "url": "https://docs.example.test/guide/install",
        "links": [f"https://docs.example.test/guide/page-{i}" for i in range(200)],
        "findings": [{"kind": "missing_alt", "elements": [f"img#hero-{i}" for i in range(30)]} for _ in range(10)],
    },
    "analysis result (1 MB)": {"rows": [{"id": i, "name": f"customer {i}", "city": "Kyiv"} for i in range(20_000)]},
}


async def round_trip(converter: DataConverter, value: Any, repeat: int) -> float:
    """Seconds per encode + decode of ``value`` through ``converter`` (mean of ``repeat``)."""
    started = time.perf_counter()
    for _ in range(repeat):
        payloads = await converter.encode([value])
        await converter.decode(payloads, [dict])
    return (time.perf_counter() - started) / repeat


async def run(rounds: int) -> None:
    """Measure every sample through both converters and print the table."""
    converters = {"plain": pydantic_data_converter, "encrypted": encrypting_converter(KeyRing.generate("bench"))}
    table = Table("payload", "plain ms", "encrypted ms", "ratio", "size plain → encrypted")
    for name, value in SAMPLES.items():
        repeat = 5 if "1 MB" in name else 200
        times: dict[str, list[float]] = {kind: [] for kind in converters}
        for _ in range(rounds):
            for kind, converter in converters.items():
                times[kind].append(await round_trip(converter, value, repeat))
        plain, encrypted = (statistics.median(times[k]) * 1000 for k in ("plain", "encrypted"))
        sizes = [len((await converters[k].encode([value]))[0].SerializeToString()) for k in ("plain", "encrypted")]
        table.add_row(name, f"{plain:.3f}", f"{encrypted:.3f}", f"{encrypted / plain:.2f}×", f"{sizes[0]} → {sizes[1]}")
    Console().print(table)


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    asyncio.run(run(parser.parse_args().rounds))


if __name__ == "__main__":
    main()

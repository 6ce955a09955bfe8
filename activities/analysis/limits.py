"""Resource limits of the analysis pipeline and the workbook check the API and the worker share (light).

An xlsx workbook is a ZIP archive: a few kilobytes on disk can inflate to gigabytes (a zip bomb) and the
Excel reader holds the whole first sheet in memory. :func:`check_workbook` reads only the archive's central
directory (the declared sizes) and refuses a workbook before anything is decompressed; the worker then
verifies the declared sizes while inflating (:func:`verify_workbook_sizes`), so headers that lie are caught
too. DuckDB's limits (memory, threads, spill folder and its cap) are applied to every connection by
:mod:`activities.analysis.duck`.
"""

from __future__ import annotations

import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from conveyor.errors import BadInput
from conveyor.settings import Settings

MIB = 1024 * 1024
RATIO_CHECK_MIN_BYTES = MIB
"""ZIP entries smaller than this (uncompressed) are not checked for their ratio: they cannot be a bomb."""
_VERIFY_CHUNK = MIB
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"


@dataclass(frozen=True)
class AnalysisLimits:
    """What one analysis worker lets a task use; the defaults match the settings' defaults."""

    work_dir: Path | None = None
    """The worker's scratch folder (conversions, agents, DuckDB spill); ``None``: the system's temp folder."""
    duckdb_memory_mb: int = 1024
    duckdb_threads: int = 2
    duckdb_max_temp_mb: int = 10240
    json_sample_records: int = 10_000
    xlsx_max_uncompressed_bytes: int = 512 * MIB
    xlsx_max_ratio: float = 100.0
    xlsx_max_cells: int = 10_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> AnalysisLimits:
        """The limits a worker (or the API) configured with ``settings`` applies."""
        return cls(
            work_dir=settings.analysis_work_dir_resolved,
            duckdb_memory_mb=settings.analysis_duckdb_memory_mb,
            duckdb_threads=settings.analysis_duckdb_threads,
            duckdb_max_temp_mb=settings.analysis_duckdb_max_temp_mb,
            json_sample_records=settings.analysis_json_sample_records,
            xlsx_max_uncompressed_bytes=settings.analysis_xlsx_max_uncompressed_bytes,
            xlsx_max_ratio=settings.analysis_xlsx_max_ratio,
            xlsx_max_cells=settings.analysis_xlsx_max_cells,
        )

    def scratch(self, prefix: str) -> tempfile.TemporaryDirectory[str]:
        """A fresh scratch folder under the worker's own folder, removed when its ``with`` block ends."""
        if self.work_dir is not None:
            self.work_dir.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(prefix=prefix, dir=self.work_dir)


def _too_large(name: str, message: str, **details: object) -> BadInput:
    """WORKBOOK_TOO_LARGE naming the file."""
    return BadInput(f"{name}: {message}", code="WORKBOOK_TOO_LARGE", details={"file": name, **details})


def _entries(path: Path, name: str) -> list[zipfile.ZipInfo]:
    """The central directory of a ZIP archive; MALFORMED_FILE when it cannot be read."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise BadInput(f"{name} is not a readable Excel workbook: {exc}", code="MALFORMED_FILE") from exc


def is_zip(path: Path) -> bool:
    """Whether the file's content is a ZIP archive (an xlsx workbook, whatever its extension says)."""
    with path.open("rb") as f:
        return f.read(4) == b"PK\x03\x04"


def check_workbook(path: Path, name: str, limits: AnalysisLimits) -> None:
    """Refuse a ZIP-based workbook whose declared uncompressed size or any entry's ratio is over the limits.

    Reads the central directory only (nothing is inflated); a non-ZIP file (an .xls) passes untouched.
    """
    if not is_zip(path):
        return
    entries = _entries(path, name)
    total = sum(e.file_size for e in entries)
    limit = limits.xlsx_max_uncompressed_bytes
    if total > limit:
        raise _too_large(
            name,
            f"the workbook unpacks to {total:,} bytes; the limit is {limit:,} bytes",
            uncompressed_bytes=total,
            limit_bytes=limit,
        )
    for entry in entries:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size >= RATIO_CHECK_MIN_BYTES and ratio > limits.xlsx_max_ratio:
            raise _too_large(
                name,
                f"a part of the workbook is compressed {ratio:,.0f} to 1; the limit is {limits.xlsx_max_ratio:g} "
                "to 1 (a zip bomb?)",
                ratio=round(ratio, 1),
                limit_ratio=limits.xlsx_max_ratio,
            )


def verify_workbook_sizes(path: Path, name: str, limits: AnalysisLimits) -> None:
    """Inflate every entry in bounded chunks, refusing one that holds more than its header declares.

    :func:`check_workbook` trusts the declared sizes, and the Excel reader bounds what it inflates by the
    compressed size only; this pass (run by the worker before the reader opens the file) stops one chunk past
    the declared size, so a lying header cannot make anything inflate more than the limit allows.
    """
    if not is_zip(path):
        return
    check_workbook(path, name, limits)
    entries = _entries(path, name)
    try:
        with path.open("rb") as f:
            for entry in entries:
                _verify_entry(f, entry, name)
    except (zlib.error, struct.error) as exc:
        raise BadInput(f"{name} is not a readable Excel workbook: {exc}", code="MALFORMED_FILE") from exc


def _verify_entry(f: BinaryIO, entry: zipfile.ZipInfo, name: str) -> None:
    """Inflate one entry's compressed bytes (read from its local header on) and compare with the declared size."""
    if entry.compress_type == zipfile.ZIP_STORED:
        return  # a stored entry takes exactly its size on disk
    if entry.compress_type != zipfile.ZIP_DEFLATED:
        raise BadInput(f"{name}: unsupported ZIP compression in {entry.filename!r}", code="MALFORMED_FILE")
    f.seek(entry.header_offset)
    header = f.read(_LOCAL_HEADER.size)
    signature, *_, name_len, extra_len = _LOCAL_HEADER.unpack(header)
    if signature != _LOCAL_SIGNATURE:
        raise BadInput(f"{name}: a ZIP entry has no local header", code="MALFORMED_FILE")
    f.seek(entry.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    left, inflated = entry.compress_size, 0
    while left > 0 and not inflater.eof:
        chunk = f.read(min(_VERIFY_CHUNK, left))
        if not chunk:
            break
        left -= len(chunk)
        data = inflater.decompress(chunk, _VERIFY_CHUNK)
        while True:
            inflated += len(data)
            if inflated > entry.file_size:
                raise _too_large(
                    name,
                    f"a part of the workbook holds more than its header declares ({entry.file_size:,} bytes)",
                    declared_bytes=entry.file_size,
                )
            if not inflater.unconsumed_tail:
                break
            data = inflater.decompress(inflater.unconsumed_tail, _VERIFY_CHUNK)

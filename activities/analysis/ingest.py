"""Turn one user-uploaded file into a Parquet file the analysis agents can read with DuckDB.

Supported inputs, chosen by the extension of the name the user gave the file and checked against its
content: delimited text (``.csv``, ``.tsv``, ``.tab``, ``.txt``; delimiter sniffed among ``,`` ``;`` tab and
``|``), JSON lines (``.jsonl``, ``.ndjson``), JSON (``.json``: an array of objects), Parquet and Excel
(``.xlsx``/``.xls``, first sheet).

Text is never read whole into Python: a 64 KB sample decides the encoding and the delimiter, non-UTF-8
text is transcoded in chunks into a temporary UTF-8 file next to the destination, and DuckDB streams the
rows into Parquet. Delimited text keeps its original cell text (every column is ``VARCHAR``; the cleaning
agents decide types). Header names are made usable: blanks become ``column_<n>``, duplicates get ``_2``,
``_3``… Every problem with the input is a :class:`~conveyor.errors.BadInput` with a specific ``code`` and a
message naming the file; a file over the size limit is :class:`~conveyor.errors.TooLarge`.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from charset_normalizer import from_bytes
from charset_normalizer.utils import is_multi_byte_encoding

from activities.analysis.duck import connect
from activities.analysis.limits import AnalysisLimits, verify_workbook_sizes
from activities.analysis.sql import qident, qstr
from conveyor.errors import BadInput, TooLarge

SAMPLE_BYTES = 64 * 1024
"""How much of a text file is read to decide its encoding and delimiter."""
CHUNK_CHARS = 1 << 20
"""Characters per chunk when transcoding to UTF-8."""
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")
"""Delimiter candidates, in order of preference when the sample cannot tell them apart."""

_EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "xlsx",
    ".xls": "xls",
}
_TEXT_FORMATS = frozenset({"csv", "jsonl", "json"})

_PARQUET_MAGIC = b"PAR1"
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"
_KNOWN_BINARY: tuple[tuple[bytes, str], ...] = (
    (_PARQUET_MAGIC, "a Parquet file"),
    (_ZIP_MAGIC, "a ZIP archive (an Excel workbook?)"),
    (_OLE_MAGIC, "a legacy Office document (an .xls workbook?)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
)
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL_BYTES = bytes([*range(0, 9), 11, 12, *range(14, 32), 127])
_LATIN_FALLBACK = "conveyor-cp1252-fallback"

_RESOURCE_ERRORS = (duckdb.OutOfMemoryException, duckdb.InterruptException)
_CSV_LINE = re.compile(r"CSV Error on Line: (\d+)")
_CSV_FIELDS = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")


@dataclass(frozen=True)
class IngestedFile:
    """What :func:`convert_to_parquet` read: the source's format and shape."""

    name: str
    """The name the user gave the file."""
    format: str
    """``csv`` (any delimited text), ``jsonl``, ``json``, ``parquet``, ``xlsx`` or ``xls``."""
    encoding: str | None
    """Text encoding as a Python codec name (``utf-8``, ``utf-8-sig``, ``utf-16``, ``cp1252``…); ``None`` for
    binary formats."""
    delimiter: str | None
    """The field delimiter of delimited text; ``None`` for other formats."""
    rows: int
    """Data rows written (the header excluded)."""
    columns: list[str]
    """Column names as written to Parquet (cleaned: no blanks, no duplicates)."""
    bytes_in: int
    """Size of the source file."""


# --------------------------------------------------------------------------------------------- helpers


def _fail(code: str, message: str) -> BadInput:
    """A :class:`BadInput` with a code (callers ``raise`` it)."""
    return BadInput(message, code=code)


def clean_column_names(raw: Sequence[str]) -> list[str]:
    """Strip header names, name blanks ``column_<n>`` (1-based) and suffix duplicates ``_2``, ``_3``…"""
    names = [name.strip() or f"column_{i}" for i, name in enumerate(raw, start=1)]
    taken = {name.lower() for name in names}
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        candidate, n = name, 1
        while candidate.lower() in seen or (n > 1 and candidate.lower() in taken):
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate.lower())
        out.append(candidate)
    return out


def _cp1252_fallback(err: UnicodeError) -> tuple[str, int]:
    """Codec error handler: decode bytes that are not valid in the source encoding as cp1252/latin-1."""
    if not isinstance(err, UnicodeDecodeError):
        raise err
    bad = err.object[err.start : err.end]
    return "".join(bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in bad), err.end


codecs.register_error(_LATIN_FALLBACK, _cp1252_fallback)


# ---------------------------------------------------------------------------------- encoding detection


def _read_head(path: Path, size: int = SAMPLE_BYTES) -> bytes:
    """The first ``size`` bytes of a file."""
    with path.open("rb") as f:
        return f.read(size)


def _binary_kind(head: bytes) -> str | None:
    """What a known binary format this content starts like, if any."""
    return next((what for magic, what in _KNOWN_BINARY if head.startswith(magic)), None)


def _bom_encoding(sample: bytes) -> str | None:
    """The encoding a byte order mark announces."""
    return next((enc for bom, enc in _BOMS if sample.startswith(bom)), None)


def _utf16_without_bom(sample: bytes) -> str | None:
    """``utf-16-le``/``utf-16-be`` when the sample looks like BOM-less UTF-16 of mostly ASCII text."""
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def _looks_binary(sample: bytes) -> bool:
    """Whether a (non-UTF-16/32) sample holds NUL bytes or too many control characters for text."""
    if b"\x00" in sample:
        return True
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls > max(2, len(sample) // 100)


def _is_utf8(sample: bytes, complete: bool) -> bool:
    """Whether the sample is valid UTF-8 (a character cut at the end of an incomplete sample is fine)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def _decodes(sample: bytes, encoding: str) -> bool:
    """Whether the sample decodes in this encoding without errors."""
    try:
        sample.decode(encoding)
    except UnicodeDecodeError:
        return False
    return True


def _legacy_encoding(sample: bytes) -> str | None:
    """A non-UTF-8 encoding for the sample from charset-normalizer, preferring cp1252 among equals."""
    results = from_bytes(sample)
    best = results.best()
    if best is None:
        return None
    tied = [m for m in results if m.chaos == best.chaos and m.coherence == best.coherence]
    if any("cp1252" in m.could_be_from_charset for m in tied):
        return "cp1252"
    if best.coherence < 0.2 and not is_multi_byte_encoding(best.encoding) and _decodes(sample, "cp1252"):
        return "cp1252"
    return best.encoding


def _sniff_encoding(sample: bytes, complete: bool, name: str) -> str:
    """The encoding of a text sample; ``BINARY_FILE`` when it is not text."""
    kind = _binary_kind(sample)
    if kind is not None:
        raise _fail("BINARY_FILE", f"{name} is not text: it looks like {kind}")
    bom = _bom_encoding(sample) or _utf16_without_bom(sample)
    if bom is not None:
        return bom
    if _looks_binary(sample):
        raise _fail("BINARY_FILE", f"{name} is not text: it holds binary data (NUL or control bytes)")
    if _is_utf8(sample, complete):
        return "utf-8"
    encoding = _legacy_encoding(sample)
    if encoding is None:
        raise _fail("BINARY_FILE", f"{name} is not text in any known encoding")
    return encoding


def detect_encoding(path: Path) -> str:
    """The text encoding of a file as a Python codec name, from its BOM or a sample of its bytes."""
    sample = _read_head(path)
    return _sniff_encoding(sample, len(sample) < SAMPLE_BYTES, path.name)


def _decode_sample(sample: bytes, encoding: str, complete: bool) -> str:
    """The sample as text (a BOM dropped, a character cut at the end ignored)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors=_LATIN_FALLBACK)
    return decoder.decode(sample, final=complete)


def _only_whitespace(path: Path, encoding: str) -> bool:
    """Whether the whole file is whitespace (streamed; called only when its sample is)."""
    with path.open("r", encoding=encoding, errors=_LATIN_FALLBACK) as f:
        while chunk := f.read(CHUNK_CHARS):
            if chunk.strip():
                return False
    return True


def _transcode(src: Path, encoding: str, dst: Path) -> None:
    """Stream ``src`` from ``encoding`` into ``dst`` as UTF-8, chunk by chunk (line endings kept)."""
    strict = encoding.startswith(("utf-16", "utf-32"))
    errors = "strict" if strict else _LATIN_FALLBACK
    with (
        src.open("r", encoding=encoding, errors=errors, newline="") as fin,
        dst.open("w", encoding="utf-8", newline="") as fout,
    ):
        while chunk := fin.read(CHUNK_CHARS):
            fout.write(chunk)


# ----------------------------------------------------------------------------------- delimiter sniffing


def _records(sample: str, delimiter: str) -> list[list[str]]:
    """The sample's records for a delimiter (quotes respected), the last one dropped as maybe cut short."""
    try:
        records = [row for row in csv.reader(io.StringIO(sample), delimiter=delimiter) if row]
    except csv.Error:
        return []
    return records[:-1] if len(records) > 2 else records


def _delimiter_score(sample: str, delimiter: str) -> tuple[float, int]:
    """How well a delimiter explains the sample: (share of records as wide as the header, header width)."""
    records = _records(sample, delimiter)
    if not records or len(records[0]) < 2:
        return (0.0, 0)
    width = len(records[0])
    consistent = sum(1 for row in records if len(row) == width)
    return (consistent / len(records), width)


def sniff_delimiter(sample: str) -> str:
    """The most likely field delimiter (``,`` ``;`` tab or ``|``) of a text sample; ``,`` when unclear."""
    text = sample.lstrip("\ufeff")
    scores = {d: _delimiter_score(text, d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: (scores[d], -DELIMITERS.index(d)))
    return best if scores[best][1] >= 2 else ","


def _header(sample: str, delimiter: str, name: str) -> list[str]:
    """The header record of a delimited sample."""
    try:
        first = next(csv.reader(io.StringIO(sample), delimiter=delimiter), None)
    except csv.Error as exc:
        raise _fail("MALFORMED_FILE", f"{name}: line 1 (the header) cannot be parsed: {exc}") from exc
    if not first:
        raise _fail("MALFORMED_FILE", f"{name}: line 1 (the header) is empty")
    return first


# ------------------------------------------------------------------------------------ DuckDB plumbing


@dataclass(frozen=True)
class _Work:
    """Where one conversion works (its scratch folder) and the limits its DuckDB connections get."""

    dir: Path
    limits: AnalysisLimits

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the worker's limits that spills into this conversion's folder."""
        return connect(self.limits, self.dir)


def _copy_to_parquet(con: duckdb.DuckDBPyConnection, select: str, out: Path) -> int:
    """Write a SELECT to a Parquet file; the number of rows written."""
    row = con.execute(f"COPY ({select}) TO {qstr(str(out))} (FORMAT parquet)").fetchone()
    return int(row[0]) if row else 0


def _schema(con: duckdb.DuckDBPyConnection, source: str) -> list[tuple[str, str]]:
    """(column, type) pairs of a table function."""
    relation = con.sql(f"SELECT * FROM {source}")
    return [(c, str(t)) for c, t in zip(relation.columns, relation.types, strict=True)]


def _output_expr(column: str, type_name: str) -> str:
    """A column as written out: timestamps with a time zone become UTC timestamps.

    DuckDB's Python client needs ``pytz`` to fetch ``TIMESTAMP WITH TIME ZONE`` values, so agents get plain
    UTC timestamps instead (the instant is kept).
    """
    if type_name == "TIMESTAMP WITH TIME ZONE":
        return f"timezone('UTC', {qident(column)})"
    return qident(column)


def _renaming_select(source: str, schema: Sequence[tuple[str, str]], names: Sequence[str]) -> str:
    """``SELECT col AS clean_name, …`` over a table function."""
    pairs = zip(schema, names, strict=True)
    parts = ", ".join(f"{_output_expr(column, kind)} AS {qident(name)}" for (column, kind), name in pairs)
    return f"SELECT {parts} FROM {source}"


def _duckdb_message(exc: duckdb.Error, path: Path, name: str) -> str:
    """The first line of a DuckDB error, with our working path replaced by the user's file name."""
    first = str(exc).split("\n", 1)[0].replace(str(path), name)
    return re.sub(r"^[A-Za-z ]+ Error: ", "", first)


def _first_ragged_line(path: Path, delimiter: str, width: int) -> tuple[int, int] | None:
    """Streamed scan for the first record whose width differs from the header: (physical line, fields).

    DuckDB numbers records, not lines, so a quoted line break earlier in the file shifts its count; this
    scan (only run once DuckDB has found a ragged row) gives the line a text editor would show.
    """
    try:
        with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter)
            next(reader, None)
            start = reader.line_num
            for record in reader:
                if record and len(record) != width:
                    return start + 1, len(record)
                start = reader.line_num
    except csv.Error:
        return None
    return None


def _csv_error(exc: duckdb.Error, path: Path, name: str, delimiter: str, width: int) -> BadInput:
    """Map a DuckDB CSV reader error to RAGGED_ROWS or MALFORMED_FILE."""
    text = str(exc)
    line = _CSV_LINE.search(text)
    where = f"line {line.group(1)}" if line else "a row"
    fields = _CSV_FIELDS.search(text)
    if fields:
        located = _first_ragged_line(path, delimiter, width)
        at, count = (f"line {located[0]}", located[1]) if located else (where, int(fields.group(2)))
        return _fail("RAGGED_ROWS", f"{name}: {at} has {count} fields but the header has {width}")
    if "unterminated quote" in text:
        return _fail("MALFORMED_FILE", f"{name}: {where} has a quoted value that is never closed")
    if "Maximum line size" in text:
        return _fail("MALFORMED_FILE", f"{name}: {where} is too long (over the 2 MB line limit)")
    return _fail("MALFORMED_FILE", f"{name}: {where} cannot be read: {_duckdb_message(exc, path, name)}")


# ------------------------------------------------------------------------------------------ text input


@dataclass(frozen=True)
class _Text:
    """A text source ready for DuckDB: a UTF-8 path, its encoding and a decoded sample."""

    path: Path
    encoding: str
    sample: str


def _prepare_text(src: Path, name: str, work: _Work, *, native: Iterable[str], repair: bool = False) -> _Text:
    """Sniff the encoding, reject empty/binary input and transcode to UTF-8 unless DuckDB reads it natively.

    ``repair`` transcodes a file whose sample looked like UTF-8 but that DuckDB found invalid further on:
    the invalid bytes are read as cp1252, and the encoding reported is ``cp1252`` when the sample was ASCII.
    """
    raw = _read_head(src)
    complete = len(raw) < SAMPLE_BYTES
    encoding = _sniff_encoding(raw, complete, name)
    sample = _decode_sample(raw, encoding, complete)
    if not sample.strip() and (complete or _only_whitespace(src, encoding)):
        raise _fail("EMPTY_FILE", f"{name} holds only whitespace")
    if encoding in native and not repair:
        return _Text(src, encoding, sample)
    target = work.dir / "utf8.txt"
    try:
        _transcode(src, encoding, target)
    except UnicodeDecodeError as exc:
        raise _fail("MALFORMED_FILE", f"{name} is not valid {encoding}: {exc.reason}") from exc
    reported = "cp1252" if repair and raw.isascii() else encoding
    return _Text(target, reported, sample)


def _csv_source(path: Path, delimiter: str, names: Sequence[str]) -> str:
    """The ``read_csv`` call: fixed dialect, header skipped, every column VARCHAR, ragged rows errors."""
    columns = "{" + ", ".join(f"{qstr(n)}: 'VARCHAR'" for n in names) + "}"
    return (
        f"read_csv({qstr(str(path))}, auto_detect=false, header=true, delim={qstr(delimiter)}, "
        f"quote='\"', escape='\"', columns={columns}, strict_mode=true)"
    )


def _convert_csv(src: Path, name: str, out: Path, work: _Work) -> IngestedFile:
    """Delimited text → Parquet (retried with a cp1252 fallback when the UTF-8 turns out invalid)."""
    native = ("utf-8", "utf-8-sig")
    info = _convert_csv_text(_prepare_text(src, name, work, native=native), src, name, out, work)
    if info is None:
        text = _prepare_text(src, name, work, native=native, repair=True)
        info = _convert_csv_text(text, src, name, out, work)
    if info is None:  # pragma: no cover - a transcoded file is valid UTF-8
        raise _fail("MALFORMED_FILE", f"{name} is not valid text")
    return info


def _convert_csv_text(text: _Text, src: Path, name: str, out: Path, work: _Work) -> IngestedFile | None:
    """Run DuckDB over prepared delimited text; ``None`` when ``src`` read as UTF-8 held invalid bytes."""
    delimiter = sniff_delimiter(text.sample)
    names = clean_column_names(_header(text.sample, delimiter, name))
    try:
        with work.connect() as con:
            rows = _copy_to_parquet(con, f"SELECT * FROM {_csv_source(text.path, delimiter, names)}", out)
    except duckdb.InvalidInputException as exc:
        if "Invalid unicode" in str(exc) and text.path == src:
            return None
        raise _csv_error(exc, text.path, name, delimiter, len(names)) from exc
    return IngestedFile(name, "csv", text.encoding, delimiter, rows, names, src.stat().st_size)


def _json_source(
    path: Path, fmt: str, records: str, sample: int, columns: Sequence[tuple[str, str]] | None = None
) -> str:
    """The ``read_json`` call: types inferred from the first ``sample`` records, or the ``columns`` given."""
    typed = ""
    if columns is not None:
        typed = ", columns={" + ", ".join(f"{qstr(c)}: {qstr(t)}" for c, t in columns) + "}"
    return f"read_json({qstr(str(path))}, format='{fmt}', records={records}, sample_size={sample}{typed})"


_TEXT_TYPES = frozenset({"VARCHAR", "JSON"})
_SCALAR_TYPE = re.compile(r"^[A-Z ]+$")
"""A DuckDB type name without parameters or nesting (BIGINT, DOUBLE, DATE, TIMESTAMP WITH TIME ZONE…)."""


def _keys_beyond_sample(con: duckdb.DuckDBPyConnection, path: Path, fmt: str, known: set[str]) -> list[str]:
    """Top-level keys of every record that the sampled schema lacks (one streamed pass, keys only)."""
    source = f"read_json_objects({qstr(str(path))}, format='{fmt}')"  # raw objects: no type inference
    found = con.execute(f"SELECT DISTINCT unnest(json_keys(json)) AS k FROM {source} ORDER BY k").fetchall()
    return [str(k) for (k,) in found if str(k) not in known]


def _widened(schema: Sequence[tuple[str, str]], *, all_typed: bool) -> list[tuple[str, str]]:
    """The schema with nested types (``all_typed``: every non-text type) read as JSON, which any value fits."""
    return [(c, t if t in _TEXT_TYPES or (_SCALAR_TYPE.match(t) and not all_typed) else "JSON") for c, t in schema]


def _check_json_ends(path: Path, name: str) -> None:
    """A ``.json`` file must end with the bracket its first character opens (DuckDB forgives truncation)."""
    with path.open("rb") as f:
        head = f.read(SAMPLE_BYTES).lstrip()
        f.seek(max(0, path.stat().st_size - 4096))
        tail = f.read().rstrip()
    opener = head[:1]
    closer = {b"[": b"]", b"{": b"}"}.get(opener)
    if closer is None:
        raise _fail("MALFORMED_FILE", f"{name}: expected a JSON array of objects, found {opener!r} first")
    if not tail.endswith(closer):
        raise _fail("MALFORMED_FILE", f"{name}: the JSON is truncated (no closing {closer.decode()!r})")


def _json_shape_error(con: duckdb.DuckDBPyConnection, path: Path, fmt: str, name: str) -> BadInput:
    """Explain why DuckDB could not read the JSON as records: no records, or a record that is no object."""
    source = _json_source(path, fmt, "false", 1)
    total_row = con.execute(f"SELECT count(*) FROM {source}").fetchone()
    if not total_row or total_row[0] == 0:
        return _fail("NO_DATA_ROWS", f"{name} holds no records")
    bad = con.execute(
        f"SELECT n, json_type(json) FROM (SELECT row_number() OVER () AS n, json FROM {source}) "
        "WHERE json_type(json) <> 'OBJECT' LIMIT 1"
    ).fetchone()
    if bad:
        kind = str(bad[1]).lower()
        return _fail("MALFORMED_FILE", f"{name}: record {bad[0]} is a JSON {kind}, not an object")
    return _fail("MALFORMED_FILE", f"{name}: records with empty keys or no keys cannot be read as a table")


def _first_bad_json_line(path: Path) -> tuple[int, str] | None:
    """Streamed scan of JSON lines for the first line that does not parse: (line, reason).

    Run only once DuckDB has failed: its own line numbers for JSON are off by one.
    """
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except json.JSONDecodeError as exc:
                return number, exc.msg
            except RecursionError:
                return number, "nested too deeply"
    return None


def _json_error(exc: duckdb.Error, path: Path, name: str, fmt: str) -> BadInput:
    """Map a DuckDB JSON reader error to MALFORMED_FILE, naming the bad line of JSON lines."""
    bad = _first_bad_json_line(path) if fmt == "jsonl" else None
    if bad is not None:
        return _fail("MALFORMED_FILE", f"{name}: line {bad[0]} is not valid JSON ({bad[1]})")
    # DuckDB's own line/record numbers for JSON are off by one: leave them out
    message = re.sub(r" in (?:line|record/value) \d+", "", _duckdb_message(exc, path, name))
    message = message.strip().rstrip(".")
    return _fail("MALFORMED_FILE", f"{name} is not valid JSON: {message}")


def _convert_json(src: Path, name: str, out: Path, work: _Work, fmt: str) -> IngestedFile:
    """JSON lines or a JSON array of objects → Parquet (retried with a cp1252 fallback like CSV)."""
    native = ("utf-8",)
    info = _convert_json_text(_prepare_text(src, name, work, native=native), src, name, out, work, fmt)
    if info is None:
        text = _prepare_text(src, name, work, native=native, repair=True)
        info = _convert_json_text(text, src, name, out, work, fmt)
    if info is None:  # pragma: no cover - a transcoded file is valid UTF-8
        raise _fail("MALFORMED_FILE", f"{name} is not valid text")
    return info


def _convert_json_text(text: _Text, src: Path, name: str, out: Path, work: _Work, fmt: str) -> IngestedFile | None:
    """Run DuckDB over prepared JSON (types as DuckDB infers them); ``None`` when UTF-8 needs repair."""
    if fmt == "json":
        _check_json_ends(text.path, name)
    duck_fmt = "newline_delimited" if fmt == "jsonl" else "auto"
    sample = work.limits.json_sample_records
    source = _json_source(text.path, duck_fmt, "true", sample)
    with work.connect() as con:
        try:
            schema = _schema(con, source)
            extra = _keys_beyond_sample(con, text.path, duck_fmt, {c for c, _ in schema})
            if extra:  # keys first seen after the sample: kept, as JSON
                schema = [*_widened(schema, all_typed=False), *((k, "JSON") for k in extra)]
                source = _json_source(text.path, duck_fmt, "true", sample, schema)
            names = clean_column_names([c for c, _ in schema])
            try:
                rows = _copy_to_parquet(con, _renaming_select(source, schema, names), out)
            except (duckdb.InvalidInputException, duckdb.ConversionException):
                # a value past the sample does not fit the sampled type: read the typed columns as JSON
                schema = _widened(schema, all_typed=True)
                source = _json_source(text.path, duck_fmt, "true", sample, schema)
                rows = _copy_to_parquet(con, _renaming_select(source, schema, names), out)
        except duckdb.BinderException:
            raise _json_shape_error(con, text.path, duck_fmt, name) from None
        except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
            if "invalid UTF-8" in str(exc) and text.path == src:
                return None
            raise _json_error(exc, text.path, name, fmt) from exc
    return IngestedFile(name, fmt, text.encoding, None, rows, names, src.stat().st_size)


# ---------------------------------------------------------------------------------------- binary input


def _check_parquet(src: Path, name: str) -> None:
    """A Parquet file starts and ends with ``PAR1``."""
    size = src.stat().st_size
    with src.open("rb") as f:
        head = f.read(4)
        f.seek(max(0, size - 4))
        tail = f.read(4)
    if head != _PARQUET_MAGIC or tail != _PARQUET_MAGIC or size < 12:
        kind = _binary_kind(head)
        found = f"it looks like {kind}" if kind else "the PAR1 markers are missing"
        raise _fail("MALFORMED_FILE", f"{name} is not a valid Parquet file: {found}")


def _convert_parquet(src: Path, name: str, out: Path, work: _Work) -> IngestedFile:
    """Parquet → Parquet (rewritten: validates every page and cleans the column names)."""
    _check_parquet(src, name)
    source = f"read_parquet({qstr(str(src))})"
    with work.connect() as con:
        try:
            schema = _schema(con, source)
            names = clean_column_names([c for c, _ in schema])
            rows = _copy_to_parquet(con, _renaming_select(source, schema, names), out)
        except _RESOURCE_ERRORS:
            raise
        except duckdb.Error as exc:  # corrupt pages surface as many different DuckDB error types
            message = _duckdb_message(exc, src, name)
            raise _fail("MALFORMED_FILE", f"{name} is a corrupt Parquet file: {message}") from exc
    return IngestedFile(name, "parquet", None, None, rows, names, src.stat().st_size)


def _check_excel(src: Path, name: str) -> None:
    """An Excel workbook is a ZIP (xlsx) or an OLE compound document (xls)."""
    head = _read_head(src, 8)
    if not head.startswith((_ZIP_MAGIC, _OLE_MAGIC)):
        kind = _binary_kind(head)
        found = f"it looks like {kind}" if kind else "it is neither an xlsx (ZIP) nor an xls (OLE) file"
        raise _fail("MALFORMED_FILE", f"{name} is not an Excel workbook: {found}")


def _read_first_sheet(src: Path, name: str, max_cells: int) -> list[list[Any]]:
    """The cells of the first worksheet (python-calamine; the format is taken from the content).

    TOO_MANY_CELLS when the sheet's used range is over ``max_cells``, before its cells become Python objects.
    """
    from python_calamine import CalamineWorkbook

    try:
        with src.open("rb") as f:
            workbook = CalamineWorkbook.from_filelike(f)
        if not workbook.sheet_names:
            raise _fail("MALFORMED_FILE", f"{name} has no worksheets")
        sheet = workbook.get_sheet_by_index(0)
        cells = sheet.height * sheet.width
        if cells > max_cells:
            raise BadInput(
                f"{name}: the first worksheet has {cells:,} cells ({sheet.height:,} rows x {sheet.width:,} "
                f"columns); the limit is {max_cells:,}",
                code="TOO_MANY_CELLS",
                details={"file": name, "cells": cells, "limit_cells": max_cells},
            )
        rows: list[list[Any]] = sheet.to_python(skip_empty_area=True)
    except BadInput:
        raise
    except Exception as exc:  # calamine raises its own, undocumented exception types
        raise _fail("MALFORMED_FILE", f"{name} is not a readable Excel workbook: {exc}") from exc
    return rows


def _cell_text(value: Any) -> str:
    """A cell value as the text Excel would show (near enough)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    return str(value)


def _excel_column(name: str, values: Iterable[Any]) -> pl.Series:
    """One column: typed when its cells agree on a type, text otherwise; empty cells are null."""
    cells = [None if v == "" or v is None else v for v in values]
    cells = [str(v) if isinstance(v, timedelta) else v for v in cells]
    present = [v for v in cells if v is not None]
    if not present:
        return pl.Series(name, cells, dtype=pl.String)
    if all(isinstance(v, float) and v.is_integer() for v in present):
        cells = [None if v is None else int(v) for v in cells]
    try:
        return pl.Series(name, cells, strict=True)
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        return pl.Series(name, [None if v is None else _cell_text(v) for v in cells], dtype=pl.String)


def _convert_excel(src: Path, name: str, out: Path, fmt: str, limits: AnalysisLimits) -> IngestedFile:
    """First worksheet of an xlsx/xls → Parquet (the whole sheet is held in memory, as calamine does).

    A ZIP-based workbook is refused before it is opened when it would unpack past the limits (a zip bomb).
    """
    _check_excel(src, name)
    verify_workbook_sizes(src, name, limits)
    rows = _read_first_sheet(src, name, limits.xlsx_max_cells)
    if not rows:
        raise _fail("EMPTY_FILE", f"{name}: the first worksheet is empty")
    names = clean_column_names([_cell_text(v) if v not in ("", None) else "" for v in rows[0]])
    body = [r for r in rows[1:] if any(v not in ("", None) for v in r)]
    columns = [_excel_column(n, (r[i] if i < len(r) else None for r in body)) for i, n in enumerate(names)]
    frame = pl.DataFrame(columns)
    frame.write_parquet(out)
    return IngestedFile(name, fmt, None, None, frame.height, names, src.stat().st_size)


# ----------------------------------------------------------------------------------------- entry point


def _check_size(src: Path, name: str, max_bytes: int) -> int:
    """The file size; FILE_TOO_LARGE over the limit, EMPTY_FILE at zero."""
    size = src.stat().st_size
    if size > max_bytes:
        raise TooLarge(f"{name} is {size:,} bytes; the limit is {max_bytes:,} bytes", code="FILE_TOO_LARGE")
    if size == 0:
        raise _fail("EMPTY_FILE", f"{name} is empty (0 bytes)")
    return size


def _format_of(name: str) -> str:
    """The input format from the file name's extension; UNSUPPORTED_FORMAT when unknown."""
    ext = Path(name).suffix.lower()
    fmt = _EXTENSIONS.get(ext)
    if fmt is None:
        known = ", ".join(sorted(_EXTENSIONS))
        what = f"extension {ext!r}" if ext else "no extension"
        raise _fail("UNSUPPORTED_FORMAT", f"{name} has {what}; supported: {known}")
    return fmt


def _dispatch(src: Path, name: str, fmt: str, out: Path, work: _Work) -> IngestedFile:
    """Run the converter for a format, writing ``out``."""
    converters: dict[str, Callable[[], IngestedFile]] = {
        "csv": lambda: _convert_csv(src, name, out, work),
        "jsonl": lambda: _convert_json(src, name, out, work, "jsonl"),
        "json": lambda: _convert_json(src, name, out, work, "json"),
        "parquet": lambda: _convert_parquet(src, name, out, work),
        "xlsx": lambda: _convert_excel(src, name, out, "xlsx", work.limits),
        "xls": lambda: _convert_excel(src, name, out, "xls", work.limits),
    }
    return converters[fmt]()


def convert_to_parquet(
    src: Path, original_name: str, dst: Path, *, max_bytes: int, limits: AnalysisLimits | None = None
) -> IngestedFile:
    """Convert one uploaded file (named ``original_name`` by the user) into a Parquet file at ``dst``.

    ``limits`` caps DuckDB (memory, threads, spill) and what a workbook or a JSON sample may cost; the
    defaults when not given.
    """
    fmt = _format_of(original_name)
    size = _check_size(src, original_name, max_bytes)
    if fmt not in _TEXT_FORMATS and size <= SAMPLE_BYTES and not _read_head(src).strip():
        raise _fail("EMPTY_FILE", f"{original_name} holds only whitespace")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".ingest-") as tmp:
        work = _Work(Path(tmp), limits or AnalysisLimits())
        out = work.dir / "out.parquet"
        info = _dispatch(src, original_name, fmt, out, work)
        if info.rows == 0:
            raise _fail("NO_DATA_ROWS", f"{original_name} has no data rows (a header at most)")
        os.replace(out, dst)
    return info

"""Text into embedding-sized chunks, chunk ids and file decoding: pure functions, no I/O.

A chunk is a contiguous slice of the text (``text[start_char:end_char]``) of at most ``max_tokens`` tokens as
counted by the caller's ``count_tokens``. Chunks follow the text's structure: a markdown heading starts a new
chunk and names the ``section`` of the chunks under it; paragraphs (blank-line separated) are kept whole when
they fit; long paragraphs are cut between sentences, and a sentence longer than ``max_tokens`` between lines,
then words. Each chunk after the first of a section repeats the last sentences of the one before, up to
``overlap_tokens``, so a passage cut at a boundary is still found whole in one chunk.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import charset_normalizer

from conveyor.errors import BadInput

CountTokens = Callable[[str], int]


@dataclass(frozen=True)
class Chunk:
    """One piece of a text to embed, with where it came from."""

    text: str
    index: int
    start_char: int
    end_char: int
    section: str | None
    tokens: int


@dataclass(frozen=True)
class _Unit:
    """A sentence, or a piece of an over-long one, as a span of the text with its token count."""

    start: int
    end: int
    tokens: int
    heading: bool = False


@dataclass
class _Section:
    """A heading (or the text before the first one) and the spans of its paragraphs."""

    title: str | None
    heading: tuple[int, int] | None
    paragraphs: list[tuple[int, int]]


_HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(\S.*)")
_FENCE = re.compile(r" {0,3}(?:```|~~~)")
_CLOSERS = "\"'”’»)]"
_OPENERS = "\"'“‘«(["
#: Sentence ends: terminal punctuation (with closing quotes/brackets) before a space, or a line break before a
#: list item.
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)|\n(?=[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t])")
#: Words that end with a period but rarely end a sentence.
_ABBREVIATIONS = frozenset(
    "mr mrs ms mx dr prof sr jr st mt rev hon gen col capt lt sgt cpl gov sen rep pres fr messrs mme mlle "
    "vs cf viz al eg ie".split()
)
#: Abbreviations that precede a number ("No. 5", "p. 12", "Jan. 3").
_NUMBER_ABBREVIATIONS = frozenset(
    "no nos p pp vol vols fig figs ch sec art approx ca c jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
#: Dotted abbreviations: e.g, i.e, U.S, Ph.D (the final period is the candidate boundary).
_DOTTED = re.compile(r"(?:[A-Za-z]{1,2}\.)+[A-Za-z]{1,2}")
#: Control characters (category Cc) other than whitespace: many of them mean a binary file.
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")


def chunk_text(text: str, *, count_tokens: CountTokens, max_tokens: int = 200, overlap_tokens: int = 40) -> list[Chunk]:
    """Split ``text`` into overlapping chunks of at most ``max_tokens`` tokens along its structure."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be at least 0 and less than max_tokens")
    packer = _Packer(text, count_tokens, max_tokens, overlap_tokens)
    for section in _sections(text):
        if not section.paragraphs:
            continue  # a heading with nothing under it: the next heading starts over
        packer.start_section(section.title)
        if section.heading is not None:
            packer.add_paragraph(_split_long(text, *section.heading, count_tokens, max_tokens), heading=True)
        for start, end in section.paragraphs:
            packer.add_paragraph(_sentence_units(text, start, end, count_tokens, max_tokens))
        packer.flush()
    return packer.chunks


class _Packer:
    """Greedy packing of sentence units into chunks, with overlap inside a section.

    Fitting is decided on the sum of the units' token counts, which is exact for word-piece tokenizers (units
    are separated by whitespace) and cheap: each sentence is tokenized once, each chunk once more to check it.
    """

    def __init__(self, text: str, count: CountTokens, max_tokens: int, overlap_tokens: int) -> None:
        self.text = text
        self.count = count
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.chunks: list[Chunk] = []
        self.section: str | None = None
        self.current: list[_Unit] = []
        self.total = 0  # tokens of ``current``, summed over its units
        self.fresh = 0  # trailing units of ``current`` that are new text: neither overlap nor the section's heading

    def start_section(self, title: str | None) -> None:
        """Begin a section: nothing carries over from the one before."""
        self.section = title
        self.current = []
        self.total = 0
        self.fresh = 0

    def add_paragraph(self, units: list[_Unit], *, heading: bool = False) -> None:
        """Add a paragraph's units; a paragraph that fits a chunk of its own is not cut across two."""
        if heading:
            self.current.extend(_Unit(u.start, u.end, u.tokens, heading=True) for u in units)
            self.total += sum(u.tokens for u in units)
            return
        size = sum(u.tokens for u in units)
        if self.fresh and size <= self.max_tokens < self.total + size:
            self.flush()
            self.trim(size)
        for unit in units:
            self.add(unit)

    def add(self, unit: _Unit) -> None:
        """Append a unit, closing the current chunk first when it would grow past ``max_tokens``."""
        if self.current and self.total + unit.tokens > self.max_tokens:
            if self.fresh:
                self.flush()
            self.trim(unit.tokens)
        self.current.append(unit)
        self.total += unit.tokens
        self.fresh += 1

    def trim(self, room: int) -> None:
        """Drop the oldest overlap (or heading) units until ``room`` more tokens fit."""
        while self.current and self.total + room > self.max_tokens:
            self.total -= self.current.pop(0).tokens

    def flush(self) -> None:
        """Emit the current chunk (if it has new text) and keep its last sentences as the next one's overlap."""
        if not self.fresh:
            return
        units, spilled = list(self.current), list[_Unit]()
        body = self.text[units[0].start : units[-1].end]
        tokens = self.count(body)
        # A tokenizer that is not additive over whitespace can make the sum too low: give up the overlap,
        # then move the last sentences on to the next chunk, until the chunk really fits.
        while tokens > self.max_tokens and len(units) > 1:
            if len(units) > self.fresh - len(spilled):
                units.pop(0)
            else:
                spilled.insert(0, units.pop())
            body = self.text[units[0].start : units[-1].end]
            tokens = self.count(body)
        self.chunks.append(Chunk(body, len(self.chunks), units[0].start, units[-1].end, self.section, tokens))
        tail: list[_Unit] = []
        room = self.overlap_tokens
        for unit in reversed(units[1:]):  # never the whole chunk: the next one must not contain it entirely
            if unit.heading or unit.tokens > room:
                break
            tail.insert(0, unit)
            room -= unit.tokens
        while tail and self.count(self.text[tail[0].start : units[-1].end]) > self.overlap_tokens:
            tail.pop(0)  # the sum was too low (a tokenizer that is not additive over whitespace)
        self.current = tail
        self.total = sum(u.tokens for u in tail)
        self.fresh = 0
        for unit in spilled:
            self.add(unit)


def _sections(text: str) -> list[_Section]:
    """The text's sections (markdown ATX headings outside code fences) and their paragraph spans."""
    sections = [_Section(None, None, [])]
    trail: list[tuple[int, str]] = []
    para: list[int] = []  # [start, end] of the paragraph being read
    in_fence = False

    def close() -> None:
        if para:
            sections[-1].paragraphs.append((para[0], para[1]))
            para.clear()

    pos = 0
    for line in text.splitlines(keepends=True):
        start, pos = pos, pos + len(line)
        content = line.rstrip()
        fence = _FENCE.match(content)
        heading = None if in_fence or fence else _HEADING.fullmatch(content)
        if fence:
            in_fence = not in_fence
        if heading is not None:
            close()
            level = len(heading.group(1))
            title = re.sub(r"[ \t]+#+$", "", heading.group(2)).strip()
            trail = [(lvl, t) for lvl, t in trail if lvl < level] + [(level, title)]
            lead = len(content) - len(content.lstrip())
            sections.append(_Section(" > ".join(t for _, t in trail), (start + lead, start + len(content)), []))
        elif not content and not in_fence:
            close()
        elif content:
            if not para:
                para[:] = [start + len(content) - len(content.lstrip()), 0]
            para[1] = start + len(content)
    close()
    return sections


def _sentence_units(text: str, start: int, end: int, count: CountTokens, max_tokens: int) -> list[_Unit]:
    """A paragraph's sentences, each over-long one cut into pieces of at most ``max_tokens``."""
    units: list[_Unit] = []
    for s, e in _sentences(text, start, end):
        units.extend(_split_long(text, s, e, count, max_tokens))
    return units


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Spans of the sentences of ``text[start:end]``, whitespace trimmed."""
    para = text[start:end]
    spans: list[tuple[int, int]] = []
    cursor = 0
    for match in _BOUNDARY.finditer(para):
        if not _is_boundary(para, match):
            continue
        stop = match.start() if match.group().startswith("\n") else match.end()
        spans.append((cursor, stop))
        cursor = match.end()
    spans.append((cursor, len(para)))
    trimmed = []
    for s, e in spans:
        piece = para[s:e]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            trimmed.append((start + s + lead, start + s + len(piece.rstrip())))
    return trimmed


def _is_boundary(para: str, match: re.Match[str]) -> bool:
    """Whether a candidate sentence end really ends a sentence (not "Mr.", "e.g.", "J. Smith", "said, and")."""
    mark = match.group()
    if mark.startswith("\n"):
        return True
    # Bounded look-around: a paragraph can be megabytes long.
    following = para[match.end() : match.end() + 40].lstrip().lstrip(_OPENERS)[:1]
    if following.islower():
        return False
    if mark.rstrip(_CLOSERS) != ".":
        return True
    words = para[max(0, match.start() - 40) : match.start()].split()
    word = words[-1].lstrip(_OPENERS) if words else ""
    if word.lower() in _ABBREVIATIONS:
        return False
    if word.lower() in _NUMBER_ABBREVIATIONS and following.isdigit():
        return False
    if len(word) == 1 and word.isupper():
        return False  # an initial
    return not _DOTTED.fullmatch(word)


def _split_long(
    text: str, start: int, end: int, count: CountTokens, max_tokens: int, tokens: int | None = None
) -> list[_Unit]:
    """Pieces of at most ``max_tokens`` covering ``text[start:end]``: cut at line breaks, else spaces, else anywhere."""
    tokens = count(text[start:end]) if tokens is None else tokens
    if tokens <= max_tokens:
        return [_Unit(start, end, tokens)]
    for pattern in (r"[^\n]*\S", r"\S+"):
        parts = []
        for m in re.finditer(pattern, text[start:end]):
            lead = len(m.group()) - len(m.group().lstrip())
            parts.append((start + m.start() + lead, start + m.end()))
        if len(parts) > 1:
            return _pack_parts(text, parts, count, max_tokens)
    return _split_chars(text, start, end, count, max_tokens)


def _pack_parts(text: str, parts: list[tuple[int, int]], count: CountTokens, max_tokens: int) -> list[_Unit]:
    """Greedily join consecutive parts into pieces of at most ``max_tokens``; cut a part that is too long alone."""
    sizes = [count(text[s:e]) for s, e in parts]
    units: list[_Unit] = []
    i = 0
    while i < len(parts):
        start = parts[i][0]
        if sizes[i] > max_tokens:
            units.extend(_split_long(text, start, parts[i][1], count, max_tokens, sizes[i]))
            i += 1
            continue
        j, total = i + 1, sizes[i]
        while j < len(parts) and total + sizes[j] <= max_tokens:
            total += sizes[j]
            j += 1
        # The sum is exact for word-piece tokenizers; for others, give parts back until the piece fits.
        tokens = count(text[start : parts[j - 1][1]]) if j - i > 1 else total
        while tokens > max_tokens and j - i > 1:
            j -= 1
            tokens = count(text[start : parts[j - 1][1]])
        units.append(_Unit(start, parts[j - 1][1], tokens))
        i = j
    return units


def _split_chars(text: str, start: int, end: int, count: CountTokens, max_tokens: int) -> list[_Unit]:
    """Cut a run without spaces (a URL, a blob) into the longest prefixes that fit (at least one character)."""
    units = []
    while start < end:
        lo, hi = start + 1, end
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(text[start:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        units.append(_Unit(start, lo, count(text[start:lo])))
        start = lo
    return units


def chunk_id(source: str, text: str) -> str:
    """Stable id of a chunk: a readable slug of its source plus a hash of source and text (same text → same id)."""
    digest = hashlib.sha256(f"{source}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{_slug(source)}#{digest}"


def _slug(source: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-")
    return slug[-limit:].lstrip("-") or "text"


def file_digest(data: bytes) -> str:
    """sha256 of a file's bytes, hex."""
    return hashlib.sha256(data).hexdigest()


def decode_text(data: bytes) -> tuple[str, str | None]:
    """A file's text with newlines as ``\\n``: UTF-8 (BOM dropped), else the likeliest encoding and a warning."""
    body = data[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if not _looks_binary(text):
            return _normalise_newlines(text), None
    guess = _guess_encoding(data)
    if guess is None:
        raise BadInput("not a text file: no encoding decodes it as text", code="UNDECODABLE_FILE")
    encoding, text = guess
    return _normalise_newlines(text.removeprefix("\ufeff")), f"decoded as {encoding}, not UTF-8"


def _guess_encoding(data: bytes) -> tuple[str, str] | None:
    """charset-normalizer's best reading; among equally plausible ones cp1252, the common legacy encoding."""
    results = list(charset_normalizer.from_bytes(data))
    if not results:
        return None
    best = results[0]
    tied = [m for m in results if m.chaos <= best.chaos + 0.01 and m.coherence >= best.coherence - 0.01]
    encoding, text = best.encoding, str(best)
    if any("cp1252" in m.could_be_from_charset for m in tied):
        try:
            encoding, text = "cp1252", data.decode("cp1252")
        except UnicodeDecodeError:
            pass
    return None if _looks_binary(text) else (encoding, text)


def _looks_binary(text: str) -> bool:
    """NUL characters, or more than 1 % control characters other than whitespace: not a text file."""
    if "\x00" in text:
        return True
    return len(_CONTROLS.findall(text)) > len(text) / 100


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")

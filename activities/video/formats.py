"""The container formats Conveyor reads, told from a file's first bytes, and the FFmpeg input options they give.

FFmpeg left to itself sniffs an input's format: a file named ``.mp4`` that holds an HLS playlist is read as HLS,
and the playlist's entries (absolute paths of other local files, another user's blob) are opened and read. So
Conveyor never lets FFmpeg guess: the format is told from the file's own header against a short whitelist, and
every FFmpeg and ffprobe input is opened with that demuxer forced (``-f``) and the ``file`` protocol only
(``-protocol_whitelist file``). Text formats (HLS, concat lists, SDP…) have no place on the whitelist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import BadInput

#: The only protocol an FFmpeg input may use: workers read local copies of blobs, nothing else.
PROTOCOLS = "file"
#: How much of a file is read to tell its container.
HEADER_BYTES = 1024
#: MPEG transport streams repeat a sync byte every 188 bytes.
_TS_PACKET = 188


@dataclass(frozen=True)
class Container:
    """A container Conveyor accepts: its name for people, FFmpeg's demuxer, and ffprobe's ``format_name``."""

    name: str
    demuxer: str
    format_name: str


MOV = Container("mp4/mov", "mov", "mov,mp4,m4a,3gp,3g2,mj2")
MATROSKA = Container("matroska/webm", "matroska", "matroska,webm")
AVI = Container("avi", "avi", "avi")
WAV = Container("wav", "wav", "wav")
OGG = Container("ogg", "ogg", "ogg")
FLAC = Container("flac", "flac", "flac")
MP3 = Container("mp3", "mp3", "mp3")
FLV = Container("flv", "flv", "flv")
MPEGTS = Container("mpegts", "mpegts", "mpegts")
PNG = Container("png", "png_pipe", "png_pipe")
JPEG = Container("jpeg", "jpeg_pipe", "jpeg_pipe")
GIF = Container("gif", "gif", "gif")
#: Every container an upload may be in (SRT subtitles are checked as text and never given to FFmpeg as an input).
WHITELIST: tuple[Container, ...] = (MOV, MATROSKA, AVI, WAV, OGG, FLAC, MP3, FLV, MPEGTS, PNG, JPEG, GIF)
#: ffprobe's ``format_name`` of each whitelisted container.
FORMAT_NAMES = frozenset(c.format_name for c in WHITELIST)

#: (offset, magic bytes, container) for the containers with a fixed signature.
_SIGNATURES: tuple[tuple[int, bytes, Container], ...] = (
    (4, b"ftyp", MOV),
    (0, b"\x1a\x45\xdf\xa3", MATROSKA),
    (0, b"OggS", OGG),
    (0, b"fLaC", FLAC),
    (0, b"ID3", MP3),
    (0, b"FLV", FLV),
    (0, b"\x89PNG\r\n\x1a\n", PNG),
    (0, b"\xff\xd8\xff", JPEG),
    (0, b"GIF8", GIF),
)
_RIFF = {b"AVI ": AVI, b"WAVE": WAV}


def sniff(head: bytes) -> Container | None:
    """The whitelisted container the first bytes of a file announce, or None when it is none of them."""
    for offset, magic, container in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return container
    if head[:4] == b"RIFF":
        return _RIFF.get(head[8:12])
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return MP3
    if len(head) > 2 * _TS_PACKET and all(head[i] == 0x47 for i in range(0, 3 * _TS_PACKET, _TS_PACKET)):
        return MPEGTS
    return None


def read_header(path: Path) -> bytes:
    """The first bytes of a file, enough to tell its container."""
    with path.open("rb") as file:
        return file.read(HEADER_BYTES)


def container_of(path: Path, label: str | None = None) -> Container:
    """The container of a local file, or BadInput (``INVALID_MEDIA``) naming the file, never its path."""
    found = sniff(read_header(path))
    if found is None:
        name = label or path.name
        raise BadInput(
            f"{name} is not a video, audio or image file Conveyor reads: unsupported container "
            f"(supported: {', '.join(c.name for c in WHITELIST)})",
            code="INVALID_MEDIA",
            details={"file": name},
        )
    return found


def input_options(path: Path, label: str | None = None) -> dict[str, str]:
    """FFmpeg options that open ``path`` with its whitelisted demuxer forced and the ``file`` protocol only."""
    return {"f": container_of(path, label).demuxer, "protocol_whitelist": PROTOCOLS}


#: Options of a generated input (``-f lavfi``) and of the frames a preview wrote itself (``-f image2``).
LAVFI = {"f": "lavfi", "protocol_whitelist": PROTOCOLS}
IMAGE_SEQUENCE = {"f": "image2", "protocol_whitelist": PROTOCOLS}

"""Video limits (issue 12, items 5, 7 and 14): job budgets, ``-fs`` on every output, a container whitelist with
forced demuxers, no server paths or ffprobe stderr in errors, titles that fit their column.

Real FFmpeg on tiny generated inputs; the API tests run the in-process stack (loopback only).
"""

from __future__ import annotations

import asyncio
import io
import subprocess
from pathlib import Path
from typing import Any

import ffmpeg
import httpx
import pytest
from temporalio.client import Client

from activities.video.budget import VideoLimits, render_budget
from activities.video.ffmpeg import ffmpeg_command, partial_path, probe, run_ffmpeg
from activities.video.formats import IMAGE_SEQUENCE, LAVFI, MOV, PROTOCOLS, WHITELIST, input_options, sniff
from activities.video.preview import preview_commands
from activities.video.render import SourceMedia, plan_render, plan_speech_track
from activities.video.timeline import check_timeline
from activities.video.transcode import check_spec, plan_transcode
from api.caller import Caller
from api.services import video as service
from conveyor.auth import create_user
from conveyor.db import create_engine, migrate, session_factory
from conveyor.errors import BadInput, ConveyorError, TooLarge
from conveyor.settings import Settings
from conveyor.storage import LocalBlobStore
from tests.helpers.postgres import throwaway_postgres
from tests.helpers.stack import Stack

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "video"
DEFAULTS = VideoLimits.of(Settings())
#: Demuxers an input may be forced to: the whitelist's, generated inputs and a preview's own frames.
ALLOWED_DEMUXERS = {c.demuxer for c in WHITELIST} | {LAVFI["f"], IMAGE_SEQUENCE["f"]}


def _make(out: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2 s clip with sound, a silent one, a 50-minute 1-fps clip, a 10-hour 1-fps clip, a NUT file, an AVI."""
    d = tmp_path_factory.mktemp("limits")
    picture = ["-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=2"]
    sound = ["-f", "lavfi", "-i", "sine=frequency=440:duration=2"]
    x264 = ["-c:v", "libx264", "-preset", "ultrafast"]

    def slow(seconds: int) -> list[str]:
        return ["-f", "lavfi", "-i", f"color=black:s=16x16:r=1:d={seconds}", *x264, "-g", "100000", "-bf", "0"]

    return {
        "clip": _make(d / "clip.mp4", *picture, *sound, *x264, "-c:a", "aac", "-shortest"),
        "silent": _make(d / "silent.mp4", *picture, *x264),
        "fifty_minutes": _make(d / "fifty.mp4", *slow(3000)),
        "ten_hours": _make(d / "ten-hours.mp4", *slow(36_000)),
        "nut": _make(d / "clip.nut", *picture, "-c:v", "mpeg4"),
        "avi": _make(d / "clip.avi", *picture, "-c:v", "mpeg4"),
    }


async def _upload(http: httpx.AsyncClient, path: Path, name: str | None = None, **form: str) -> httpx.Response:
    data = await asyncio.to_thread(path.read_bytes)
    return await http.post("/api/videos/upload", files={"file": (name or path.name, data)}, data=form)


async def _uploaded(http: httpx.AsyncClient, path: Path) -> dict[str, Any]:
    sent = await _upload(http, path)
    assert sent.status_code == 201, sent.text
    body: dict[str, Any] = sent.json()
    return body


def _refused(sent: httpx.Response, limit: str) -> dict[str, Any]:
    """The error body of a 400 BUDGET_EXCEEDED naming ``limit``."""
    assert sent.status_code == 400, sent.text
    error: dict[str, Any] = sent.json()["error"]
    assert error["code"] == "BUDGET_EXCEEDED", error
    assert error["details"]["limit"] == limit and f"CONVEYOR_{limit.upper()}" in error["message"], error
    return error


# item 5: budgets --------------------------------------------------------------------------------------------------


@pytest.mark.needs_ffmpeg
async def test_a_one_fps_file_claiming_ten_hours_is_refused_at_upload(stack: Stack, media: dict[str, Path]) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        error = _refused(await _upload(http, media["ten_hours"]), "video_max_input_seconds")
        assert error["details"]["value"] == pytest.approx(36_000, abs=2)
        assert "ten-hours.mp4" in error["message"]
        listed = await http.get("/api/videos")
        assert listed.json()["total"] == 0  # nothing stored


@pytest.mark.needs_ffmpeg
async def test_each_render_dimension_over_budget_is_refused_before_anything_starts(
    stack: Stack, media: dict[str, Path]
) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        clip = (await _uploaded(http, media["clip"]))["key"]
        long = (await _uploaded(http, media["fifty_minutes"]))["key"]

        async def render(clips: list[str], output: dict[str, Any], **body: Any) -> httpx.Response:
            timeline = {"clips": [{"key": k} for k in clips], "output": output}
            return await http.post("/api/videos/render", json={"timeline": timeline, **body})

        _refused(await render([clip], {"width": 7680, "height": 4320}), "video_max_frame_pixels")
        _refused(await render([clip], {"fps": 120}), "video_max_fps")
        _refused(await render([clip], {"bitrate_kbps": 200_000}), "video_max_bitrate_kbps")
        _refused(await render([clip] * 21, {"width": 320, "height": 180}), "video_max_clips")
        # 50 min of render + 50 min of its captions: past the hour of output a job may produce
        _refused(await render([long], {"width": 320, "height": 180}), "video_max_output_seconds")
        # 50 min of 1080p30 without captions: within the seconds, over seconds × pixels × fps
        error = _refused(
            await render([long], {"width": 1920, "height": 1080}, caption=None, preview=None),
            "video_max_pixel_seconds",
        )
        assert error["details"]["value"] == pytest.approx(3000 * 1920 * 1080 * 30, rel=0.01)
        # a transcode variant of the render is part of the same budget
        variant = {"codec": "h264", "container": "mp4", "width": 7680, "height": 4320}
        _refused(await render([clip], {}, transcodes=[variant]), "video_max_frame_pixels")

        # steps on a stored video: its probed facts are the budget's input
        clip_id = (await _uploaded(http, media["clip"]))["video_id"]
        sent = await http.post(f"/api/videos/{clip_id}/transcode", json={"bitrate_kbps": 100_000})
        _refused(sent, "video_max_bitrate_kbps")
        sent = await http.post(f"/api/videos/{clip_id}/transcode", json={"width": 7680, "height": 4320})
        _refused(sent, "video_max_frame_pixels")

        listed = await http.get("/api/videos")
        assert {v["origin"] for v in listed.json()["items"]} == {"upload"}  # no render row was written


def test_output_seconds_count_the_render_its_captions_and_every_variant() -> None:
    timeline = check_timeline({"clips": [{"key": "a"}, {"key": "b", "trim_end": 4}], "output": {"fps": 25}})
    variants = [check_spec({"codec": "vp9", "container": "webm", "width": 320})]
    budget = render_budget(
        timeline, [("clip 1", 10.0), ("clip 2", 30.0)], caption=True, preview=True, transcodes=variants
    )
    assert budget.output_seconds == 14.0 * 3  # render, captions, one variant; a preview adds no seconds
    assert budget.pixel_seconds == 14.0 * 1280 * 720 * 25 + 14.0 * 320 * 180 * 25
    budget.check(DEFAULTS)


# item 5: -fs on every output -------------------------------------------------------------------------------------


def _input_groups(args: list[str]) -> list[list[str]]:
    """The options of each ``-i`` of an FFmpeg argument list."""
    groups, start = [], 0
    for at, arg in enumerate(args):
        if arg == "-i":
            groups.append(args[start:at])
            start = at + 2
    return groups


@pytest.mark.needs_ffmpeg
def test_every_command_the_pipeline_builds_caps_its_output_and_forces_its_inputs(
    media: dict[str, Path], tmp_path: Path
) -> None:
    clip, silent = (
        SourceMedia(media["clip"], probe(media["clip"])),
        SourceMedia(media["silent"], probe(media["silent"])),
    )
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    timeline = check_timeline(
        {
            "clips": [{"key": "a"}, {"key": "b"}],
            "transitions": [{"kind": "fade", "duration": 0.5}],
            "logo": {"key": "logo"},
            "subtitles": {"srt": "x"},
            "audio": {"key": "music"},
            "output": {"width": 320, "height": 180},
        }
    )
    music = SourceMedia(SAMPLES / "music.m4a", probe(SAMPLES / "music.m4a"))
    out = tmp_path / "out"
    preview = preview_commands(media["clip"], out, [0.5, 1.5], width=160, columns=2, rows=1)
    plans = [
        plan_render(
            timeline, [clip, silent], out / "r.mp4", logo=SAMPLES / "logo.png", music=music, subtitles=srt
        ).args,
        plan_render(timeline, [clip, silent], out / "speech.wav", speech_only=True).args,
        plan_speech_track(clip, out / "a.wav").args,
        plan_speech_track(silent, out / "b.wav").args,
        plan_transcode(
            media["clip"], out / "t.webm", check_spec({"codec": "vp9", "container": "webm"}), has_audio=True
        ).args,
        *preview,
    ]
    for args in plans:
        command = ffmpeg_command(args, partial_path(Path(args[-1])), max_bytes=12345)
        assert command[-3:] == ["-fs", "12345", str(partial_path(Path(args[-1])))], command
        groups = _input_groups(args)
        assert groups, args
        for options in groups:
            assert options[options.index("-f") + 1] in ALLOWED_DEMUXERS, args
            assert options[options.index("-protocol_whitelist") + 1] == PROTOCOLS, args
    # an input FFmpeg would have to sniff is never run
    sniffing = ffmpeg.input(str(media["clip"])).output(str(out / "x.mp4")).get_args()
    with pytest.raises(ValueError, match="-f"):
        run_ffmpeg(sniffing, output=out / "x.mp4", duration_s=2.0)


@pytest.mark.needs_ffmpeg
def test_an_encode_that_reaches_the_size_cap_fails_for_good_and_leaves_nothing(
    media: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "big.mkv"
    plan = plan_transcode(
        media["clip"], out, check_spec({"codec": "h264", "container": "mkv", "crf": 0}), has_audio=True
    )
    with pytest.raises(TooLarge) as err:
        run_ffmpeg(plan.args, output=out, duration_s=2.0, max_bytes=20_000)
    assert err.value.code == "OUTPUT_TOO_LARGE" and err.value.details["limit"] == "video_max_output_bytes"
    assert not err.value.retryable and err.value.to_application_error().non_retryable  # no retry loop
    assert not out.exists() and not partial_path(out).exists()
    run_ffmpeg(plan.args, output=out, duration_s=2.0, max_bytes=50_000_000)  # the same job under a roomy cap
    assert probe(out).duration_s == pytest.approx(2.0, abs=0.2)


# item 7: container whitelist, forced demuxers, no playlists --------------------------------------------------------


def _playlist_naming(target: Path) -> bytes:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2,\n{target}\n#EXT-X-ENDLIST\n".encode()


def _sniffed_format(path: Path) -> str:
    """What ffprobe left to guess makes of a file (format name and duration)."""
    return subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=format_name,duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        text=True,
    ).stdout


@pytest.mark.needs_ffmpeg
async def test_an_mp4_holding_a_playlist_of_another_users_blob_is_refused_at_upload(
    stack: Stack, media: dict[str, Path], tmp_path: Path
) -> None:
    _, victim_key = await stack.new_user()
    _, attacker_key = await stack.new_user()
    async with stack.http(victim_key) as http:
        blob = (await _uploaded(http, media["clip"]))["key"]
    victim_file = stack.blobs.local_path(blob)
    assert victim_file is not None and victim_file.is_file()
    evil = tmp_path / "holiday.mp4"
    evil.write_bytes(_playlist_naming(victim_file))
    # a working attack on FFmpeg left to sniff: it reads the other user's blob through the playlist
    assert (await asyncio.to_thread(_sniffed_format, evil)).startswith("hls,2.")

    async with stack.http(attacker_key) as http:
        sent = await _upload(http, evil)
        assert sent.status_code == 400, sent.text
        error = sent.json()["error"]
        assert error["code"] == "INVALID_MEDIA" and "unsupported container" in error["message"]
        assert str(victim_file.parent) not in sent.text
        assert (await http.get("/api/videos")).json()["total"] == 0


@pytest.mark.needs_ffmpeg
def test_ffmpeg_with_conveyor_flags_refuses_a_playlist_that_got_through(media: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other-user" / "clip.mp4"
    other.parent.mkdir()
    other.write_bytes(media["clip"].read_bytes())
    evil = tmp_path / "holiday.mp4"
    evil.write_bytes(_playlist_naming(other))
    assert _sniffed_format(evil).startswith("hls,2.")  # FFmpeg left to guess follows it

    assert sniff(evil.read_bytes()) is None
    with pytest.raises(BadInput):
        probe(evil)
    # forced to the demuxer its name claims, with local files only, FFmpeg reads nothing the playlist names
    forced = {"f": MOV.demuxer, "protocol_whitelist": PROTOCOLS}
    stolen = tmp_path / "stolen.mp4"
    args = ffmpeg.input(str(evil), **forced).output(str(stolen), c="copy").get_args()
    with pytest.raises(BadInput) as err:
        run_ffmpeg(args, output=stolen, duration_s=2.0)
    assert str(tmp_path) not in err.value.message and not stolen.exists()
    raw = subprocess.run(
        ["ffprobe", "-v", "error", "-f", MOV.demuxer, "-protocol_whitelist", PROTOCOLS, "-i", str(evil)],
        capture_output=True,
    )
    assert raw.returncode != 0


@pytest.mark.needs_ffmpeg
async def test_only_whitelisted_containers_are_accepted(stack: Stack, media: dict[str, Path]) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        sent = await _upload(http, media["nut"])  # a real video FFmpeg reads, in a container off the list
        assert sent.status_code == 400 and sent.json()["error"]["code"] == "INVALID_MEDIA", sent.text
        assert "unsupported container" in sent.json()["error"]["message"]
        concat = b"ffconcat version 1.0\nfile '/etc/passwd'\n"
        sent = await http.post("/api/videos/upload", files={"file": ("list.mkv", concat)})
        assert sent.status_code == 400 and "unsupported container" in sent.json()["error"]["message"], sent.text
        avi = await _uploaded(http, media["avi"])
        assert avi["video_codec"] == "mpeg4"
    assert sniff(media["clip"].read_bytes()[:1024]) == MOV and input_options(media["avi"])["f"] == "avi"


# item 14: no server paths or ffprobe stderr in errors; titles that fit ---------------------------------------------


@pytest.mark.needs_ffmpeg
async def test_errors_name_the_problem_not_server_paths_or_ffprobe_output(stack: Stack, tmp_path: Path) -> None:
    _, key = await stack.new_user()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00garbage" * 200)
    async with stack.http(key) as http:
        sent = await _upload(http, broken)
    assert sent.status_code == 400, sent.text
    message = sent.json()["error"]["message"]
    assert "broken.mp4 is not a readable mp4/mov file" in message, message
    for leak in (str(stack.settings.var_dir), "videos/", "Invalid data", "moov atom", "@ 0x"):
        assert leak not in sent.text, sent.text

    # FFmpeg's own failure (its stderr names the input's path) becomes the problem's name
    args = ffmpeg.input(str(broken), **input_options(broken)).output(str(tmp_path / "o.mp4")).get_args()
    with pytest.raises(ConveyorError) as err:
        run_ffmpeg(args, output=tmp_path / "o.mp4", duration_s=1.0)
    assert err.value.message == "FFmpeg refused the job: an input is not a readable media file"


@pytest.mark.needs_ffmpeg
async def test_a_title_longer_than_its_column_is_a_400_naming_the_field(stack: Stack, media: dict[str, Path]) -> None:
    _, key = await stack.new_user()
    async with stack.http(key) as http:
        sent = await _upload(http, media["clip"], title="t" * 201)
        assert sent.status_code == 400 and sent.json()["error"]["details"]["field"] == "title", sent.text
        clip = (await _uploaded(http, media["clip"]))["key"]
        sent = await http.post("/api/videos/render", json={"timeline": {"clips": [{"key": clip}]}, "title": "t" * 201})
        assert sent.status_code == 400 and sent.json()["error"]["code"] == "TITLE_TOO_LONG", sent.text


@pytest.mark.needs_postgres
async def test_long_titles_on_postgresql_are_a_bad_input_not_a_database_error(client: Client, tmp_path: Path) -> None:
    srt = b"1\n00:00:00,000 --> 00:00:01,000\nhello\n"
    with throwaway_postgres() as url:
        await migrate(url)
        engine = create_engine(url)
        try:
            async with session_factory(engine)() as session:
                user, _ = await create_user(session, "pg-video", 10)
                await session.commit()
                settings = Settings(var_dir=tmp_path, database_url=url)
                blobs = LocalBlobStore(tmp_path / "blobs")
                caller = Caller(user=user, session=session, client=client, blobs=blobs, settings=settings)
                with pytest.raises(BadInput) as err:
                    await service.upload(caller, filename="subs.srt", stream=io.BytesIO(srt), title="é" * 201)
                assert err.value.details["field"] == "title"
                with pytest.raises(BadInput):
                    await service.start_render(caller, timeline_raw={"clips": [{"key": "k"}]}, title="t" * 201)
                stored = await service.upload(caller, filename="subs.srt", stream=io.BytesIO(srt), title="é" * 200)
                assert stored.title == "é" * 200  # the longest title that fits is kept whole
        finally:
            await engine.dispose()

"""Render timelines with real FFmpeg and look at the result: length, size, codecs, pixels and sound levels."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from activities.video.ffmpeg import probe, run_ffmpeg
from activities.video.render import RenderPlan, SourceMedia, plan_render
from activities.video.timeline import Timeline, check_timeline
from conveyor.errors import BadInput

WIDTH, HEIGHT = 640, 360
#: red 0–2 s; fade 1–2 s into blue (its source trimmed to 0.5–2.5 s); cut at 3 s to a 4:3 green clip for 1.6 s
EXPECTED_S = 2.0 + 2.0 - 1.0 + 1.6
MUSIC_HZ = 5000
TRICKY_TEXT = "It's 5:00 \\o/ 100% [ok], a;b %{pts} 'quoted'"
FF = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]


def make(*args: str) -> None:
    subprocess.run([*FF, *args], check=True, timeout=60)


@dataclass(frozen=True)
class Media:
    """The generated inputs of the render tests."""

    red: SourceMedia  # solid red with speech
    blue: SourceMedia  # yellow 0–0.5 s, blue, magenta from 2.5 s; no audio
    green: SourceMedia  # 4:3 solid green; no audio
    logo: Path  # opaque white 64x32
    music: SourceMedia  # a 1 s 5 kHz tone
    subtitles: Path  # one cue, 2.1–2.8 s, in a file name that needs escaping


def source(path: Path) -> SourceMedia:
    return SourceMedia(path, probe(path))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    d = tmp_path_factory.mktemp("render-media")
    subprocess.run(
        ["espeak-ng", "-s", "130", "-v", "en-us", "-w", str(d / "hello.wav"), "Hello from the bakery"],
        check=True,
        timeout=60,
    )
    make(
        "-f", "lavfi", "-i", f"color=c=red:size={WIDTH}x{HEIGHT}:rate=25:duration=2", "-i", str(d / "hello.wav"),
        "-af", "apad", *X264, "-c:a", "aac", "-t", "2", str(d / "red.mp4"),
    )  # fmt: skip
    make(
        "-f", "lavfi", "-i",
        f"color=c=blue:size={WIDTH}x{HEIGHT}:rate=30:duration=3,"
        "drawbox=c=yellow:t=fill:enable='lt(t,0.5)',drawbox=c=magenta:t=fill:enable='gte(t,2.5)'",
        *X264, str(d / "blue.mp4"),
    )  # fmt: skip
    make("-f", "lavfi", "-i", "color=c=lime:size=320x240:rate=25:duration=1.6", *X264, str(d / "green.mp4"))
    make("-f", "lavfi", "-i", "color=c=white:size=64x32", "-frames:v", "1", str(d / "logo.png"))
    make("-f", "lavfi", "-i", f"sine=frequency={MUSIC_HZ}:duration=1", "-c:a", "aac", str(d / "music.m4a"))
    subs = d / "subs it's [1], 100%.srt"
    subs.write_text("1\n00:00:02,100 --> 00:00:02,800\nSUBTITLE LINE\n")
    return Media(
        red=source(d / "red.mp4"),
        blue=source(d / "blue.mp4"),
        green=source(d / "green.mp4"),
        logo=d / "logo.png",
        music=source(d / "music.m4a"),
        subtitles=subs,
    )


def demo_timeline(**output: object) -> Timeline:
    return check_timeline(
        {
            "clips": [{"key": "red"}, {"key": "blue", "trim_start": 0.5, "trim_end": 2.5}, {"key": "green"}],
            "transitions": [{"kind": "fade", "duration": 1.0}, None],
            "text": [{"text": "TITLE", "start": 0.1, "end": 0.7, "position": "top", "font_size": 32}],
            "logo": {"key": "logo", "position": "top-left", "opacity": 0.5, "margin": 16},
            "subtitles": {"srt": "uploaded separately", "font_size": 24},
            "audio": {"key": "music", "volume": 0.5, "duck": True, "loop": True},
            "output": {"width": WIDTH, "height": HEIGHT, "fps": 25, "crf": 30, **output},
        }
    )


@dataclass(frozen=True)
class Rendered:
    """The demo timeline rendered once for the module."""

    plan: RenderPlan
    path: Path


@pytest.fixture(scope="module")
def rendered(media: Media, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    out = tmp_path_factory.mktemp("render-out") / "video.mp4"
    plan = plan_render(
        demo_timeline(),
        [media.red, media.blue, media.green],
        out,
        logo=media.logo,
        music=media.music,
        subtitles=media.subtitles,
    )
    run_ffmpeg(plan.args, output=out, duration_s=plan.duration_s)
    return Rendered(plan, out)


def frame(video: Path, at: float) -> bytes:
    """The decoded RGB frame shown at ``at`` seconds."""
    proc = subprocess.run(
        [*FF, "-ss", f"{at}", "-i", str(video), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert len(proc.stdout) == WIDTH * HEIGHT * 3
    return proc.stdout


def mean_rgb(pixels: bytes, x0: int, y0: int, x1: int, y1: int) -> tuple[float, float, float]:
    """Average colour of the box ``[x0, x1) x [y0, y1)``."""
    totals = [0, 0, 0]
    for y in range(y0, y1):
        row = pixels[(y * WIDTH + x0) * 3 : (y * WIDTH + x1) * 3]
        for channel in range(3):
            totals[channel] += sum(row[channel::3])
    count = (x1 - x0) * (y1 - y0)
    return totals[0] / count, totals[1] / count, totals[2] / count


def near(colour: tuple[float, float, float], expected: tuple[int, int, int], tolerance: float = 25) -> bool:
    return all(abs(c - e) <= tolerance for c, e in zip(colour, expected, strict=True))


def band_level_db(media: Path, start: float, end: float, hz: int) -> float:
    """Mean level, in dB, of the sound near ``hz`` between ``start`` and ``end``."""
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-ss", f"{start}", "-t", f"{end - start}", "-i", str(media),
         "-af", f"bandpass=f={hz}:width_type=q:w=30,volumedetect", "-f", "null", "-"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    found = re.search(r"mean_volume: (-?[\d.]+|-inf) dB", proc.stderr)
    assert found, proc.stderr[-500:]
    return float(found.group(1))


def stream_fields(path: Path) -> dict[str, object]:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,channels,sample_rate", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    streams: list[dict[str, object]] = json.loads(proc.stdout)["streams"]
    return streams[0]


CENTRE = (260, 150, 380, 210)
RED, BLUE, PURPLE, GREEN = (255, 0, 0), (0, 0, 255), (128, 0, 128), (0, 255, 0)


@pytest.mark.needs_ffmpeg
def test_the_render_has_the_asked_length_size_and_codecs(rendered: Rendered) -> None:
    info = probe(rendered.path)
    assert rendered.plan.duration_s == pytest.approx(EXPECTED_S)
    assert abs(info.duration_s - EXPECTED_S) <= 0.15
    assert info.video is not None and (info.video.codec, info.video.width, info.video.height) == ("h264", 640, 360)
    assert info.video.fps == 25.0 and info.has_audio and "mp4" in info.format_name
    assert rendered.plan.args[-1] == str(rendered.path)
    assert rendered.plan.encoder is not None and rendered.plan.encoder.codec == "h264"


@pytest.mark.needs_ffmpeg
def test_the_fade_mixes_the_clips_inside_its_window_only(rendered: Rendered) -> None:
    before, middle, after = (mean_rgb(frame(rendered.path, t), *CENTRE) for t in (0.85, 1.5, 2.2))
    assert near(before, RED), before
    assert near(middle, PURPLE, tolerance=35), middle  # blue's trimmed-off yellow start would show up here
    assert near(after, BLUE), after
    end_of_blue = mean_rgb(frame(rendered.path, 2.9), *CENTRE)
    assert near(end_of_blue, BLUE), end_of_blue  # trim_end stops before the magenta part


@pytest.mark.needs_ffmpeg
def test_the_cut_shows_the_letterboxed_4_3_clip(rendered: Rendered) -> None:
    pixels = frame(rendered.path, 3.7)
    assert near(mean_rgb(pixels, *CENTRE), GREEN)
    assert near(mean_rgb(pixels, 0, 100, 60, 260), (0, 0, 0), tolerance=12)  # 80 px pillarbox bars
    assert near(mean_rgb(pixels, 580, 100, 640, 260), (0, 0, 0), tolerance=12)


@pytest.mark.needs_ffmpeg
def test_logo_is_half_transparent_and_text_shows_only_in_its_window(rendered: Rendered) -> None:
    early = frame(rendered.path, 0.4)
    logo = mean_rgb(early, 22, 22, 74, 42)
    assert near(logo, (255, 128, 128), tolerance=20), logo  # white at opacity 0.5 over red
    title_box = (290, 20, 350, 45)
    with_title = mean_rgb(early, *title_box)
    assert not near(with_title, RED, tolerance=40), with_title
    assert near(mean_rgb(frame(rendered.path, 0.85), *title_box), RED)


@pytest.mark.needs_ffmpeg
def test_subtitles_are_burned_in_during_their_cue(rendered: Rendered) -> None:
    bottom = (230, 318, 410, 346)
    during = mean_rgb(frame(rendered.path, 2.5), *bottom)
    assert during[0] > 40 and during[1] > 40, during  # white letters over pure blue
    assert near(mean_rgb(frame(rendered.path, 2.95), *bottom), BLUE, tolerance=12)


@pytest.mark.needs_ffmpeg
def test_music_loops_to_the_end_and_ducks_under_speech(rendered: Rendered) -> None:
    under_speech = band_level_db(rendered.path, 0.3, 1.2, MUSIC_HZ)
    in_silence = band_level_db(rendered.path, 2.3, 2.9, MUSIC_HZ)
    looped = band_level_db(rendered.path, 3.5, 4.4, MUSIC_HZ)
    assert in_silence > -40 and looped > -40, (in_silence, looped)  # the 1 s tone is still playing at 4 s
    assert under_speech < in_silence - 4, (under_speech, in_silence)


@pytest.mark.needs_ffmpeg
def test_speech_only_is_the_joined_speech_as_16_khz_mono_wav(media: Media, tmp_path: Path) -> None:
    out = tmp_path / "speech.wav"
    plan = plan_render(demo_timeline(), [media.red, media.blue, media.green], out, speech_only=True)
    assert plan.encoder is None and "-filter_complex" in plan.args
    assert not any(name in plan.args[plan.args.index("-filter_complex") + 1] for name in ("xfade", "scale", "amix"))
    run_ffmpeg(plan.args, output=out, duration_s=plan.duration_s)
    info = probe(out)
    assert abs(info.duration_s - EXPECTED_S) <= 0.05 and info.format_name == "wav"
    assert stream_fields(out) == {"codec_name": "pcm_s16le", "sample_rate": "16000", "channels": 1}
    assert band_level_db(out, 0.3, 1.2, 600) > -55  # the speech, where the final video has it
    assert band_level_db(out, 2.3, 2.9, 600) < -80  # the silent blue clip


@pytest.mark.needs_ffmpeg
def test_vp9_webm_without_any_clip_audio_and_empty_captions(media: Media, tmp_path: Path) -> None:
    tl = check_timeline(
        {
            "clips": [{"key": "blue", "trim_start": 0.5}, {"key": "green"}],
            "transitions": [{"kind": "wipeleft", "duration": 0.5}],
            "subtitles": {"from_caption": True},
            "output": {"width": 320, "height": 180, "fps": 24, "codec": "vp9", "container": "webm"},
        }
    )
    silent_captions = tmp_path / "captions.srt"
    silent_captions.write_text("")  # what captioning a timeline without speech gives
    out = tmp_path / "video.webm"
    plan = plan_render(tl, [media.blue, media.green], out, subtitles=silent_captions)
    run_ffmpeg(plan.args, output=out, duration_s=plan.duration_s)
    info = probe(out)
    assert info.video is not None and (info.video.codec, info.video.width, info.video.height) == ("vp9", 320, 180)
    assert "webm" in info.format_name and [s.codec for s in info.streams if s.kind == "audio"] == ["opus"]
    assert abs(info.duration_s - (2.5 + 1.6 - 0.5)) <= 0.15


@pytest.mark.needs_ffmpeg
def test_the_same_clip_and_cut_twice_and_two_silent_clips_render(media: Media, tmp_path: Path) -> None:
    tl = check_timeline(
        {
            "clips": [{"key": "green"}, {"key": "green"}, {"key": "blue"}, {"key": "blue"}],
            "transitions": [None, {"kind": "fade", "duration": 0.4}, None],
            "output": {"width": 320, "height": 180, "fps": 24},
        }
    )
    out = tmp_path / "repeat.mp4"
    plan = plan_render(tl, [media.green, media.green, media.blue, media.blue], out)
    run_ffmpeg(plan.args, output=out, duration_s=plan.duration_s)
    info = probe(out)
    expected = 2 * media.green.info.duration_s + 2 * media.blue.info.duration_s - 0.4
    assert info.has_audio and abs(info.duration_s - expected) <= 0.15, (info.duration_s, expected)


@pytest.mark.needs_ffmpeg
def test_text_with_filter_syntax_is_drawn_literally(media: Media, tmp_path: Path) -> None:
    def render(text: str, out: Path) -> RenderPlan:
        tl = check_timeline(
            {
                "clips": [{"key": "red", "trim_end": 0.5}],
                "text": [{"text": text, "position": "center", "font_size": 20}],
                "output": {"width": WIDTH, "height": HEIGHT, "fps": 25, "allow_gpu": False},
            }
        )
        return plan_render(tl, [media.red], out)

    literal = tmp_path / "literal.txt"
    literal.write_text(TRICKY_TEXT)
    reference = render("PLACEHOLDER", tmp_path / "reference.mp4")
    graph = reference.args.index("-filter_complex") + 1
    assert "text=PLACEHOLDER:" in reference.args[graph]
    reference.args[graph] = reference.args[graph].replace("text=PLACEHOLDER:", f"textfile={literal}:")
    tricky = render(TRICKY_TEXT, tmp_path / "tricky.mp4")
    for plan in (reference, tricky):
        run_ffmpeg(plan.args, output=plan.output, duration_s=plan.duration_s)
    assert frame(tricky.output, 0.2) == frame(reference.output, 0.2)


def test_h265_in_webm_is_refused() -> None:
    with pytest.raises(BadInput) as err:
        demo_timeline(codec="h265", container="webm")
    assert err.value.code == "BAD_TIMELINE" and "H265 cannot go in WEBM" in err.value.message


@pytest.mark.needs_ffmpeg
def test_an_overlay_past_the_end_is_refused_before_ffmpeg_runs(media: Media, tmp_path: Path) -> None:
    tl = check_timeline(
        {
            "clips": [{"key": "red"}, {"key": "green"}],
            "text": [{"text": "ok", "end": 1}, {"text": "too late", "start": 1, "end": 12}],
        }
    )
    out = tmp_path / "never.mp4"
    with pytest.raises(BadInput) as err:
        plan_render(tl, [media.red, media.green], out)
    assert err.value.code == "OVERLAY_PAST_END"
    assert err.value.message == "text overlay 2 ends at 12.0 s but the video is 3.6 s long"
    assert not list(tmp_path.iterdir())


@pytest.mark.needs_ffmpeg
def test_the_bundled_demo_renders(tmp_path: Path) -> None:
    samples = Path(__file__).resolve().parents[2] / "samples" / "video"
    tl = check_timeline(json.loads((samples / "timeline.json").read_text()))
    captions = tmp_path / "captions.srt"  # what the caption step makes from the speech track
    captions.write_text("1\n00:00:00,300 --> 00:00:04,500\nWelcome to the Conveyor bakery.\n")
    out = tmp_path / "demo.mp4"
    plan = plan_render(
        tl,
        [source(samples / "intro.mp4"), source(samples / "outro.mp4")],
        out,
        logo=samples / "logo.png",
        music=source(samples / "music.m4a"),
        subtitles=captions,
    )
    run_ffmpeg(plan.args, output=out, duration_s=plan.duration_s)
    info = probe(out)
    assert abs(info.duration_s - (5.52 + 4.52 - 0.8)) <= 0.15 and info.has_audio
    assert info.video is not None and (info.video.width, info.video.height, info.video.fps) == (640, 360, 25.0)

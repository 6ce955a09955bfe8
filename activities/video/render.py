"""The FFmpeg graph that renders a :class:`Timeline` into one video, or into the speech track it will have.

Every clip is trimmed, letterboxed to the output size and frame rate and given a 48 kHz stereo track (silence when
it has none), so clips can be joined by ``xfade``/``acrossfade`` at the offsets :func:`layout` computes, or by
``concat`` for hard cuts. Text, subtitles and the logo are drawn on the joined video; background music is looped,
ducked under the speech with ``sidechaincompress`` and mixed in. ``speech_only`` gives the joined speech alone as
16 kHz mono WAV, so captions made from it line up with the final video.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from activities.video.encoders import EncoderChoice, choose_encoder
from activities.video.ffmpeg import MediaInfo
from activities.video.formats import LAVFI, input_options
from activities.video.timeline import ClipSpan, Timeline, Transition, layout
from activities.video.transcode import AUDIO, encoder_options
from conveyor.errors import BadInput

#: Font for text overlays (Debian's fonts-dejavu-core); FFmpeg's fontconfig default when missing.
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
#: Sample rate of the rendered audio.
SAMPLE_RATE = 48_000
#: What Whisper listens to.
SPEECH_SAMPLE_RATE = 16_000
#: Background music is compressed this hard while someone speaks.
DUCKING = {"threshold": 0.03, "ratio": 8, "attack": 20, "release": 400}
#: ffmpeg-python has no type hints; its streams are this.
Stream = Any


@dataclass(frozen=True)
class SourceMedia:
    """A local media file and what ffprobe says about it."""

    path: Path
    info: MediaInfo


@dataclass(frozen=True)
class RenderPlan:
    """FFmpeg arguments (the output path last), the output's length and the video encoder (None for speech)."""

    args: list[str]
    output: Path
    duration_s: float
    encoder: EncoderChoice | None


def plan_render(
    timeline: Timeline,
    clips: list[SourceMedia],
    output: Path,
    *,
    logo: Path | None = None,
    music: SourceMedia | None = None,
    subtitles: Path | None = None,
    speech_only: bool = False,
) -> RenderPlan:
    """The FFmpeg arguments rendering ``timeline`` from local copies of its media (the video, or its speech as WAV)."""
    if len(clips) != len(timeline.clips):
        raise ValueError(f"{len(clips)} source files for {len(timeline.clips)} clips")
    spans, total = layout(timeline, [clip.info.duration_s for clip in clips])
    joins = list(timeline.transitions) or [None] * (len(spans) - 1)
    cuts = [(str(clip.path), span.source_start, span.duration) for clip, span in zip(clips, spans, strict=True)]
    inputs = {
        cut: ffmpeg.input(cut[0], **input_options(Path(cut[0]), f"clip {i}"), ss=_num(cut[1]), t=_num(cut[2]))
        for i, cut in enumerate(cuts, start=1)
    }
    sounds = [
        (cut, inputs[cut].audio) if clip.info.has_audio else (("silence", span.duration), _silence(span.duration))
        for cut, clip, span in zip(cuts, clips, spans, strict=True)
    ]
    speech = _join_audio(
        [_clip_audio(a, span) for a, span in zip(_branches(sounds, "asplit"), spans, strict=True)], joins
    )
    if speech_only:
        args = ffmpeg.output(
            speech, str(output), acodec="pcm_s16le", ac=1, ar=SPEECH_SAMPLE_RATE, t=_num(total), f="wav"
        ).get_args()
        return RenderPlan([str(a) for a in args], output, total, None)

    spec = timeline.output
    for i, clip in enumerate(clips):
        if clip.info.video is None:
            raise BadInput(f"clip {i + 1} has no video stream", code="NO_VIDEO", details={"field": f"clips.{i}"})
    choice = choose_encoder(spec.codec, allow_gpu=spec.allow_gpu)
    pictures = _branches([(cut, inputs[cut].video) for cut in cuts], "split")
    video = _join_video([_clip_video(v, span, timeline) for v, span in zip(pictures, spans, strict=True)], joins, spans)
    video = _decorate(video, timeline, total, logo=logo, subtitles=subtitles)
    audio = _with_music(speech, timeline, total, music)
    options = encoder_options(choice, spec.container, crf=spec.crf, bitrate_kbps=spec.bitrate_kbps)
    options.update({"acodec": AUDIO[spec.container], "ar": SAMPLE_RATE, "r": _num(spec.fps), "t": _num(total)})
    args = ffmpeg.output(video, audio, str(output), **options).get_args()
    return RenderPlan([str(a) for a in args], output, total, choice)


def plan_speech_track(source: SourceMedia, output: Path) -> RenderPlan:
    """FFmpeg arguments writing a media file's first audio track (silence when it has none) as 16 kHz mono WAV.

    Whisper reads this file, never the upload itself: its decoder would sniff the upload's format.
    """
    duration = max(source.info.duration_s, 0.1)
    if source.info.has_audio:
        audio = ffmpeg.input(str(source.path), **input_options(source.path)).audio
    else:
        audio = _silence(duration)
    args = ffmpeg.output(
        audio, str(output), acodec="pcm_s16le", ac=1, ar=SPEECH_SAMPLE_RATE, t=_num(duration), f="wav"
    ).get_args()
    return RenderPlan([str(a) for a in args], output, duration, None)


def _num(value: float) -> str:
    """Seconds (or a rate) as FFmpeg reads them, without float noise."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _branches(streams: Sequence[tuple[object, Stream]], split: str) -> list[Stream]:
    """One stream per use: a source used more than once (the same clip and cut twice) goes through ``split``.

    ffmpeg-python merges identical inputs into one node, and FFmpeg needs a split filter to feed one stream
    into several filter chains.
    """
    uses = Counter(key for key, _ in streams)
    splits: dict[object, Stream] = {}
    taken: Counter[object] = Counter()
    out = []
    for key, stream in streams:
        if uses[key] == 1:
            out.append(stream)
            continue
        if key not in splits:
            splits[key] = stream.filter_multi_output(split, uses[key])
        out.append(splits[key].stream(taken[key]))
        taken[key] += 1
    return out


def _silence(duration: float) -> Stream:
    """Silence for a clip without sound."""
    return ffmpeg.input(f"anullsrc=r={SAMPLE_RATE}:cl=stereo", **LAVFI, t=_num(duration)).audio


def _clip_video(source: Stream, span: ClipSpan, timeline: Timeline) -> Stream:
    """One clip's picture, exactly ``span.duration`` long, at the output's size, rate, format and time base."""
    out = timeline.output
    return (
        source.filter("setpts", "PTS-STARTPTS")
        .filter("scale", out.width, out.height, force_original_aspect_ratio="decrease", force_divisible_by=2)
        .filter("pad", out.width, out.height, "(ow-iw)/2", "(oh-ih)/2", color="black")
        .filter("setsar", 1)
        .filter("fps", _num(out.fps))
        .filter("format", "yuv420p")
        # a video stream a little shorter than its container holds its last frame, so offsets stay true
        .filter("tpad", stop_mode="clone", stop_duration=1)
        .filter("trim", duration=_num(span.duration))
        .filter("setpts", "PTS-STARTPTS")
        .filter("settb", "AVTB")
    )


def _clip_audio(audio: Stream, span: ClipSpan) -> Stream:
    """One clip's sound (or silence) as 48 kHz stereo, exactly ``span.duration`` long."""
    return (
        audio.filter("aresample", SAMPLE_RATE)
        .filter("aformat", sample_fmts="fltp", sample_rates=SAMPLE_RATE, channel_layouts="stereo")
        .filter("asetpts", "PTS-STARTPTS")
        .filter("apad", whole_dur=_num(span.duration))
        .filter("atrim", duration=_num(span.duration))
        .filter("asetpts", "PTS-STARTPTS")
    )


def _join_video(clips: list[Stream], joins: list[Transition | None], spans: list[ClipSpan]) -> Stream:
    """Clips one after another: ``xfade`` where a transition is asked for, ``concat`` for a cut."""
    joined = clips[0]
    for i, transition in enumerate(joins, start=1):
        if transition is None:
            joined = ffmpeg.concat(joined, clips[i], v=1, a=0).filter("settb", "AVTB")
        else:
            joined = ffmpeg.filter(
                [joined, clips[i]],
                "xfade",
                transition=transition.kind,
                duration=_num(transition.duration),
                offset=_num(spans[i].starts_at),
            )
    return joined


def _join_audio(clips: list[Stream], joins: list[Transition | None]) -> Stream:
    """Clips' sound one after another: ``acrossfade`` over each transition, ``concat`` for a cut."""
    joined = clips[0]
    for i, transition in enumerate(joins, start=1):
        if transition is None:
            joined = ffmpeg.concat(joined, clips[i], v=0, a=1)
        else:
            joined = ffmpeg.filter([joined, clips[i]], "acrossfade", d=_num(transition.duration))
    return joined


def _place(position: str, margin: int, *, outer: tuple[str, str], inner: tuple[str, str]) -> tuple[str, str]:
    """x and y expressions putting something of size ``inner`` at ``position`` inside ``outer``."""
    (width, height), (w, h) = outer, inner
    vertical = next((side for side in ("top", "bottom") if position.startswith(side)), "middle")
    horizontal = next((side for side in ("left", "right") if position.endswith(side)), "center")
    x = {"left": f"{margin}", "right": f"{width}-{w}-{margin}"}.get(horizontal, f"({width}-{w})/2")
    y = {"top": f"{margin}", "bottom": f"{height}-{h}-{margin}"}.get(vertical, f"({height}-{h})/2")
    return x, y


def _decorate(video: Stream, timeline: Timeline, total: float, *, logo: Path | None, subtitles: Path | None) -> Stream:
    """Text overlays, burned-in subtitles and the logo, in that order (the logo stays on top)."""
    height = timeline.output.height
    for overlay in timeline.text:
        border = max(4, overlay.font_size // 4)
        margin = max(border + 4, round(height * 0.05))
        x, y = _place(overlay.position, margin, outer=("w", "h"), inner=("text_w", "text_h"))
        options: dict[str, object] = {
            "text": overlay.text,  # ffmpeg-python escapes it for the filter graph; no %{…} expansion
            "expansion": "none",
            "fontsize": overlay.font_size,
            "fontcolor": overlay.color,
            "x": x,
            "y": y,
            "enable": f"between(t,{_num(overlay.start)},{_num(overlay.end if overlay.end is not None else total)})",
        }
        if FONT.is_file():
            options["fontfile"] = str(FONT)
        if overlay.box:
            options.update({"box": 1, "boxcolor": "black@0.5", "boxborderw": border})
        video = video.filter("drawtext", **options)
    if timeline.subtitles is not None:
        if subtitles is None:
            raise ValueError("the timeline burns in subtitles but no subtitle file was given")
        if _has_cues(subtitles):  # captions of a silent timeline are empty, which FFmpeg cannot open
            style = f"FontSize={timeline.subtitles.font_size}"
            video = video.filter("subtitles", filename=str(subtitles), force_style=style)
    if timeline.logo is not None:
        if logo is None:
            raise ValueError("the timeline has a logo but no logo file was given")
        spec = timeline.logo
        image = ffmpeg.input(str(logo), **input_options(logo, "logo")).video
        if spec.width is not None:
            image = image.filter("scale", spec.width, -1)
        image = image.filter("format", "rgba").filter("colorchannelmixer", aa=_num(spec.opacity))
        x, y = _place(spec.position, spec.margin, outer=("W", "H"), inner=("w", "h"))
        video = ffmpeg.overlay(video, image, x=x, y=y, eof_action="repeat")
    return video


def _has_cues(srt: Path) -> bool:
    """Whether an SRT file has at least one timed cue."""
    return "-->" in srt.read_text(encoding="utf-8", errors="replace")


def _with_music(speech: Stream, timeline: Timeline, total: float, music: SourceMedia | None) -> Stream:
    """The speech, with the background music looped to the video's length, ducked under it and mixed in."""
    spec = timeline.audio
    if spec is None:
        return speech
    if music is None:
        raise ValueError("the timeline has background music but no music file was given")
    if not music.info.has_audio:
        raise BadInput("the background music file has no audio stream", code="NO_AUDIO", details={"field": "audio"})
    opened = input_options(music.path, "background audio")
    source = ffmpeg.input(str(music.path), **opened, **({"stream_loop": -1} if spec.loop else {}))
    track = (
        source.audio.filter("aresample", SAMPLE_RATE)
        .filter("aformat", sample_fmts="fltp", sample_rates=SAMPLE_RATE, channel_layouts="stereo")
        .filter("atrim", duration=_num(total))
        .filter("asetpts", "PTS-STARTPTS")
        .filter("volume", _num(spec.volume))
    )
    if spec.duck:
        split = speech.filter_multi_output("asplit")
        speech = split[0]
        track = ffmpeg.filter([track, split[1]], "sidechaincompress", **DUCKING)
    return ffmpeg.filter([speech, track], "amix", inputs=2, duration="first", dropout_transition=0, normalize=0)

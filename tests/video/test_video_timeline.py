"""The render timeline: what is refused and why, where each clip lands, and which blobs a render needs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from activities.video.timeline import (
    TRANSITIONS,
    BackgroundAudio,
    ClipSpan,
    Subtitles,
    Timeline,
    blob_keys,
    check_timeline,
    layout,
    video_ids,
)
from conveyor.errors import BadInput

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "video"


def timeline(**fields: object) -> Timeline:
    raw: dict[str, object] = {"clips": [{"key": "a.mp4"}, {"key": "b.mp4"}, {"key": "c.mp4"}], **fields}
    return check_timeline(raw)


def test_a_minimal_timeline_gets_the_documented_defaults() -> None:
    tl = check_timeline({"clips": [{"video_id": "v1"}]})
    assert tl.transitions == [] and tl.text == [] and tl.logo is None and tl.subtitles is None and tl.audio is None
    out = tl.output
    assert (out.width, out.height, out.fps, out.codec, out.container) == (1280, 720, 30, "h264", "mp4")
    assert out.crf is None and out.bitrate_kbps is None and out.allow_gpu
    assert (tl.clips[0].trim_start, tl.clips[0].trim_end) == (0.0, None)


def test_a_full_timeline_is_accepted() -> None:
    tl = timeline(
        transitions=[{"kind": "wipeleft", "duration": 0.8}, None],
        text=[{"text": "Hello: it's 100%", "start": 0.3, "end": 2.5, "position": "top", "color": "#ffcc00"}],
        logo={"key": "logo.png", "opacity": 0.7, "width": 120, "position": "bottom-left"},
        subtitles={"from_caption": True, "model_size": "tiny.en"},
        audio={"key": "music.m4a", "volume": 0.25},
        output={"width": 640, "height": 360, "fps": 25, "codec": "vp9", "container": "webm", "crf": 33},
    )
    assert [t.kind if t else None for t in tl.transitions] == ["wipeleft", None]
    assert tl.subtitles == Subtitles(from_caption=True, model_size="tiny.en", font_size=24)
    assert tl.audio == BackgroundAudio(key="music.m4a", volume=0.25, duck=True, loop=True)


def test_every_xfade_transition_name_is_accepted() -> None:
    for kind in sorted(TRANSITIONS):
        tl = check_timeline({"clips": [{"key": "a"}, {"key": "b"}], "transitions": [{"kind": kind}]})
        assert [t.kind for t in tl.transitions if t] == [kind]


FIFTY_ONE = [{"key": f"{i}.mp4"} for i in range(51)]
ONE: list[object] = [{"key": "a"}]


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ({"clips": []}, "clips", "at least 1"),
        ({"clips": FIFTY_ONE}, "clips", "at most 50"),
        ({"clips": [{"key": "a", "video_id": "v"}]}, "clips.0", "exactly one of key or video_id"),
        ({"clips": [{"trim_start": 1}]}, "clips.0", "exactly one of key or video_id"),
        ({"clips": [*ONE, {"key": "b", "trim_start": 3, "trim_end": 2}]}, "clips.1.trim_end", "after trim_start"),
        ({"clips": [{"key": "a", "trim_start": -1}]}, "clips.0.trim_start", "greater than or equal to 0"),
        ({"clips": [{"key": "a", "trim_end": 0}]}, "clips.0.trim_end", "greater than 0"),
        ({"clips": [{"key": "a", "trim_ned": 2}]}, "clips.0.trim_ned", "Extra inputs are not permitted"),
        ({"clips": [{"key": "a"}, {"key": "b"}], "transitions": [{"kind": "boom"}]}, "transitions.0.kind", "xfade"),
        ({"clips": [{"key": "a"}, {"key": "b"}], "transitions": [{"duration": 0}]}, "transitions.0.duration", "0"),
        ({"clips": [{"key": "a"}, {"key": "b"}], "transitions": [{"duration": 6}]}, "transitions.0.duration", "5"),
        ({"clips": [{"key": "a"}, {"key": "b"}], "transitions": [None, None]}, "transitions", "1 for 2 clips, got 2"),
        ({"clips": ONE, "text": [{"text": ""}]}, "text.0.text", "at least 1"),
        ({"clips": ONE, "text": [{"text": "x" * 501}]}, "text.0.text", "at most 500"),
        ({"clips": ONE, "text": [{"text": "x", "start": 2, "end": 1}]}, "text.0.end", "after start"),
        ({"clips": ONE, "text": [{"text": "x", "position": "middle"}]}, "text.0.position", "top-left"),
        ({"clips": ONE, "text": [{"text": "x", "font_size": 7}]}, "text.0.font_size", "8"),
        ({"clips": ONE, "text": [{"text": "x", "color": "red;x"}]}, "text.0.color", "colour name"),
        ({"clips": ONE, "logo": {"key": "l", "opacity": 1.5}}, "logo.opacity", "1"),
        ({"clips": ONE, "logo": {"key": "l", "width": 4}}, "logo.width", "8"),
        ({"clips": ONE, "logo": {"key": "l", "position": "up"}}, "logo.position", "bottom-right"),
        ({"clips": ONE, "subtitles": {}}, "subtitles", "exactly one of srt, key or from_caption"),
        ({"clips": ONE, "subtitles": {"srt": "1", "key": "s"}}, "subtitles", "exactly one of"),
        ({"clips": ONE, "subtitles": {"from_caption": True, "model_size": "large"}}, "subtitles.model_size", "tiny.en"),
        ({"clips": ONE, "audio": {"key": "m", "volume": 3}}, "audio.volume", "2"),
        ({"clips": ONE, "output": {"width": 641}}, "output", "must be even (got 641x720)"),
        ({"clips": ONE, "output": {"codec": "h265", "container": "webm"}}, "output", "H265 cannot go in WEBM"),
        ({"clips": ONE, "output": {"codec": "mpeg2"}}, "output", "codec must be one of"),
        ({"clips": ONE, "output": {"crf": 20, "bitrate_kbps": 900}}, "output", "not both"),
        ({"clips": ONE, "output": {"fps": 0}}, "output.fps", "greater than 0"),
    ],
)  # fmt: skip
def test_invalid_timelines_are_refused_naming_the_field(raw: dict[str, object], field: str, fragment: str) -> None:
    with pytest.raises(BadInput) as err:
        check_timeline(raw)
    assert err.value.code == "BAD_TIMELINE"
    assert err.value.details == {"field": field}
    assert fragment in err.value.message


def test_messages_name_the_clip_a_person_would_count() -> None:
    with pytest.raises(BadInput) as err:
        check_timeline({"clips": [{"key": "a"}, {"key": "b", "trim_start": 3, "trim_end": 2}]})
    assert err.value.message == "clip 2 trim_end: must be after trim_start (3 s), got 2 s"
    with pytest.raises(BadInput) as err:
        check_timeline({"clips": ONE, "text": [{"text": "ok"}, {"text": "x", "position": "middle"}]})
    assert err.value.message.startswith("text overlay 2 position: must be one of top-left, top,")


def test_hard_cuts_place_clips_end_to_end() -> None:
    tl = timeline(clips=[{"key": "a"}, {"key": "b", "trim_start": 1.0, "trim_end": 3.5}, {"key": "c"}])
    spans, total = layout(tl, [4.0, 10.0, 2.0])
    assert spans == [
        ClipSpan(index=0, source_start=0.0, duration=4.0, starts_at=0.0),
        ClipSpan(index=1, source_start=1.0, duration=2.5, starts_at=4.0),
        ClipSpan(index=2, source_start=0.0, duration=2.0, starts_at=6.5),
    ]
    assert total == 8.5


def test_transitions_overlap_their_clips() -> None:
    tl = timeline(transitions=[{"kind": "fade", "duration": 1.0}, {"kind": "wipeleft", "duration": 0.5}])
    spans, total = layout(tl, [4.0, 3.0, 2.0])
    assert [s.starts_at for s in spans] == [0.0, 3.0, 5.5]
    assert [s.duration for s in spans] == [4.0, 3.0, 2.0]
    assert total == pytest.approx(4.0 + 3.0 + 2.0 - 1.0 - 0.5)


def test_a_none_transition_is_a_cut_between_crossfades() -> None:
    tl = timeline(transitions=[None, {"duration": 0.8}])
    spans, total = layout(tl, [2.0, 2.0, 2.0])
    assert [s.starts_at for s in spans] == [0.0, 2.0, 3.2]
    assert total == pytest.approx(5.2)


def test_trim_end_a_hair_past_the_source_is_clamped_to_it() -> None:
    tl = check_timeline({"clips": [{"key": "a", "trim_start": 0.5, "trim_end": 4.03}]})
    spans, total = layout(tl, [4.0])
    assert spans[0].duration == pytest.approx(3.5) and total == pytest.approx(3.5)


@pytest.mark.parametrize(
    ("clip", "field", "message"),
    [
        ({"key": "b", "trim_start": 8.5}, "clips.1.trim_start", "clip 2 starts at 8.5 s but its source is only 8.50 s"),
        ({"key": "b", "trim_end": 12}, "clips.1.trim_end", "clip 2 ends at 12 s but its source is only 8.50 s"),
    ],
)  # fmt: skip
def test_trims_past_the_source_are_refused(clip: dict[str, object], field: str, message: str) -> None:
    tl = check_timeline({"clips": [{"key": "a"}, clip]})
    with pytest.raises(BadInput) as err:
        layout(tl, [3.0, 8.5])
    assert (err.value.code, err.value.details) == ("TRIM_PAST_END", {"field": field})
    assert err.value.message == f"{message} long"


def test_a_transition_longer_than_a_neighbouring_clip_is_refused() -> None:
    tl = check_timeline({"clips": [{"key": "a"}, {"key": "b"}], "transitions": [{"duration": 2.0}]})
    with pytest.raises(BadInput) as err:
        layout(tl, [5.0, 1.5])
    assert err.value.code == "TRANSITION_TOO_LONG"
    assert err.value.message == "transition 1 lasts 2 s but clip 2 is only 1.50 s long"
    assert layout(tl, [5.0, 2.0])[1] == pytest.approx(5.0)


def test_two_transitions_cannot_eat_more_than_the_clip_between_them() -> None:
    tl = timeline(transitions=[{"duration": 1.5}, {"duration": 1.5}])
    with pytest.raises(BadInput) as err:
        layout(tl, [4.0, 2.5, 4.0])
    assert err.value.code == "TRANSITION_TOO_LONG" and "clip 2 between them is only 2.50 s" in err.value.message


def test_text_overlays_past_the_end_are_refused() -> None:
    tl = timeline(text=[{"text": "fine", "end": 8.5}, {"text": "late", "start": 2, "end": 12}])
    with pytest.raises(BadInput) as err:
        layout(tl, [4.0, 2.5, 2.0])
    assert err.value.code == "OVERLAY_PAST_END"
    assert err.value.message == "text overlay 2 ends at 12.0 s but the video is 8.5 s long"
    assert err.value.details == {"field": "text.1.end"}
    starts_late = timeline(text=[{"text": "late", "start": 9}])
    with pytest.raises(BadInput) as err:
        layout(starts_late, [4.0, 2.5, 2.0])
    assert err.value.code == "OVERLAY_PAST_END" and "starts at 9.0 s" in err.value.message


def test_layout_needs_one_duration_per_clip() -> None:
    with pytest.raises(ValueError, match="2 source durations for 3 clips"):
        layout(timeline(), [1.0, 2.0])


def test_blob_keys_lists_every_key_once_in_order() -> None:
    tl = check_timeline(
        {
            "clips": [{"key": "in.mp4"}, {"video_id": "vid-1"}, {"key": "in.mp4"}, {"key": "out.mp4"}],
            "logo": {"key": "logo.png"},
            "subtitles": {"key": "subs.srt"},
            "audio": {"key": "music.m4a"},
        }
    )
    assert blob_keys(tl) == ["in.mp4", "out.mp4", "logo.png", "subs.srt", "music.m4a"]
    assert video_ids(tl) == ["vid-1"]
    captioned = check_timeline({"clips": [{"video_id": "v"}, {"video_id": "v"}], "subtitles": {"from_caption": True}})
    assert blob_keys(captioned) == [] and video_ids(captioned) == ["v"]


def test_the_bundled_demo_timeline_is_valid_and_uses_the_sample_files() -> None:
    raw = json.loads((SAMPLES / "timeline.json").read_text())
    tl = check_timeline(raw)
    assert blob_keys(tl) == [f"samples/video/{name}" for name in ("intro.mp4", "outro.mp4", "logo.png", "music.m4a")]
    assert all((SAMPLES / key.removeprefix("samples/video/")).is_file() for key in blob_keys(tl))
    assert [t.duration if t else None for t in tl.transitions] == [0.8]
    assert tl.subtitles == Subtitles(from_caption=True)
    spans, total = layout(tl, [5.52, 4.52])
    assert spans[1].starts_at == pytest.approx(4.72) and total == pytest.approx(9.24)

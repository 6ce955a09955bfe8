"""Captions with real Whisper models from wheels: espeak-ng speech of a known sentence, silence, languages."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from activities.video.captions import Captioner, Segment, format_srt, model_dir
from conveyor.errors import BadInput

SENTENCE = "The quick brown fox jumps over the lazy dog near the river bank"
SRT_TIME = re.compile(r"(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})")


def _speech(path: Path, text: str, voice: str = "en-us") -> Path:
    """A video (testsrc2) whose audio is espeak-ng reading ``text``, starting after 1 s of silence."""
    wav = path.with_suffix(".wav")
    subprocess.run(["espeak-ng", "-s", "130", "-v", voice, "-w", str(wav), text], check=True)
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=7",
            "-i", str(wav), "-filter_complex", "[1:a]adelay=1000|1000,apad[a]", "-map", "0:v", "-map", "[a]",
            "-t", "7", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _wer(reference: list[str], hypothesis: list[str]) -> float:
    """Word error rate: edit distance over words / reference length."""
    prev = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        cur = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ref != hyp))
        prev = cur
    return prev[-1] / max(1, len(reference))


@pytest.fixture(scope="module")
def captioner(tmp_path_factory: pytest.TempPathFactory) -> Captioner:
    return Captioner(tmp_path_factory.mktemp("whisper-cache"))


@pytest.mark.needs_ffmpeg
def test_english_speech_becomes_srt_with_the_spoken_words_inside_the_speech(
    captioner: Captioner, tmp_path: Path
) -> None:
    video = _speech(tmp_path / "speech.mp4", SENTENCE)
    progress: list[float] = []
    result = captioner.caption(video, duration_s=7.0, on_progress=progress.append)
    assert result.language == "en" and result.model == "tiny.en" and result.segments >= 1
    spoken = " ".join(line for line in result.srt.splitlines() if line and not line.isdigit() and "-->" not in line)
    assert _wer(_words(SENTENCE), _words(spoken)) <= 0.25, spoken
    for match in SRT_TIME.finditer(result.srt):
        h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(x) for x in match.groups())
        start, end = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        assert 0.5 <= start < end <= 7.0  # inside the speech, which starts after 1 s of silence
    assert progress and all(0 < p < 100 for p in progress)


@pytest.mark.needs_ffmpeg
def test_language_is_detected_with_the_multilingual_model(captioner: Captioner, tmp_path: Path) -> None:
    video = _speech(
        tmp_path / "french.mp4", "Bonjour, je voudrais un café et un croissant, s'il vous plaît", voice="fr"
    )
    result = captioner.caption(video, duration_s=7.0)
    assert result.language == "fr" and result.model == "base" and result.segments >= 1
    assert "caf" in result.srt.lower()


@pytest.mark.needs_ffmpeg
def test_a_silent_video_gives_an_empty_srt_not_a_failure(captioner: Captioner, tmp_path: Path) -> None:
    silent = tmp_path / "silent.mp4"
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=3",
            "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "3",
            "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(silent),
        ],
        check=True,
    )  # fmt: skip
    result = captioner.caption(silent, duration_s=3.0)
    assert result.srt == "" and result.segments == 0


def test_srt_format_and_unknown_models() -> None:
    srt = format_srt([Segment(0.0, 1.5, " Hello "), Segment(61.25, 3723.004, "world"), Segment(5, 6, "  ")])
    assert srt == "1\n00:00:00,000 --> 00:00:01,500\nHello\n\n2\n00:01:01,250 --> 01:02:03,004\nworld\n"
    with pytest.raises(BadInput):
        model_dir("large-v3", Path("/tmp"))

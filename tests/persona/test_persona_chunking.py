"""Chunking, chunk ids and decoding of persona texts (pure functions; tokens counted as words here)."""

from __future__ import annotations

import random
import re
from collections.abc import Callable

import pytest

from activities.persona.chunking import Chunk, chunk_id, chunk_text, decode_text, file_digest
from conveyor.errors import BadInput


def words(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def _essay(paragraphs: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    vocab = "the river ran past old mills and quiet towns where people worked long days in the sun".split()
    out = []
    for p in range(paragraphs):
        sentences = []
        for s in range(rng.randint(1, 8)):
            body = " ".join(rng.choice(vocab) for _ in range(rng.randint(3, 30)))
            sentences.append(f"P{p}S{s} {body}{rng.choice('.!?')}")
        out.append(" ".join(sentences))
    return "\n\n".join(out)


def _assert_slices(text: str, chunks: list[Chunk]) -> None:
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert c.text == text[c.start_char : c.end_char]
        assert c.text == c.text.strip() and c.text
        assert c.tokens == words(c.text)


def test_chunks_are_bounded_cover_the_text_and_keep_its_order() -> None:
    text = _essay(40)
    chunks = chunk_text(text, count_tokens=words, max_tokens=60, overlap_tokens=15)
    _assert_slices(text, chunks)
    assert all(c.tokens <= 60 for c in chunks)
    assert max(c.tokens for c in chunks) > 40  # packed, not one sentence per chunk
    covered = [False] * len(text)
    for c in chunks:
        covered[c.start_char : c.end_char] = [True] * (c.end_char - c.start_char)
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())
    assert [c.start_char for c in chunks] == sorted(c.start_char for c in chunks)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("count", "max_tokens", "overlap"), [(words, 40, 10), (words, 200, 40), (len, 300, 80)])
def test_invariants_hold_for_any_text_and_counter(
    seed: int, count: Callable[[str], int], max_tokens: int, overlap: int
) -> None:
    rng = random.Random(seed)
    parts = [f"{'#' * rng.randint(1, 3)} Heading {i}\n\n{_essay(rng.randint(0, 6), seed + i)}" for i in range(6)]
    text = _essay(3, seed) + "\n\n" + "\n\n".join(parts)
    # ``len`` counts the spaces between sentences too: the sum of sentence sizes underestimates a chunk.
    chunks = chunk_text(text, count_tokens=count, max_tokens=max_tokens, overlap_tokens=overlap)
    covered = [False] * len(text)
    for c in chunks:
        assert c.text == text[c.start_char : c.end_char] and c.tokens == count(c.text) <= max_tokens
        covered[c.start_char : c.end_char] = [True] * (c.end_char - c.start_char)
    headings = {m.start() for m in re.finditer(r"^#+ Heading \d+$", text, flags=re.M)}
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace() and not _in_heading(text, i, headings))
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.start_char < after.start_char and before.end_char < after.end_char
        if after.start_char < before.end_char:
            assert after.section == before.section and count(text[after.start_char : before.end_char]) <= overlap


def _in_heading(text: str, i: int, heading_starts: set[int]) -> bool:
    line_start = text.rfind("\n", 0, i) + 1
    return line_start in heading_starts


def test_each_chunk_repeats_the_last_sentences_of_the_previous_one() -> None:
    text = " ".join(f"Sentence number {i} is short." for i in range(60))
    chunks = chunk_text(text, count_tokens=words, max_tokens=30, overlap_tokens=10)
    assert len(chunks) > 3
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start_char < before.end_char  # they overlap...
        shared = text[after.start_char : before.end_char]
        assert 0 < words(shared) <= 10  # ...by whole sentences, at most overlap_tokens
        assert before.text.endswith(shared) and after.text.startswith(shared)
        assert re.fullmatch(r"(Sentence number \d+ is short\. ?)+", shared)


def test_no_overlap_when_it_is_turned_off() -> None:
    text = " ".join(f"Sentence number {i} is short." for i in range(30))
    chunks = chunk_text(text, count_tokens=words, max_tokens=20, overlap_tokens=0)
    assert all(b.end_char <= a.start_char for b, a in zip(chunks, chunks[1:], strict=False))


def test_headings_start_chunks_name_their_section_and_stop_overlap() -> None:
    text = (
        "A preface sentence. Another one here.\n\n"
        "# Early Life\n\nBorn in a small town. Went to school there.\n\n"
        "## School Years\n\nLearned to read early. Read every book in the library.\n\n"
        "# Empty Heading\n\n"
        "# Later Work ##\n\nWrote many books. Some were famous."
    )
    chunks = chunk_text(text, count_tokens=words, max_tokens=200, overlap_tokens=40)
    _assert_slices(text, chunks)
    assert [c.section for c in chunks] == [None, "Early Life", "Early Life > School Years", "Later Work"]
    assert chunks[0].text == "A preface sentence. Another one here."
    assert chunks[1].text.startswith("# Early Life") and chunks[1].text.endswith("Went to school there.")
    assert chunks[2].text.startswith("## School Years") and "Born" not in chunks[2].text
    assert chunks[3].text.startswith("# Later Work") and "Empty" not in chunks[3].text


def test_a_hash_line_inside_a_code_fence_is_not_a_heading() -> None:
    text = "# Notes\n\nSome text.\n\n```\n# not a heading\n\nstill code\n```\n\nMore text."
    chunks = chunk_text(text, count_tokens=words, max_tokens=200)
    assert len(chunks) == 1 and chunks[0].section == "Notes"
    assert "# not a heading" in chunks[0].text


def test_paragraphs_that_fit_are_not_cut_across_chunks() -> None:
    first = " ".join(f"First paragraph sentence {i}." for i in range(8))  # 32 words
    second = " ".join(f"Second paragraph sentence {i}." for i in range(8))
    text = f"{first}\n\n{second}"
    chunks = chunk_text(text, count_tokens=words, max_tokens=50, overlap_tokens=8)
    assert len(chunks) == 2
    assert chunks[0].text == first
    assert chunks[1].text.endswith(second) and words(chunks[1].text) <= 50


@pytest.mark.parametrize(
    "sentence",
    [
        "Mr. Smith and Dr. Jones met Prof. Brown at noon today.",
        "They studied many things, e.g. rivers and i.e. water flow.",
        "The book by J. R. R. Tolkien was a gift to Mrs. Jones then.",
        "She moved to the U.S. in spring with her family that year.",
        'He shouted "Stop!" and then he walked away from the door.',
        "See vol. 3 of the series or p. 12 for the whole long list.",
    ],
)
def test_common_abbreviations_and_initials_do_not_end_a_sentence(sentence: str) -> None:
    others = ["The weather was cold and grey all week.", "Nobody expected the letter to arrive so soon."]
    text = f"{others[0]} {sentence} {others[1]}"
    # Room for one sentence at a time: every chunk is exactly one sentence.
    chunks = chunk_text(text, count_tokens=words, max_tokens=14, overlap_tokens=0)
    assert [c.text for c in chunks] == [others[0], sentence, others[1]]


def test_sentences_end_at_question_marks_exclamations_ellipses_and_closing_quotes() -> None:
    sentences = [
        "Is it raining?",
        "It is now!",
        '"We should go."',
        "Wait for me…",
        "Then go (quietly.)",
        "All done now.",
    ]
    chunks = chunk_text(" ".join(sentences), count_tokens=words, max_tokens=3, overlap_tokens=0)
    assert [c.text for c in chunks] == sentences


def test_a_sentence_longer_than_the_limit_is_cut_at_word_boundaries() -> None:
    long_sentence = " ".join(f"w{i}" for i in range(500)) + "."
    text = f"Short start. {long_sentence} Short end."
    chunks = chunk_text(text, count_tokens=words, max_tokens=50, overlap_tokens=10)
    _assert_slices(text, chunks)
    assert all(c.tokens <= 50 for c in chunks)
    for c in chunks:  # never inside a word
        assert c.start_char == 0 or text[c.start_char - 1].isspace()
        assert c.end_char == len(text) or text[c.end_char].isspace()
    seen = [w.rstrip(".") for w in " ".join(c.text for c in chunks).split()]
    assert [w for w in dict.fromkeys(seen) if w.startswith("w")] == [f"w{i}" for i in range(500)]  # all, in order


def test_a_long_list_without_punctuation_is_cut_between_lines() -> None:
    lines = [f"quote number {i} about life and work" for i in range(40)]  # 7 words each, one paragraph
    text = "\n".join(lines)
    chunks = chunk_text(text, count_tokens=words, max_tokens=30, overlap_tokens=0)
    assert all(c.tokens <= 30 for c in chunks)
    assert all(c.text.split("\n") == [ln for ln in lines if ln in c.text] for c in chunks)
    assert sum(len(c.text.split("\n")) for c in chunks) == 40


def test_a_word_longer_than_the_limit_is_cut_anywhere() -> None:
    blob = "x" * 1000
    chunks = chunk_text(f"See {blob} here.", count_tokens=len, max_tokens=100, overlap_tokens=0)
    assert all(len(c.text) <= 100 for c in chunks)
    assert "".join(c.text for c in chunks).replace(" ", "").count("x") == 1000


def test_empty_and_blank_texts_have_no_chunks() -> None:
    assert chunk_text("", count_tokens=words) == []
    assert chunk_text(" \n\n \t\n", count_tokens=words) == []
    assert chunk_text("# Only a heading\n", count_tokens=words) == []


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        chunk_text("text", count_tokens=words, max_tokens=0)
    with pytest.raises(ValueError):
        chunk_text("text", count_tokens=words, max_tokens=10, overlap_tokens=10)


def test_chunk_ids_are_stable_readable_and_depend_on_source_and_text() -> None:
    a = chunk_id("works/On Writing.md", "It was a dark night.")
    assert a == chunk_id("works/On Writing.md", "It was a dark night.")
    assert re.fullmatch(r"works-on-writing-md#[0-9a-f]{24}", a)
    assert a != chunk_id("works/On Writing.md", "It was a dark night!")
    assert a != chunk_id("works/Other.md", "It was a dark night.")
    long_id = chunk_id("a/" * 100 + "file.txt", "x")
    assert long_id.split("#")[0].endswith("file-txt") and len(long_id.split("#")[0]) <= 40
    assert chunk_id("???", "x").startswith("text#")


def test_file_digest_is_sha256() -> None:
    assert file_digest(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_decode_text_reads_utf8_and_drops_the_bom_and_windows_newlines() -> None:
    assert decode_text("Café naïve — ok\n".encode()) == ("Café naïve — ok\n", None)
    assert decode_text(b"\xef\xbb\xbfhello\r\nworld\rend") == ("hello\nworld\nend", None)
    assert decode_text(b"") == ("", None)


def test_decode_text_falls_back_to_cp1252_with_a_warning() -> None:
    original = "He said “bonjour” to the café owner — naïve, but it’s fine.\r\n"
    text, warning = decode_text(original.encode("cp1252"))
    assert text == original.replace("\r\n", "\n")
    assert warning == "decoded as cp1252, not UTF-8"


def test_decode_text_reads_utf16_with_a_bom() -> None:
    text, warning = decode_text("Hello there, world.".encode("utf-16"))
    assert text == "Hello there, world."
    assert warning is not None and "utf_16" in warning


@pytest.mark.parametrize(
    "data",
    [
        random.Random(3).randbytes(4000),
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8,
        b"\x00\x01\x02\x03 binary \x00\x00\x00 with NULs \x00",
    ],
)
def test_decode_text_refuses_binary_data(data: bytes) -> None:
    with pytest.raises(BadInput) as caught:
        decode_text(data)
    assert caught.value.code == "UNDECODABLE_FILE"

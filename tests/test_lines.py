"""The line splitter against a simple reference, and its edge cases."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from logtail.files.lines import LineSplitter, cut_line, normalise


def reference(data: bytes, limit: int) -> tuple[list[str], bytes]:
    """Complete lines of `data` (cut past `limit`), and the unfinished rest."""
    *complete, rest = data.split(b"\n")
    out = []
    for line in complete:
        if len(line) > limit:
            line = cut_line(line, len(line), limit)
        out.append(normalise(line))
    return out, rest


def feed_all(chunks: list[bytes], limit: int) -> tuple[list[str], int]:
    s = LineSplitter(limit)
    out: list[str] = []
    for c in chunks:
        lines = s.feed(c)
        if lines is not None:
            got = lines.split()
            assert len(got) == lines.count
            out.extend(got)
    return out, s.pending


line_bytes = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"x"))


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.one_of(line_bytes, st.sampled_from([b"", b"\r", b"a\r", b"\xff\xfe",
                                                             "é€😀".encode()])), max_size=30),
       tail=line_bytes, cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
       limit=st.integers(min_value=4, max_value=64))
def test_splitter_matches_reference_whatever_the_chunking(lines, tail, cuts, limit):
    data = b"".join(ln + b"\n" for ln in lines) + tail
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    got, pending = feed_all(chunks, limit)
    expected, rest = reference(data, limit)
    assert got == expected
    assert pending == len(rest)


def test_crlf_is_one_line_ending_and_lone_cr_stays():
    got, _ = feed_all([b"a\r\nb\rc\n\r\n"], 100)
    assert got == ["a", "b\rc", ""]


def test_long_line_is_cut_with_its_length_and_memory_stays_bounded():
    s = LineSplitter(10)
    for _ in range(1000):
        assert s.feed(b"x" * 1000) is None
        assert len(s.head) <= 13
    lines = s.feed(b"yy\nnext\n")
    assert lines is not None
    assert lines.split() == ["x" * 10 + " [… line cut: 1000002 bytes]", "next"]


def test_cut_does_not_split_a_utf8_character():
    line = "aé".encode() * 10  # é is 2 bytes
    cut = cut_line(line, len(line), 4)
    assert normalise(cut).startswith("aéa ")


def test_flush_emits_the_unfinished_line_once():
    s = LineSplitter(100)
    assert s.feed(b"partial") is None
    flushed = s.flush()
    assert flushed is not None and flushed.split() == ["partial"]
    assert s.flush() is None
    lines = s.feed(b" rest\n")
    assert lines is not None and lines.split() == [" rest"]


def test_invalid_utf8_becomes_replacement_characters():
    got, _ = feed_all([b"ok \xc3\x28 bad\n"], 100)
    assert got == ["ok \ufffd( bad"]

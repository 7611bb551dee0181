"""Backlog: finding where the last N lines start, by reading backwards."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logtail.files.lines import LineSplitter, normalise
from logtail.files.tail import BLOCK, find_start, line_end


def last_lines(path, n, limit=1000, match=None):
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        end = line_end(fd, size)
        start = find_start(fd, end, n, limit, match)
        data = os.pread(fd, end - start, start)
    finally:
        os.close(fd)
    if not data:
        return []
    s = LineSplitter(limit)
    lines = s.feed(data)
    flushed = s.flush()
    out = lines.split() if lines else []
    return out + (flushed.split() if flushed else [])


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.text(alphabet="ab\r é", max_size=30), max_size=60),
       partial=st.text(alphabet="ab", max_size=5), n=st.integers(min_value=0, max_value=70))
def test_backlog_matches_reference(tmp_path_factory, lines, partial, n):
    path = tmp_path_factory.mktemp("b") / "f.log"
    path.write_bytes("".join(ln + "\n" for ln in lines).encode() + partial.encode())
    expected = [normalise(ln.encode()) for ln in lines][-n:] if n else []
    assert last_lines(path, n) == expected


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(st.sampled_from(["ERROR x", "INFO y", "", "error z"]), max_size=80),
       n=st.integers(min_value=1, max_value=20))
def test_filtered_backlog_matches_reference(tmp_path_factory, lines, n):
    path = tmp_path_factory.mktemp("f") / "f.log"
    path.write_text("".join(ln + "\n" for ln in lines))
    match = lambda line: "ERROR" in line  # noqa: E731
    got = [ln for ln in last_lines(path, n, match=match) if match(ln)]
    assert got == [ln for ln in lines if match(ln)][-n:]


@pytest.mark.parametrize("shape", ["empty", "no-newline", "one-empty-line", "long-line"])
def test_backlog_file_shapes(tmp_path, shape):
    path = tmp_path / "f.log"
    content = {"empty": b"", "no-newline": b"only partial", "one-empty-line": b"\n",
               "long-line": b"a\n" + b"L" * (3 * BLOCK) + b"\nb\n"}[shape]
    path.write_bytes(content)
    got = last_lines(path, 2, limit=10 * BLOCK)
    expected = {"empty": [], "no-newline": [], "one-empty-line": [""],
                "long-line": ["L" * (3 * BLOCK), "b"]}[shape]
    assert got == expected


def test_backlog_cost_does_not_depend_on_file_size(tmp_path):
    """A sparse 5 GB file answers by reading a few blocks from its end."""
    small, big = tmp_path / "small.log", tmp_path / "big.log"
    tail = "".join(f"line {i}\n" for i in range(100)).encode()
    small.write_bytes(tail)
    with open(big, "wb") as f:
        f.truncate(5 * 1024**3)
        f.seek(0, 2)
        f.write(b"\n" + tail)
    started = time.process_time()
    assert last_lines(big, 100) == [f"line {i}" for i in range(100)]
    assert time.process_time() - started < 1.0  # a full read would take far longer
    assert last_lines(small, 100) == last_lines(big, 100)


def _scan(path, n, max_bytes, line_filter=None, limit=1000):
    from logtail.files.tail import BacklogScan

    fd = os.open(path, os.O_RDONLY)
    try:
        end = line_end(fd, os.fstat(fd).st_size)
        scan = BacklogScan(fd, end, n, limit, line_filter.match if line_filter else None,
                           max_bytes, line_filter.block_search() if line_filter else None)
        steps = 0
        while not scan.step(7):  # tiny slices: every state survives a pause
            steps += 1
        data = os.pread(fd, end - scan.start, scan.start)
    finally:
        os.close(fd)
    return scan, end, data


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.sampled_from(["ERROR x", "INFO y", "", "error z", "E" * 40]),
                      max_size=80),
       n=st.integers(min_value=1, max_value=20), max_bytes=st.integers(1, 400),
       query=st.sampled_from(["ERROR", "error", "E{3}", "^$"]),
       regex=st.booleans(), invert=st.booleans())
def test_bounded_scan_finds_the_last_matching_lines_within_its_window(
        tmp_path_factory, lines, n, max_bytes, query, regex, invert):
    """Block search (RE2 over whole blocks) and per-line matching agree with a reference:
    the backlog starts at a line start inside the window, holds the last `n` matching
    lines of the window, and `limited` says when the window ran out first."""
    from logtail.streaming.filters import LineFilter

    path = tmp_path_factory.mktemp("s") / "f.log"
    text = "".join(ln + "\n" for ln in lines)
    path.write_text(text)
    f = LineFilter(query, regex=regex, case=False, invert=invert)
    scan, end, data = _scan(path, n, max_bytes, f)
    assert scan.start == 0 or text.encode()[scan.start - 1:scan.start] == b"\n"
    assert end - scan.start <= max_bytes or scan.start == end
    window_start = max(0, end - max_bytes)
    starts, pos = [], 0
    for ln in lines:
        starts.append(pos)
        pos += len(ln.encode()) + 1
    in_window = [ln for ln, s in zip(lines, starts, strict=True) if s >= window_start]
    matching = [ln for ln in in_window if f.match(ln)]
    got = [ln for ln in data.decode().split("\n")[:-1] if f.match(ln)]
    assert got == matching[-n:]
    assert scan.limited == (len(matching) < n and window_start > 0 and bool(lines))


def test_unfiltered_scan_stops_at_the_bound_in_a_file_without_newlines(tmp_path):
    path = tmp_path / "big.log"
    with open(path, "wb") as f:
        f.truncate(3 * 1024**3)
        f.seek(0, 2)
        f.write(b"\n")
    scan, end, data = _scan(path, 10, 1 << 20)
    assert scan.limited and scan.start == end and data == b""

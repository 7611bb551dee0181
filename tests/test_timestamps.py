"""Reading a line's time, and finding a time in a file by binary search."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logtail.files.timestamps import TimeError, find_time, line_time, parse_moment

T = datetime(2026, 12, 1, 13, 52, 21, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("line", [
    b"2026-12-01T13:52:21Z INFO started",
    b"2026-12-01T13:52:21.000Z INFO",
    b"2026-12-01 13:52:21,000+00:00 WARN x",
    b"2026-12-01T14:52:21+01:00 x",
    b"[2026-12-01T13:52:21Z] x",
    b'127.0.0.1 - - [01/Dec/2026:13:52:21 +0000] "GET / HTTP/1.1" 200 612',
    b"1796133141 something",
    b"1796133141000 something",
    b'{"level": "info", "ts": "2026-12-01T13:52:21Z", "msg": "x"}',
    b'{"@timestamp": 1796133141, "msg": "x"}',
    b'{"time": 1796133141000}',
])
def test_recognised_formats(line):
    assert line_time(line) == pytest.approx(T)


def test_syslog_takes_the_latest_year_not_in_the_future():
    now = datetime(2026, 12, 1, 14, 0, tzinfo=UTC).timestamp()
    got = line_time(b"Dec  1 13:52:21 host app[1]: x", now=now)
    assert got is not None
    assert time.localtime(got)[:6] == (2026, 12, 1, 13, 52, 21)
    jan = line_time(b"Dec 31 23:00:00 host x", now=datetime(2027, 1, 1, 1, tzinfo=UTC).timestamp())
    assert jan is not None and time.localtime(jan).tm_year == 2026


@pytest.mark.parametrize("line", [b"", b"hello world", b"  at com.example.Foo(Foo.java:1)",
                                  b"2026-13-45T99:00:00Z bad date", b"{not json"])
def test_lines_without_a_time(line):
    assert line_time(line) is None


def test_moments_absolute_and_relative():
    now = 2_000_000_000.0
    assert parse_moment("2026-12-01T13:52:21Z", now) == pytest.approx(T)
    assert parse_moment("90s", now) == now - 90
    assert parse_moment("1h30m", now) == now - 5400
    assert parse_moment("7d", now) == now - 7 * 86400
    assert parse_moment("2026-12-01", now) == datetime(2026, 12, 1).timestamp()
    for bad in ("yesterday", "", "15x", "2026-12-01T25:00:00Z", "-5m"):
        with pytest.raises(TimeError):
            parse_moment(bad, now)


def _log(path, stamps, extra_every=0):
    with open(path, "wb") as f:
        for i, t in enumerate(stamps):
            iso = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            f.write(f"{iso} line {i} {'x' * 40}\n".encode())
            if extra_every and i % extra_every == 0:
                f.write(b"    continuation without a time\n")


@settings(max_examples=60, deadline=None)
@given(gaps=st.lists(st.integers(0, 5), min_size=1, max_size=3000),
       pick=st.floats(0, 1), extra=st.sampled_from([0, 3]))
def test_find_time_agrees_with_a_linear_scan(tmp_path_factory, gaps, pick, extra):
    stamps, t = [], T
    for g in gaps:
        t += g
        stamps.append(t)
    path = tmp_path_factory.mktemp("t") / "app.log"
    _log(path, stamps, extra)
    moment = stamps[0] - 1 + pick * (stamps[-1] - stamps[0] + 2)
    data = path.read_bytes()
    expected, pos = len(data), 0
    for line in data.split(b"\n")[:-1]:
        lt = line_time(line)
        if lt is not None and lt >= moment:
            expected = pos
            break
        pos += len(line) + 1
    fd = os.open(path, os.O_RDONLY)
    try:
        got = find_time(fd, 0, len(data), moment)
    finally:
        os.close(fd)
    if moment <= stamps[0]:
        assert got == 0
    else:
        assert got == expected


def test_find_time_reads_little_of_a_big_file(tmp_path):
    """4 GB (sparse in the middle would have no times, so: real lines at both ends and a
    timed filler written in large blocks) is searched with a few dozen reads."""
    path = tmp_path / "big.log"
    line = b"2026-12-01T13:52:21Z filler " + b"x" * 70 + b"\n"
    block = line * 10_000
    with open(path, "wb") as f:
        for _ in range(200):  # ~200 MB, all at T
            f.write(block)
        f.write(b"2026-12-01T14:00:00Z later\n")
    size = path.stat().st_size
    reads = 0
    real = os.pread

    def counting(fd, n, off):
        nonlocal reads
        reads += 1
        return real(fd, n, off)

    fd = os.open(path, os.O_RDONLY)
    try:
        os.pread = counting
        got = find_time(fd, 0, size, T + 60)
    finally:
        os.pread = real
        os.close(fd)
    assert got == size - len(b"2026-12-01T14:00:00Z later\n")
    assert reads < 100


def test_no_time_anywhere_is_none(tmp_path):
    path = tmp_path / "plain.log"
    path.write_bytes(b"no time here\n" * 1000)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert find_time(fd, 0, path.stat().st_size, T) is None
    finally:
        os.close(fd)

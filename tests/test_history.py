"""A log's history: which siblings belong to it, in what order, read as plain bytes."""

from __future__ import annotations

import gzip
import os
import zlib

import pytest

from logtail.files.history import content_key, history, matches_key, read_chunks


def _write(path, text: str, gz: bool = False) -> None:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_history_is_the_file_then_rotated_siblings_newest_first(tmp_path):
    log = tmp_path / "app.log"
    _write(log, "now\n")
    _write(tmp_path / "app.log.1", "one\n")
    _write(tmp_path / "app.log.2.gz", "two\n", gz=True)
    _write(tmp_path / "app.log.10.gz", "ten\n", gz=True)
    for name in ("app.log.bak-keys", "app.log_private", "app.log.old", "other.log.1",
                 "app.log.0"):
        _write(tmp_path / name, "not history\n")
    (tmp_path / "app.log.3").symlink_to(tmp_path / "app.log.bak-keys")
    os.mkfifo(tmp_path / "app.log.4")
    (tmp_path / "app.log.5").mkdir()
    names = [s.name for s in history(log)]
    assert names == ["app.log", "app.log.1", "app.log.2.gz", "app.log.10.gz"]


def test_dateext_siblings_newest_first(tmp_path):
    log = tmp_path / "app.log"
    _write(log, "now\n")
    for day in ("20261128", "20261130", "20261129"):
        _write(tmp_path / f"app.log-{day}", day + "\n")
    _write(tmp_path / "app.log-20261127.gz", "old\n", gz=True)
    assert [s.name for s in history(log)] == [
        "app.log", "app.log-20261130", "app.log-20261129", "app.log-20261128",
        "app.log-20261127.gz"]


def test_compressed_siblings_read_as_a_stream_in_bounded_chunks(tmp_path):
    text = "".join(f"line {i}\n" for i in range(200_000))
    gz = tmp_path / "app.log.2.gz"
    _write(gz, text, gz=True)
    (src,) = [s for s in history(tmp_path / "app.log") if s.compressed]
    chunks = list(read_chunks(src, chunk=64 * 1024))
    assert max(len(c) for c in chunks) <= 64 * 1024
    assert b"".join(chunks) == text.encode()
    assert b"".join(read_chunks(src, start=7, limit=13)) == text.encode()[7:20]


def test_several_gzip_members_and_a_gzip_bomb(tmp_path):
    path = tmp_path / "app.log.1.gz"
    path.write_bytes(gzip.compress(b"first\n") + gzip.compress(b"second\n"))
    (src,) = [s for s in history(tmp_path / "app.log") if s.compressed]
    assert b"".join(read_chunks(src)) == b"first\nsecond\n"
    bomb = tmp_path / "app.log.2.gz"
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(bomb, "wb") as f:
        zeros = b"\0" * (1 << 20)
        for _ in range(1024):  # 1 GiB of zeros, about 1 MB compressed
            f.write(c.compress(zeros))
        f.write(c.flush())
    assert bomb.stat().st_size < 2 << 20
    (src,) = [s for s in history(tmp_path / "app.log") if s.name == "app.log.2.gz"]
    got = 0
    for chunk in read_chunks(src, limit=50 << 20, chunk=1 << 20):
        assert len(chunk) <= 1 << 20
        got += len(chunk)
    assert got == 50 << 20


def test_corrupt_and_cut_gzip_raise_where_they_break(tmp_path):
    good = gzip.compress(b"".join(b"line %d\n" % i for i in range(100_000)))
    (tmp_path / "app.log.1.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "app.log.2.gz").write_bytes(good[:100] + b"\xff" * 500 + good[600:])
    cut, bad = sorted((s for s in history(tmp_path / "app.log")), key=lambda s: s.name)
    with pytest.raises(EOFError):
        list(read_chunks(cut))
    with pytest.raises(zlib.error):
        list(read_chunks(bad))


def test_a_generation_keeps_its_key_when_renamed_and_compressed(tmp_path):
    log = tmp_path / "app.log"
    _write(log, "first line\n")
    small_key = content_key(history(log)[0])  # taken while the file was small
    with open(log, "a") as f:
        f.write("".join(f"more {i}\n" for i in range(10_000)))
    big_key = content_key(history(log)[0])
    log.rename(tmp_path / "app.log.1")
    _write(log, "a new file\n")
    rotated = history(log)[1]
    assert matches_key(rotated, small_key) and matches_key(rotated, big_key)
    data = rotated.path.read_bytes()
    (tmp_path / "app.log.1").unlink()
    (tmp_path / "app.log.2.gz").write_bytes(gzip.compress(data))
    compressed = history(log)[1]
    assert compressed.compressed
    assert matches_key(compressed, small_key) and matches_key(compressed, big_key)
    assert not matches_key(history(log)[0], big_key)

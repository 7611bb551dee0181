"""Framing a batch for a stream: encodings shared across streams, filters, formats."""

from __future__ import annotations

from pathlib import Path

from logtail.config import StreamConfig
from logtail.files.generation import Batch, Generation
from logtail.files.lines import Lines
from logtail.files.position import IdCodec, Identity
from logtail.streaming.cursor import Notice
from logtail.streaming.params import parse_stream_params
from logtail.streaming.stats import StreamStats
from logtail.streaming.stream import Framer

CODEC = IdCodec(b"k" * 32)


def _batch(text: str) -> Batch:
    gen = Generation(-1, Identity(1, 2), Path("app.log"), CODEC)
    lines = Lines(text, text.count("\n") + 1)
    return Batch(gen, 0, len(text) + 1, lines, 0, CODEC.format(gen.identity, 10, 0))


def _framer(**args: str) -> Framer:
    return Framer(parse_stream_params({k: [v] for k, v in args.items()}, None,
                                      StreamConfig()))


def test_unfiltered_batches_are_encoded_once_for_every_stream():
    b = _batch("one\ntwo")
    s1, s2 = StreamStats(), StreamStats()
    first = _framer().batch(b, s1)
    assert first == f"id: {b.id}\ndata: one\ndata: two\n\n".encode()
    assert _framer().batch(b, s2) is first  # the same bytes object: encoded once
    assert s1.lines == s2.lines == 2


def test_text_is_terminal_safe_unless_raw():
    b = _batch("plain\n\x1b]0;title\x07x\x1b[31mred\x1b[0m\rover")
    safe = _framer(format="text").batch(b, StreamStats())
    raw = _framer(format="text", raw="1").batch(b, StreamStats())
    assert b"\x1b]0;" not in safe and b"\x1b[31m" in safe and b"\r" not in safe
    assert raw == b"plain\n\x1b]0;title\x07x\x1b[31mred\x1b[0m\rover\n"


def test_a_filter_that_hides_a_batch_sends_its_id_with_the_next_heartbeat():
    f = _framer(q="error")
    stats = StreamStats()
    assert f.batch(_batch("info a\ninfo b"), stats) == b""
    beat = f.heartbeat()
    assert beat.startswith(b": ping\n") and b"id: " in beat
    assert f.heartbeat() == b": ping\n\n"  # only once
    shown = f.batch(_batch("info\nERROR here"), stats)
    assert b"data: ERROR here" in shown and b"data: info\n" not in shown
    assert stats.lines == 1


def test_chunks_are_framed_once_and_notices_only_in_sse():
    b = _batch("x")
    frames: list[bytes] = []

    def frame(p: bytes) -> bytes:
        frames.append(p)
        return b"%x\r\n%b\r\n" % (len(p), p)

    one = _framer().chunk(b, StreamStats(), frame)
    two = _framer().chunk(b, StreamStats(), frame)
    assert one is two and len(frames) == 1
    assert _framer(format="text").notice(Notice("rotated", {"file": "a"})) == b""
    assert _framer().notice(Notice("rotated", {"file": "a"})) == \
        b'event: rotated\ndata: {"file":"a"}\n\n'

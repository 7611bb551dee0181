"""format=text is terminal-safe: colours pass, nothing else reaches the terminal as a command."""

from __future__ import annotations

import re

import httpx
import pytest
from helpers import append, live_server, make_config
from hypothesis import given, settings
from hypothesis import strategies as st

from logtail.config import StreamConfig
from logtail.streaming.params import ParamError, parse_stream_params
from logtail.streaming.sse import text_lines
from logtail.streaming.terminal import _rewrite, terminal_bytes, terminal_safe

ESC = "\x1b"
SGR = re.compile(r"\x1b\[[0-9;:]*m")


@pytest.mark.parametrize("text", [
    "plain line",
    "tab\tseparated\tfields",
    "UTF-8: é ü 日本語 🙂 \u2028 U+FFFD \ufffd",
    f"{ESC}[31mred{ESC}[0m and {ESC}[1;38;5;208mbold orange{ESC}[m",
    f"{ESC}[38:2:255:0:0mtruecolour{ESC}[0m",
    "two\nlines",
])
def test_clean_and_coloured_text_is_unchanged(text):
    assert terminal_safe(text) == text
    assert terminal_bytes(text) == text.encode()


@pytest.mark.parametrize(("text", "safe"), [
    (f"{ESC}]0;pwned{ESC}\\title by ST", "title by ST"),
    (f"{ESC}]2;pwned\x07title by BEL", "title by BEL"),
    (f"{ESC}]8;;http://evil/{ESC}\\link{ESC}]8;;{ESC}\\", "link"),
    (f"{ESC}]52;c;ZXZpbA==\x07clipboard", "clipboard"),
    (f"{ESC}]0;unterminated title", ""),
    (f"before{ESC}[2J{ESC}[3J{ESC}[Hafter", "beforeafter"),
    (f"{ESC}[1A{ESC}[2Kup and erase", "up and erase"),
    (f"{ESC}[10;20Hmove{ESC}[?25l{ESC}[?1049h", "move"),
    (f"{ESC}[6nquery", "query"),
    (f"{ESC}Pq#0;2;0;0;0{ESC}\\sixel", "sixel"),
    (f"{ESC}_apc{ESC}\\{ESC}^pm{ESC}\\{ESC}Xsos{ESC}\\text", "text"),
    (f"{ESC}creset {ESC}7save {ESC}8restore {ESC}(Bcharset", "reset save restore charset"),
    (f"trailing lone escape {ESC}", "trailing lone escape "),
    (f"cut CSI {ESC}[12", "cut CSI 12"),
    ("progress 10%\rprogress 100%", "progress 10%progress 100%"),
    ("ends in CR\r", "ends in CR"),
    (f"{ESC}[31mred{ESC}[0m{ESC}[2J", f"{ESC}[31mred{ESC}[0m"),
])
def test_escape_sequences_and_cr_are_removed(text, safe):
    assert terminal_safe(text) == safe


@pytest.mark.parametrize(("text", "safe"), [
    ("bell\x07", "bell\u2407"),
    ("nul\x00 bs\x08 vt\x0b ff\x0c so\x0e", "nul\u2400 bs\u2408 vt\u240b ff\u240c so\u240e"),
    ("unit\x1fsep", "unit\u241fsep"),
    ("del\x7f", "del\u2421"),
    ("c1 csi \x9b2J nel \x85 st \x9c", "c1 csi <9B>2J nel <85> st <9C>"),
])
def test_other_controls_are_shown(text, safe):
    assert terminal_safe(text) == safe


def test_lines_are_neither_joined_nor_split():
    text = f"a{ESC}]0;title\nb\x1b[2J\rc\n{ESC}]0;x{ESC}\\d"
    assert terminal_safe(text) == "a\nbc\nd"


def test_only_dirty_blocks_are_rewritten():
    clean = "".join(f"line {i}\n" for i in range(2000))
    text = clean + f"bad{ESC}[2J\x07\n" + clean
    assert terminal_bytes(text, block=100) == (clean + "bad\u2407\n" + clean).encode()


def test_text_lines_is_safe_unless_raw():
    lines = ["ok", f"{ESC}]0;x\x07bad\r"]
    assert text_lines(lines) == b"ok\nbad\n"
    assert text_lines(lines, raw=True) == f"ok\n{ESC}]0;x\x07bad\r\n".encode()
    assert text_lines("one\ttab") == b"one\ttab\n"


def test_raw_is_a_flag_parameter():
    cfg = StreamConfig()
    assert parse_stream_params({}, None, cfg).raw is False
    assert parse_stream_params({"raw": ["1"]}, None, cfg).raw is True
    with pytest.raises(ParamError) as e:
        parse_stream_params({"raw": ["maybe"]}, None, cfg)
    assert e.value.param == "raw"


# Pieces of escape sequences, so random texts often hold whole and broken ones.
PIECES = st.sampled_from([
    ESC, "[", "]", "P", "X", "^", "_", "\\", "(", "B", "?", "0", "1", "2", ";", ":", "m", "J",
    "H", " ", "a", "é", "\x07", "\r", "\n", "\t", "\x00", "\x7f", "\x85", "\x9b", "\x9c",
    f"{ESC}[", f"{ESC}]", f"{ESC}[31m", f"{ESC}[0m", f"{ESC}\\",
])
TEXTS = st.lists(st.one_of(PIECES, st.text(st.characters(exclude_categories=("Cs",)),
                                           max_size=5)), max_size=40).map("".join)


@settings(max_examples=500, deadline=None)
@given(TEXTS)
def test_output_is_terminal_safe_and_stable(text):
    out = terminal_safe(text)
    assert ESC not in SGR.sub("", out)
    assert "\r" not in out
    assert not re.search(r"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f]", out)
    assert out.count("\n") == text.count("\n")
    assert terminal_safe(out) == out
    assert out == _rewrite(text)  # the fast check never lets an unsafe text through
    assert terminal_bytes(text) == out.encode()
    assert terminal_bytes(text, block=3) == out.encode()  # rewritten a few lines at a time


@pytest.fixture
def hostile_log(tmp_path):
    path = tmp_path / "app.log"
    append(path, "first\tline", f"{ESC}]0;pwned{ESC}\\{ESC}[2J{ESC}[31mred{ESC}[0m\x07",
           "progress\rdone", "last é")
    return path


async def test_text_stream_is_terminal_safe_and_raw_on_request(tmp_path, hostile_log):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as client:
        async with client.stream(
                "GET", base + "/api/files/app/stream?n=10&format=text&follow=0") as resp:
            assert resp.status_code == 200
            safe = await resp.aread()
        async with client.stream(
                "GET", base + "/api/files/app/stream?n=10&format=text&follow=0&raw=1") as resp:
            assert resp.status_code == 200
            raw = await resp.aread()
    assert safe.decode() == (f"first\tline\n{ESC}[31mred{ESC}[0m\u2407\n"
                             "progressdone\nlast é\n")
    assert raw == hostile_log.read_bytes()

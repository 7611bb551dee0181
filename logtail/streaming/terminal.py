"""Terminal-safe text: what `format=text` writes, since it usually lands in a terminal.

A log line may hold escape sequences that a terminal obeys: set the window title, clear
the screen, move the cursor to overwrite earlier lines, answer queries as if typed. Only
SGR (`ESC [ <digits;:> m`, colours and bold) is kept, because coloured logs are common
and harmless. Every other escape sequence (CSI, OSC, DCS/SOS/PM/APC, two-character ESC
sequences, a lone ESC) and every CR are removed. Other control characters are shown as
the viewer shows them: C0 and DEL as their U+2400-block pictures (BEL is `␇`), C1
(U+0080-U+009F, which some terminals obey as escapes) as `<9B>`, as `less` writes them.
TAB and the newlines between lines pass.

Most batches hold no control character, or only SGR colours: one RE2 scan of the encoded
batch (linear, no per-line Python work) tells them apart; only the rest are rewritten.
"""

from __future__ import annotations

import re

import re2

__all__ = ["terminal_bytes", "terminal_safe"]

_LATIN1 = re2.Options()
_LATIN1.encoding = re2.Options.Encoding.LATIN1  # match UTF-8 bytes one by one

# Anything the rewrite below would change, in UTF-8 bytes (C1 controls are \xc2\x80-\x9f).
UNSAFE = re2.compile(
    rb"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]|\xc2[\x80-\x9f]"
    rb"|\x1b(?:[^\[]|$)|\x1b\[[0-9;:]*(?:[^0-9;:m]|$)",
    _LATIN1,
)

BLOCK = 64 * 1024  # dirty text is rewritten in blocks of whole lines: one bad line is cheap

# Whole sequences, so a dropped one leaves none of its bytes behind; an SGR is skipped by
# the lookahead. A sequence never runs past its line: an unterminated string ends with it.
DROP = re.compile(
    r"\x1b(?!\[[0-9;:]*m)(?:"
    r"\[[0-?]*[ -/]*[@-~]"                 # CSI: cursor, erase, modes, queries
    r"|\][^\x07\x1b\n]*(?:\x07|\x1b\\)?"    # OSC to BEL or ST: title, hyperlink, clipboard
    r"|[PX^_][^\x1b\n]*(?:\x1b\\)?"         # DCS, SOS, PM, APC strings
    r"|[ -/]*[0-~]"                         # two-character escapes (ESC c, ESC ( B)
    r"|)"                                   # a lone ESC
    r"|\r"                                  # a CR (the CR of CRLF is already gone)
)
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f]")  # ESC left: SGR's
PICTURES = {chr(c): chr(0x2400 + c) for c in range(0x20)} | {"\x7f": "\u2421"} \
    | {chr(c): f"<{c:02X}>" for c in range(0x80, 0xA0)}


def _rewrite(text: str) -> str:
    if "\x1b" in text or "\r" in text:
        text = DROP.sub("", text)
    # one str.replace per distinct control character: a line full of BELs costs no
    # Python call per BEL
    m = CONTROLS.search(text)
    while m is not None:
        text = text.replace(m.group(), PICTURES[m.group()])
        m = CONTROLS.search(text, m.start())
    return text


def terminal_safe(text: str) -> str:
    """`text` with escape sequences other than SGR removed and controls made visible."""
    return _rewrite(text) if UNSAFE.search(text.encode()) else text


def terminal_bytes(text: str, block: int = BLOCK) -> bytes:
    """`terminal_safe(text)` as UTF-8. A clean text costs one encode and one scan; in a
    dirty one, only the blocks of lines that hold something unsafe are rewritten."""
    data = text.encode()
    m = UNSAFE.search(data)
    if m is None:
        return data
    start = data.rfind(b"\n", 0, m.start()) + 1
    out = [data[:start]]
    size = len(data)
    while start < size:
        end = data.find(b"\n", start + block) + 1 or size
        piece = data[start:end]
        out.append(_rewrite(piece.decode()).encode() if UNSAFE.search(piece) else piece)
        start = end
    return b"".join(out)

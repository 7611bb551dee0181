"""Line filters: substring or regular expression, case, invert.

Regular expressions use RE2, whose matching time is linear in the line: no pattern a
visitor types can stall the server (no backtracking, no backreferences).
"""

from __future__ import annotations

from collections.abc import Callable

import re2

from logtail.files.lines import Lines

__all__ = ["MAX_PATTERN", "FilterError", "LineFilter"]

MAX_PATTERN = 1000
RE2_MAX_MEM = 8 * 1024 * 1024


class FilterError(ValueError):
    """A pattern that cannot be used; the message is for the person who typed it."""


class LineFilter:
    __slots__ = ("_block", "_scan", "case", "invert", "match", "query", "regex")

    def __init__(self, query: str, regex: bool = False, case: bool = False,
                 invert: bool = False) -> None:
        if len(query) > MAX_PATTERN:
            raise FilterError(f"at most {MAX_PATTERN} characters")
        self.query, self.regex, self.case, self.invert = query, regex, case, invert
        self._scan: Callable[..., object] | None = None
        self._block: Callable[..., object] | None = None
        self.match: Callable[[str], bool] = self._matcher()

    def _matcher(self) -> Callable[[str], bool]:
        if self.regex:
            options = re2.Options()
            options.case_sensitive = self.case
            options.log_errors = False
            options.never_capture = True
            options.max_mem = RE2_MAX_MEM
            try:
                search = re2.compile(self.query, options).search
                # the same pattern for a whole batch at once: `^`/`$` at line ends, and no
                # match may cross a newline, so it finds exactly the lines `search` would
                options.never_nl = True
                if "\\A" not in self.query and "\\z" not in self.query:  # text anchors
                    self._scan = re2.compile(f"(?m:{self.query})", options).search
            except re2.error as e:
                msg = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
                raise FilterError(msg) from None
            found: Callable[[str], bool] = lambda line: search(line) is not None  # noqa: E731
            self._block = self._scan
        else:
            options = re2.Options()
            options.case_sensitive = self.case
            options.never_nl = True
            options.never_capture = True
            options.log_errors = False
            self._block = re2.compile(re2.escape(self.query), options).search
            if self.case:
                q = self.query
                found = lambda line: q in line  # noqa: E731
            else:
                q = self.query.lower()
                found = lambda line: q in line.lower()  # noqa: E731
        if self.invert:
            self._block = None
            return lambda line: not found(line)
        return found

    def block_search(self) -> Callable[[bytes, int], object] | None:
        """A search over a block of whole lines (bytes), finding the next matching line
        from a position; RE2 runs it without the GIL. None where each line must be tested
        on its own (`invert`, or a pattern anchored to the text)."""
        return self._block

    def apply(self, lines: Lines) -> list[str]:
        """The matching lines of a batch; a batch without the substring is skipped whole."""
        if self._scan is not None and not self.invert:
            return self._scan_batch(lines.text)
        if not self.regex and not self.invert:
            text = lines.text if self.case else lines.text.lower()
            if (self.query if self.case else self.query.lower()) not in text:
                return []
        match = self.match
        return [line for line in lines.split() if match(line)]

    def select(self, lines: list[str]) -> list[str]:
        """`apply` to lines that come as a list (shipped entries, other sources)."""
        return self.apply(Lines("\n".join(lines), len(lines)))

    def _scan_batch(self, text: str) -> list[str]:
        """Regex over the whole batch: Python work per matching line, not per line."""
        buf = text.encode()
        size = len(buf)
        search = self._scan
        assert search is not None
        out: list[str] = []
        pos = 0
        while pos <= size:
            m = search(buf, pos)
            if m is None:
                break
            start = m.start()  # type: ignore[attr-defined]
            begin = buf.rfind(b"\n", 0, start) + 1
            end = buf.find(b"\n", start)
            if end < 0:
                end = size
            out.append(buf[begin:end].decode())
            pos = end + 1
        return out

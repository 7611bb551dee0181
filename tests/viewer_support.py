"""Support for the viewer tests and the viewer benchmark: headless Chromium, a tiny reverse
proxy that mounts the app under a sub-path, and page helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, ConsoleMessage, Page, Playwright, expect

CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-smooth-scrolling",  # a wheel event scrolls at once, not over later frames
]


def chromium_path() -> str | None:
    """A system Chromium if there is one (LOGTAIL_CHROMIUM overrides); else Playwright's."""
    explicit = os.environ.get("LOGTAIL_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


async def launch(pw: Playwright, *extra_args: str) -> Browser:
    return await pw.chromium.launch(executable_path=chromium_path(),
                                    args=[*CHROMIUM_ARGS, *extra_args])


# -- a reverse proxy that serves the app under a prefix ------------------------------------

class PrefixProxy:
    """HTTP/1.1 proxy on 127.0.0.1: `/prefix/rest` goes upstream as `/rest`, else 404.

    One request per connection (`Connection: close` upstream), bytes piped both ways, so
    streams pass through unbuffered, as behind nginx with `proxy_buffering off`."""

    def __init__(self, prefix: str, upstream_port: int) -> None:
        assert prefix.startswith("/") and prefix.endswith("/")
        self.prefix = prefix.encode()
        self.upstream_port = upstream_port
        self.paths: list[str] = []  # request targets as the browser sent them
        self.base = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> PrefixProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line, _, rest = head.partition(b"\r\n")
            method, target, version = line.split(b" ", 2)
            self.paths.append(target.decode("latin-1"))
            if not target.startswith(self.prefix):
                writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n"
                             b"connection: close\r\n\r\n")
                await writer.drain()
                return
            target = b"/" + target[len(self.prefix):]
            headers = [h for h in rest.split(b"\r\n")
                       if h and not h.lower().startswith(b"connection:")]
            up_reader, upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            upstream.write(b" ".join([method, target, version]) + b"\r\n" +
                           b"\r\n".join([*headers, b"Connection: close"]) + b"\r\n\r\n")
            await upstream.drain()
            up = asyncio.ensure_future(_pipe(reader, upstream))
            down = asyncio.ensure_future(_pipe(up_reader, writer))
            try:
                await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
            finally:
                up.cancel()
                down.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ValueError):
            pass
        finally:
            for w in (upstream, writer):
                if w is not None:
                    w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


# -- page helpers ------------------------------------------------------------------------

NETWORK_NOISE = ("Failed to load resource", "net::ERR_")


@dataclass
class PageWatch:
    """Everything a page reported that a test may want to assert on."""

    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    dialogs: list[str] = field(default_factory=list)
    statuses: list[tuple[int, str]] = field(default_factory=list)  # (status, url)
    requests: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        def console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                self.errors.append(msg.text)

        async def dialog(d) -> None:  # type: ignore[no-untyped-def]
            self.dialogs.append(d.message)
            await d.dismiss()

        page.on("console", console)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("dialog", dialog)
        page.on("response", lambda r: self.statuses.append((r.status, r.url)))
        page.on("request", lambda r: self.requests.append(r.url))

    def real_errors(self, allow_network: bool = False) -> list[str]:
        """Errors, leaving out the browser's own notes about refused HTTP requests when
        the test provoked them (429s, a server that is down for a moment)."""
        if not allow_network:
            return list(self.errors)
        return [e for e in self.errors if not e.startswith(NETWORK_NOISE)]


async def shown_lines(page: Page) -> list[str]:
    """The text of the log rows on the page now (only what the virtual list rendered)."""
    return await page.locator("#rows .row:not(.notice) .txt").all_inner_texts()


async def saved_lines(page: Page) -> list[str]:
    """Every retained line on show (after filtering), through the Save button."""
    async with page.expect_download() as info:
        await page.click("#download")
    download = await info.value
    path = await download.path()
    text = Path(path).read_text(encoding="utf-8")
    return text.split("\n")[:-1] if text else []


@contextlib.asynccontextmanager
async def viewer_page(browser: Browser, **context_args: object) -> AsyncIterator[tuple[Page,
                                                                                      PageWatch]]:
    args: dict[str, object] = {"viewport": {"width": 1280, "height": 800},
                               "accept_downloads": True}
    args.update(context_args)
    context = await browser.new_context(**args)  # type: ignore[arg-type]
    page = await context.new_page()
    watch = PageWatch()
    watch.attach(page)
    try:
        yield page, watch
    finally:
        await context.close()


WAIT = 15_000  # ms: generous, never a timing assertion


async def open_live(page: Page, url: str) -> None:
    """Open the viewer and wait until its stream is live."""
    await page.goto(url)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=WAIT)

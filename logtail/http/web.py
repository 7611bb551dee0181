"""The viewer's static files, served from memory by name.

The set of files is fixed when the app is built, so a request can only ever name one of
them: no client-supplied path reaches the filesystem. Each response carries an ETag (a
hash of the content), so browsers revalidate cheaply after an upgrade.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath

from sanic import HTTPResponse, Request
from sanic.response import raw

__all__ = ["VIEWER_PACKAGE", "WebAssets"]

# web/ in the source tree, installed as this package (see pyproject.toml): found through
# the import system, so a wheel, an sdist build and an editable checkout all serve it.
VIEWER_PACKAGE = "logtail.viewer"
TYPES = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8",
         ".svg": "image/svg+xml", ".json": "application/json", ".png": "image/png",
         ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


class WebAssets:
    def __init__(self, files: dict[str, Asset]) -> None:
        self.files = files

    @classmethod
    def load(cls, root: Traversable | None = None) -> WebAssets:
        """Every viewer file under `root` (default: the installed viewer), read once.

        A missing viewer package gives no files, so `/` answers 404 "viewer not installed"
        instead of the server failing to start.
        """
        if root is None:
            try:
                root = resources.files(VIEWER_PACKAGE)
            except ModuleNotFoundError:
                return cls({})
        assets: dict[str, Asset] = {}
        if root.is_dir():
            for name, item in sorted(_walk(root, ())):
                body = item.read_bytes()
                suffix = PurePosixPath(name).suffix
                ctype = TYPES.get(suffix) or mimetypes.guess_type(name)[0]
                etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
                assets[name] = Asset(body, ctype or "application/octet-stream", etag)
        return cls(assets)

    def response(self, name: str, request: Request) -> HTTPResponse:
        asset = self.files.get(name)
        if asset is None:
            return raw(b"viewer not installed\n", status=404, content_type="text/plain")
        headers = {"etag": asset.etag, "cache-control": "no-cache"}
        if request.headers.get("if-none-match") == asset.etag:
            return HTTPResponse(status=304, headers=headers)
        return raw(asset.body, content_type=asset.content_type, headers=headers)


def _walk(folder: Traversable, parts: tuple[str, ...]) -> Iterator[tuple[str, Traversable]]:
    """(relative posix name, file) for every file below `folder`, nested ones too.

    Hidden names and the package's own Python files (``__init__.py``, ``__pycache__``) are
    not viewer files and are never served.
    """
    for item in folder.iterdir():
        if item.name.startswith((".", "__")):
            continue
        if item.is_dir():
            yield from _walk(item, (*parts, item.name))
        elif item.is_file():
            yield "/".join((*parts, item.name)), item

"""The viewer's static files, served from memory by name.

The set of files is fixed when the app is built, so a request can only ever name one of
them: no client-supplied path reaches the filesystem. Each response carries an ETag (a
hash of the content), so browsers revalidate cheaply after an upgrade.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from sanic import HTTPResponse, Request
from sanic.response import raw

__all__ = ["WEB_DIR", "WebAssets"]

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
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
    def load(cls, root: Path = WEB_DIR) -> WebAssets:
        files: dict[str, Asset] = {}
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if not path.is_file() or path.name.startswith("."):
                    continue
                body = path.read_bytes()
                ctype = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
                etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
                files[path.relative_to(root).as_posix()] = Asset(
                    body, ctype or "application/octet-stream", etag)
        return cls(files)

    def response(self, name: str, request: Request) -> HTTPResponse:
        asset = self.files.get(name)
        if asset is None:
            return raw(b"viewer not installed\n", status=404, content_type="text/plain")
        headers = {"etag": asset.etag, "cache-control": "no-cache"}
        if request.headers.get("if-none-match") == asset.etag:
            return HTTPResponse(status=304, headers=headers)
        return raw(asset.body, content_type=asset.content_type, headers=headers)

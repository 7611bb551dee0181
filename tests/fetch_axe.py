#!/usr/bin/env python3
"""axe-core (the accessibility checker) for the viewer's tests, from the npm registry.

A pinned version; the tarball's sha512 is checked against the `integrity` the registry
publishes for that version, and against the one written here, before anything is kept.
Only `axe.min.js` is kept, in tests/.cache/ (git-ignored); later runs use the copy.

Usage: python tests/fetch_axe.py   (prints the path of axe.min.js)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

__all__ = ["AXE_VERSION", "axe_path", "ensure_axe"]

AXE_VERSION = "4.14.1"
AXE_INTEGRITY = ("sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyF"
                 "NNtuFooJpZe37OgudVGtQ==")
REGISTRY = os.environ.get("NPM_REGISTRY", "https://registry.npmjs.org").rstrip("/")
CACHE = Path(__file__).resolve().parent / ".cache"
MEMBER = "package/axe.min.js"
TIMEOUT_S = 60


def axe_path() -> Path:
    return CACHE / f"axe-core-{AXE_VERSION}" / "axe.min.js"


def _get(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json, */*"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        data: bytes = response.read()
        return data


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")


def ensure_axe() -> Path:
    """The path of axe.min.js, fetched and verified first if it is not cached yet."""
    path = axe_path()
    if path.is_file() and path.stat().st_size > 0:
        return path
    meta = json.loads(_get(f"{REGISTRY}/axe-core/{AXE_VERSION}"))
    dist = meta["dist"]
    if dist.get("integrity") != AXE_INTEGRITY:
        raise RuntimeError(f"axe-core {AXE_VERSION}: the registry gives integrity "
                           f"{dist.get('integrity')!r}, expected {AXE_INTEGRITY!r}")
    tarball = _get(dist["tarball"])
    got = _integrity(tarball)
    if got != AXE_INTEGRITY:
        raise RuntimeError(f"axe-core {AXE_VERSION}: the tarball's sha512 is {got}, "
                           f"the registry says {AXE_INTEGRITY}")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile(MEMBER)
        if member is None:
            raise RuntimeError(f"axe-core {AXE_VERSION}: no {MEMBER} in the tarball")
        script = member.read()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    with os.fdopen(fd, "wb") as f:
        f.write(script)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)  # whole or not at all, even with two test runs at once
    return path


if __name__ == "__main__":
    print(ensure_axe())
    sys.exit(0)

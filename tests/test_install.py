"""The wheel and the sdist, installed into fresh virtualenvs outside the checkout, work.

`make` installs logtail in editable mode, where the source tree is always at hand, so the
rest of the suite cannot notice a file missing from a distribution. Here both are built
from a copy of the checkout, installed as a user would (the sdist through pip, which
builds its own wheel from it), and `<venv>/bin/logtail serve` runs from a folder outside
the checkout: the page, every file it loads, every ES module those import, and a stream.

Dependencies come from a wheelhouse built once and kept in pytest's cache (keyed by the
requirements and the interpreter), so the installs themselves need no network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from helpers import append, child_output, free_port

import logtail
from logtail.http.web import WebAssets

ROOT = Path(__file__).resolve().parent.parent
# what a checkout holds besides its sources (as in .gitignore): left out of the copy built
TOP_LEVEL_ARTEFACTS = {".git", ".venv", "venv", "build", "dist", "logs"}
ARTEFACTS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "node_modules"}
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                 ".svg": "image/svg+xml"}

pytestmark = pytest.mark.timeout(600)


def run(cmd: list[str | Path], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 300) -> str:
    """Run `cmd`; its output, or a test failure that shows it."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or clean_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        pytest.fail(f"exit {proc.returncode}: {' '.join(map(str, cmd))}\n{proc.stdout}")
    return proc.stdout


def not_sources(folder: str, names: list[str]) -> set[str]:
    """For shutil.copytree: the names in `folder` that are build or run artefacts."""
    here = Path(folder)
    local = TOP_LEVEL_ARTEFACTS if here == ROOT else {"out"} if here == ROOT / "bench" else set()
    return {n for n in names
            if n in local or n in ARTEFACTS or n.endswith((".egg-info", ".pyc"))}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what would let a child import from the checkout or .venv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTHON") and k not in ("VIRTUAL_ENV", "STATE_DIRECTORY")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="session")
def wheelhouse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               ) -> Path:
    """Wheels of logtail's dependencies and build requirements, from PyPI once."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = [*meta["build-system"]["requires"], *meta["project"]["dependencies"]]
    key = hashlib.sha256("\n".join(
        [sys.version, sysconfig.get_platform(), *reqs]).encode()).hexdigest()[:16]
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    parent = (cache.mkdir("install-wheelhouse") if cache is not None
              else tmp_path_factory.mktemp("install-wheelhouse"))
    house = parent / key
    if not house.is_dir():
        partial = parent / f".{key}.{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", partial, *reqs],
            cwd=parent, timeout=500)
        for old in parent.iterdir():  # wheelhouses of earlier requirements
            if old != partial:
                shutil.rmtree(old, ignore_errors=True)
        partial.rename(house)
    return house


@pytest.fixture(scope="session")
def dists(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built by `python -m build` from a copy of the checkout."""
    try:
        import build  # noqa: F401
    except ImportError:
        pytest.fail("the `build` package is missing: run `make install` (test extra)")
    base = tmp_path_factory.mktemp("dists")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=not_sources, symlinks=True)
    out = base / "dist"
    # the isolated build environment installs setuptools from the wheelhouse, offline
    run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, src],
        cwd=base, env=clean_env(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheelhouse)))
    (sdist,) = out.glob("logtail-*.tar.gz")
    (wheel,) = out.glob("logtail-*.whl")
    return {"sdist": sdist, "wheel": wheel, "src": src}


def install(dist: Path, venv: Path, wheelhouse: Path) -> Path:
    """A fresh venv with `dist` in it; its bin folder.

    The venv gets no pip of its own (ensurepip alone takes seconds): this pip installs
    into it (`--python`), dependencies from the wheelhouse only, without byte-compiling.
    """
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv.parent)
    run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
         "--no-compile", "--no-index", "--find-links", wheelhouse, dist], cwd=venv.parent)
    return venv / "bin"


class Server:
    """`<venv>/bin/logtail serve FILE --port P`, started from a folder outside the checkout."""

    def __init__(self, exe: Path, log: Path, cwd: Path) -> None:
        self.base = f"http://127.0.0.1:{free_port()}"
        port = self.base.rsplit(":", 1)[1]
        self.proc = subprocess.Popen(
            [str(exe), "serve", log.name, "--port", port], cwd=cwd,
            env=clean_env(XDG_STATE_HOME=str(cwd / "state")),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"logtail exited {self.proc.returncode}: {child_output(self.proc)}")
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        pytest.fail(f"logtail did not start: {child_output(self.proc)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def viewer_files(web: Path) -> dict[str, bytes]:
    """What the viewer ships: every file under web/ (nested too) but the package's own."""
    return {p.relative_to(web).as_posix(): p.read_bytes() for p in sorted(web.rglob("*"))
            if p.is_file() and not any(part.startswith((".", "__")) for part in
                                       p.relative_to(web).parts)}


def check_type(url: str, response: httpx.Response) -> None:
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    suffix = Path(url).suffix
    if suffix in CONTENT_TYPES:
        assert response.headers["content-type"].startswith(CONTENT_TYPES[suffix]), url
    assert response.headers.get("etag"), url


def crawl_viewer(client: httpx.Client, base: str) -> set[str]:
    """Fetch `/`, everything it references and every module imported from there on."""
    page = client.get(base + "/")
    check_type("index.html", page)
    refs = re.findall(r'<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*"([^"]+)"', page.text)
    assert refs, "the viewer page references no assets"
    todo = [urljoin(base + "/", r) for r in refs if not re.match(r"^(?:[a-z]+:|/|#)", r)]
    seen: set[str] = set()
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        r = client.get(url)
        check_type(url, r)
        if url.endswith(".js"):  # static and dynamic imports of other modules
            for spec in re.findall(
                    r"""(?:\bimport|\bfrom)\s*\(?\s*["'](\.{1,2}/[^"']+)["']""", r.text):
                todo.append(urljoin(url, spec))
    return seen


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_installed_distribution_serves_viewer_and_streams(kind, dists, wheelhouse, tmp_path):
    bin_ = install(dists[kind], tmp_path / "venv", wheelhouse)
    work = tmp_path / "work"
    work.mkdir()

    # the package, its viewer and its version all come from the venv, never the checkout
    probe = run([bin_ / "python", "-c",
                 "import json, logtail, importlib.metadata as m, importlib.resources as r; "
                 "print(json.dumps([logtail.__file__, str(r.files('logtail.viewer')), "
                 "logtail.__version__, m.version('logtail')]))"], cwd=work)
    module, viewer, version, dist_version = json.loads(probe)
    venv = (tmp_path / "venv").resolve()
    for path in (module, viewer):
        assert Path(path).resolve().is_relative_to(venv), path
        assert not Path(path).resolve().is_relative_to(ROOT), path
    assert version == dist_version == logtail.__version__
    assert run([bin_ / "logtail", "--version"], cwd=work).strip() == f"logtail {version}"

    log = work / "app.log"
    append(log, *(f"line {i}" for i in range(10)))
    server = Server(bin_ / "logtail", log, work)
    try:
        server.wait_ready()
        with httpx.Client(timeout=15) as client:
            seen = crawl_viewer(client, server.base)
            assert any(u.endswith(".js") for u in seen) and len(seen) > 3, seen
            # every file of web/ is served byte for byte, nested ones too
            shipped = viewer_files(dists["src"] / "web")
            for name, body in shipped.items():
                url = f"{server.base}/static/{name}"
                r = client.get(url)
                check_type(url, r)
                assert r.content == body, name
            assert client.get(server.base + "/").content == shipped["index.html"]

            (name,) = [f["name"] for f in client.get(server.base + "/api/files").json()["files"]]
            stream = f"{server.base}/api/files/{name}/stream?format=text&n=1"
            with client.stream("GET", stream) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/plain")
                lines = r.iter_lines()
                assert next(lines) == "line 9"  # the backlog
                append(log, "written while streaming")
                assert next(lines) == "written while streaming"  # followed live
    finally:
        server.stop()


def test_viewer_assets_are_every_file_below_the_package_nested_ones_too(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "icons").mkdir()
    (tmp_path / "icons" / "dot.svg").write_text("<svg/>")
    (tmp_path / "__init__.py").write_text('"""the package, not the viewer"""')
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / ".editor.swp").write_bytes(b"\0")
    assets = WebAssets.load(tmp_path)
    assert sorted(assets.files) == ["icons/dot.svg", "index.html"]
    assert assets.files["icons/dot.svg"].content_type == "image/svg+xml"
    assert assets.files["index.html"].content_type.startswith("text/html")
    assert assets.files["index.html"].etag != assets.files["icons/dot.svg"].etag


def test_this_install_serves_the_viewer_from_the_package():
    """However logtail is installed here (editable under `make`), web/ is logtail.viewer."""
    served = {name: asset.body for name, asset in WebAssets.load().files.items()}
    assert served == viewer_files(ROOT / "web")

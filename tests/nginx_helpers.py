"""A real nginx on loopback running the shipped deploy/nginx.conf, for tests and benchmarks.

The config is the shipped file with only its ports (and, when asked, the read timeout
and gzip) changed; each change must match exactly once, so an edit to the shipped file
cannot silently leave the tests running something else. nginx runs in the foreground as
a child process with every path it writes inside a temporary folder.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from helpers import child_output

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "deploy" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _replace_once(text: str, pattern: str, new: str) -> str:
    out, count = re.subn(pattern, lambda _: new, text)
    assert count == 1, f"deploy/nginx.conf: expected one match for {pattern!r}, found {count}"
    return out


def nginx_config(tmp: Path, port: int, upstream_port: int, read_timeout: str | None = None,
                 gzip: bool = False) -> str:
    """The shipped config, listening on 127.0.0.1:`port`, proxying to `upstream_port`."""
    text = SHIPPED.read_text()
    text = _replace_once(text, r"listen\s+80;", f"listen 127.0.0.1:{port};")
    text = _replace_once(text, r"server\s+127\.0\.0\.1:8080;",
                         f"server 127.0.0.1:{upstream_port};")
    if read_timeout is not None:
        text = _replace_once(text, r"proxy_read_timeout\s+\S+;",
                             f"proxy_read_timeout {read_timeout};")
    # paths nginx writes to, inside tmp instead of /var (compiled-in defaults are absolute)
    local = "".join(f"    {d}_temp_path {tmp}/{d};\n"
                    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    local += f"    access_log {tmp}/access.log;\n"
    if gzip:
        local += "    gzip on;\n    gzip_proxied any;\n" \
                 "    gzip_types text/event-stream text/plain application/json;\n"
    return _replace_once(text, r"http\s*\{\n", "http {\n" + local)


class Nginx:
    """`nginx -p TMP -c TMP/nginx.conf` in the foreground, as a child process."""

    def __init__(self, tmp: Path, upstream_port: int, **options: object) -> None:
        self.dir = tmp
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        conf = self.dir / "nginx.conf"
        conf.write_text(nginx_config(self.dir, self.port, upstream_port, **options))  # type: ignore[arg-type]
        self.proc = subprocess.Popen(
            [NGINX, "-e", "stderr", "-p", str(self.dir), "-c", str(conf),
             "-g", f"daemon off; master_process on; pid {self.dir}/nginx.pid;"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.output()}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.02)
        raise TimeoutError(f"nginx did not start: {self.output()}")

    def output(self) -> str:
        return child_output(self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown: open streams are cut
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def running_nginx(tmp: Path, upstream_port: int, **options: object) -> Iterator[Nginx]:
    nginx = Nginx(tmp, upstream_port, **options)
    try:
        nginx.wait_ready()
        yield nginx
    finally:
        nginx.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

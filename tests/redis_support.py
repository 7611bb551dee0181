"""A redis-server on loopback and the real `logtail ship` process, for the shipping and
fleet tests."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import redis
from helpers import ROOT, ServerProcess, free_port

HOST = "web-1"


class RedisServer:
    """redis-server on a fixed loopback port, so it can be stopped and started again."""

    def __init__(self, directory: Path, port: int | None = None,
                 password: str | None = None) -> None:
        self.dir = directory
        self.port = port or free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str) -> None:
        auth = ("--requirepass", self.password) if self.password else ()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), *auth, *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                # ours, not another one that took the port first (others run tests here)
                if int(self.client().info("server")["process_id"]) == self.proc.pid:
                    return
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=5)

    def shutdown(self, save: bool) -> None:
        """Stop it: with SAVE it writes its data and loads it again at the next start."""
        assert self.proc is not None
        with contextlib.suppress(redis.exceptions.ConnectionError):
            self.client().shutdown(save=save, nosave=not save)
        self.proc.wait(15)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Shipper:
    """The real `logtail ship` process; its log goes to a file that outlives restarts."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "logtail", "ship", "-c", str(self.config)],
                stdout=out, stderr=out, cwd=ROOT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> int:
        """SIGTERM, then the exit code (it must stop cleanly, and soon)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise


@contextlib.contextmanager
def shipping(config: Path, log: Path | None = None) -> Iterator[Shipper]:
    shipper = Shipper(config, log or config.with_suffix(".log"))
    shipper.start()
    try:
        yield shipper
    finally:
        if shipper.proc is not None:
            shipper.proc.kill()
            shipper.proc.wait(10)


def write_config(tmp: Path, url: str, extra: str = "", files: str = "",
                 host: str = HOST) -> Path:
    path = tmp / "ship.toml"
    path.write_text(f'[redis]\nurl = "{url}"\n\n[ship]\nhost = "{host}"\n{extra}\n'
                    + (files or '[[files]]\nname = "app"\npath = "app.log"\n'))
    return path


def append(path: Path, lines: list[str]) -> None:
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))


NAME = "web-1:app"


def serve_config(tmp: Path, url: str, files: str = "", extra: str = "") -> Path:
    path = tmp / "serve.toml"
    path.write_text(f'[server]\nsecret_file = "{tmp / "secret"}"\n'
                    f'[limits]\nrequests_per_ip = "100000/minute"\nstreams_per_ip = 100\n'
                    f'[redis]\nurl = "{url}"\n[fleet]\nenabled = true\nlist_s = 0.2\n'
                    f"{extra}\n{files}")
    return path


def serving(config: Path) -> ServerProcess:
    server = ServerProcess(["-c", str(config)], free_port())
    server.wait_ready()
    return server


def wait_listed(base: str, name: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = httpx.get(base + "/api/files", timeout=5).json()["files"]
        found = [f for f in files if f["name"] == name]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"{name} not listed")

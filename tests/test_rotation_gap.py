"""The rotation gap: lines written through the old descriptor after a rename rotation.

logrotate renames the log and creates a new one, then signals the writer to reopen; until
it does (nginx's workers reopen one by one), lines still go to the renamed file. They must
reach every stream exactly once, in file order, and a resume in the middle must lose and
repeat nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from helpers import append, child_output, live_server, make_config, sse

from logtail.files.follow import MAX_RETIRING, Follower
from logtail.files.generation import Batch
from logtail.files.position import IdCodec


@pytest.fixture(params=["inotify", "watchfiles"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def config(tmp: Path, backend: str = "inotify", files: dict[str, str] | None = None) -> Any:
    return make_config(tmp, files, extra=f'[watch]\nbackend = "{backend}"\n')


def rotate(log: Path) -> None:
    """logrotate's `create`: rename, then a new empty file under the old name."""
    os.rename(log, log.with_name(log.name + ".1"))
    log.touch()


def unbuffered(path: Path) -> BinaryIO:
    return open(path, "ab", buffering=0)


async def test_writes_through_the_old_descriptor_are_delivered_before_the_new_file(
        tmp_path: Path, backend: str) -> None:
    log = tmp_path / "app.log"
    log.touch()
    async with live_server(config(tmp_path, backend)) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            with unbuffered(log) as old:
                old.write(b"before\n")
                rotate(log)
                await asyncio.sleep(0.3)  # logtail has moved on to the new file by now
                for i in range(20):  # the writer has not reopened yet
                    old.write(f"old {i}\n".encode())
                    await asyncio.sleep(0.01)
            append(log, *(f"new {i}" for i in range(5)))
            notices: list[Any] = []
            got = await s.collect(26, notices=notices, timeout=30)
    assert got == ["before", *(f"old {i}" for i in range(20)), *(f"new {i}" for i in range(5))]
    assert [n.event for n in notices if n.event != "missing"] == ["rotated"]


async def test_a_writer_that_never_reopens_is_still_followed(tmp_path: Path) -> None:
    """Nothing ever goes to the new file: every later line is in the renamed one."""
    log = tmp_path / "app.log"
    log.touch()
    async with live_server(config(tmp_path)) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            with unbuffered(log) as old:
                rotate(log)
                await asyncio.sleep(0.3)
                for i in range(3):
                    old.write(f"late {i}\n".encode())
                    assert await s.collect(1, timeout=30) == [f"late {i}"]


class Workers:
    """Two workers of one server writing one log, as nginx's do around a USR1: both
    write `app.log`; it is rotated; worker b reopens at once, worker a goes on writing
    through its old descriptor for `seconds` (the two alternate), then reopens too."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.by_writer: dict[str, list[str]] = {"a": [], "b": []}
        self.by_file: dict[str, list[str]] = {"old": [], "new": []}
        self.in_gap = asyncio.Event()  # set while both files are written
        self._n = 0

    @property
    def lines(self) -> list[str]:
        return self.by_writer["a"] + self.by_writer["b"]

    def _write(self, f: BinaryIO, writer: str, file: str) -> None:
        line = f"{writer}{self._n:05d}"
        self._n += 1
        f.write(line.encode() + b"\n")
        self.by_writer[writer].append(line)
        self.by_file[file].append(line)

    async def run(self, seconds: float) -> None:
        a, b = unbuffered(self.log), unbuffered(self.log)
        files = {"a": "old", "b": "old"}
        try:
            for _ in range(50):
                self._write(a, "a", "old")
                self._write(b, "b", "old")
                await asyncio.sleep(0.002)
            rotate(self.log)
            b.close()
            b, files["b"] = unbuffered(self.log), "new"
            self.in_gap.set()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                self._write(a, "a", files["a"])
                self._write(b, "b", files["b"])
                await asyncio.sleep(0.002)
            self.in_gap.clear()
            a.close()
            a, files["a"] = unbuffered(self.log), "new"
            for _ in range(50):
                self._write(a, "a", "new")
                self._write(b, "b", "new")
                await asyncio.sleep(0.002)
        finally:
            a.close()
            b.close()

    def check(self, got: list[str]) -> None:
        """Every line once; each file's lines, and each writer's, in the order written."""
        assert len(got) == len(set(got)), "a line was sent twice"
        assert sorted(got) == sorted(self.lines)
        for written in (*self.by_file.values(), *self.by_writer.values()):
            mine = set(written)
            assert [ln for ln in got if ln in mine] == written


async def test_both_files_written_alternately_every_line_once(tmp_path: Path,
                                                              backend: str) -> None:
    log = tmp_path / "app.log"
    log.touch()
    workers = Workers(log)
    async with live_server(config(tmp_path, backend)) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            await workers.run(seconds=2.0)
            got = await s.collect(len(workers.lines), timeout=30)
            with contextlib.suppress(TimeoutError):  # nothing more: no line twice
                got.extend(await s.collect(1, timeout=0.5))
    assert len(workers.by_file["old"]) > 500 and len(workers.by_file["new"]) > 500
    workers.check(got)


async def test_resuming_in_the_gap_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """New connections with Last-Event-ID from ids received while both files were being
    written: each goes on in both."""
    log = tmp_path / "app.log"
    log.touch()
    workers = Workers(log)
    received: list[str] = []
    resumed_in_gap = 0
    give_up = time.monotonic() + 60
    async with live_server(config(tmp_path)) as base:
        task: asyncio.Task[None] | None = None
        last_id: str | None = None
        while task is None or not task.done() or len(received) < len(workers.lines):
            assert time.monotonic() < give_up, (len(received), len(workers.lines))
            headers = {"Last-Event-ID": last_id} if last_id else {}
            async with sse(base, "/api/files/app/stream?n=0", headers=headers) as s:
                if task is None:
                    task = asyncio.create_task(workers.run(seconds=2.0))
                elif workers.in_gap.is_set():
                    resumed_in_gap += 1
                target = len(received) + 150  # then drop the connection and resume
                while len(received) < target and not (
                        task.done() and len(received) >= len(workers.lines)):
                    assert time.monotonic() < give_up, (len(received), len(workers.lines))
                    try:
                        ev = await s.next_event(timeout=0.5)
                    except TimeoutError:
                        continue
                    assert ev.event in ("message", "rotated"), ev
                    received.extend(ev.lines)
                    last_id = ev.id or last_id
        await task
    assert resumed_in_gap >= 3
    workers.check(received)


# -- the follower alone ---------------------------------------------------------------------


class Sub:
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def offer(self, batch: Batch) -> None:
        self.batches.append(batch)

    def notify(self) -> None:
        pass

    def lines(self) -> list[str]:
        return [ln for b in self.batches for ln in b.lines.text.split("\n")]


async def _until(cond: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def test_the_old_file_is_final_once_quiet_for_the_grace_period(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    f = Follower("app", log, IdCodec(b"k" * 32), 1000, 5.0, 0.05, rotate_grace_s=0.5)
    s = Sub()
    async with f.hold():
        f.attach(s)
    with unbuffered(log) as old:
        rotate(log)
        f.poke()
        await _until(lambda: f.retiring_generations() != [])
        gen = f.retiring_generations()[0]
        assert not gen.final and gen.next is f.latest()
        old.write(b"late\n")
        f.poke()
        await _until(lambda: s.lines() == ["late"])
        assert "." in s.batches[-1].id  # a place in both files
        await _until(lambda: gen.final)  # quiet for 0.5 s
        append(log, "new")
        f.poke()
        await _until(lambda: s.lines() == ["late", "new"])
        assert "." not in s.batches[-1].id
    f.unsubscribe(s)
    await f.stop()


async def test_only_a_few_rotated_files_are_followed_at_once(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    f = Follower("app", log, IdCodec(b"k" * 32), 1000, 5.0, 0.05, rotate_grace_s=60)
    s = Sub()
    async with f.hold():
        f.attach(s)
    for i in range(MAX_RETIRING + 3):
        os.rename(log, tmp_path / f"app.log.{i}")
        log.touch()
        f.poke()
        await _until(lambda: f.rotations == i + 1)  # noqa: B023
        assert len(f.retiring_generations()) <= MAX_RETIRING
    assert len(f.retiring_generations()) == MAX_RETIRING
    f.unsubscribe(s)
    await f.stop()


# -- real nginx, real logrotate -------------------------------------------------------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
REQUESTS = 3000
RATE = 300  # requests per second
ROTATIONS = 3


def _nginx_conf(tmp: Path, port: int, access_log: Path) -> str:
    user = ""
    if os.geteuid() == 0:  # workers would run as nobody, who cannot reach tmp_path
        user = (f"user {pwd.getpwuid(os.geteuid()).pw_name} "
                f"{grp.getgrgid(os.getegid()).gr_name};\n")
    temp = "".join(f"    {d}_temp_path {tmp}/{d};\n"
                   for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}worker_processes 2;\nerror_log {tmp}/error.log;\n"
            "events { worker_connections 256; }\n"
            f"http {{\n{temp}    access_log {access_log};\n"
            f"    server {{\n        listen 127.0.0.1:{port};\n"
            "        location / { return 200 \"ok\\n\"; }\n    }\n}\n")


@contextlib.contextmanager
def nginx_logging_to(tmp: Path, access_log: Path) -> Iterator[tuple[str, Path]]:
    """nginx with 2 workers answering 200 to everything; yields its URL and pid file."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf, pid = tmp / "nginx.conf", tmp / "nginx.pid"
    conf.write_text(_nginx_conf(tmp, port, access_log))
    proc = subprocess.Popen(
        [NGINX, "-e", "stderr", "-p", str(tmp), "-c", str(conf),
         "-g", f"daemon off; master_process on; pid {pid};"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not pid.exists() or not _listening(port):
            assert proc.poll() is None, child_output(proc)
            assert time.monotonic() < deadline, child_output(proc)
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}", pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _logrotate_conf(tmp: Path, access_log: Path, pid: Path) -> Path:
    conf = tmp / "logrotate.conf"
    conf.write_text(
        f"{access_log} {{\n    create\n    compress\n    delaycompress\n    rotate 10\n"
        f"    missingok\n    postrotate\n        kill -USR1 $(cat {pid})\n    endscript\n}}\n")
    conf.chmod(0o644)  # logrotate refuses a config others may write
    return conf


@pytest.mark.timeout(300)
async def test_nginx_and_logrotate_every_request_line_exactly_once(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir(mode=0o755)
    access = logs / "access.log"
    access.touch()
    state = tmp_path / "logrotate.state"
    received: list[int] = []
    with nginx_logging_to(tmp_path, access) as (url, pid):
        conf = _logrotate_conf(tmp_path, access, pid)
        cfg = config(tmp_path, files={"access": "logs/access.log"})
        async with live_server(cfg) as base:
            async with sse(base, "/api/files/access/stream?n=0") as s, load(url) as answered:
                reader = asyncio.create_task(_request_lines(s, received))
                try:
                    for k in range(1, ROTATIONS + 1):  # spread over the requests
                        while len(received) < k * REQUESTS // (ROTATIONS + 1):
                            assert not reader.done() and not answered.done(), len(received)
                            await asyncio.sleep(0.01)
                        rotated = await asyncio.create_subprocess_exec(
                            LOGROTATE, "-f", "-s", str(state), str(conf),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                        out, _ = await rotated.communicate()
                        assert rotated.returncode == 0, out
                        assert (logs / "access.log.1").exists(), k
                    ok = await answered
                    with contextlib.suppress(TimeoutError):  # (what is lost never comes)
                        async with asyncio.timeout(30):
                            while len(set(received)) < len(ok):
                                await asyncio.sleep(0.05)
                finally:
                    reader.cancel()
    lost = set(ok) - set(received)
    doubled = len(received) - len(set(received))
    print(f"\nnginx + logrotate: {len(ok)} requests answered, {len(received)} lines received, "
          f"{len(lost)} lost, {doubled} duplicated, {ROTATIONS} rotations")
    assert len(ok) == REQUESTS
    assert not lost and not doubled, (sorted(lost)[:20], doubled)
    assert sorted(received) == sorted(ok)


async def _request_lines(s: Any, into: list[int]) -> None:
    """The request numbers in the access log's lines, as they arrive."""
    while True:
        ev = await s.next_event(timeout=60)
        into.extend(int(m.group(1)) for ln in ev.lines
                    if (m := re.search(r"GET /r/(\d+) ", ln)))


# the client, in a process of its own: logtail's event loop stays as free as in production
LOAD = """
import asyncio, json, sys, time
import httpx

async def main(url: str, count: int, rate: float) -> None:
    ok = []
    gate = asyncio.Semaphore(8)
    limits = httpx.Limits(max_connections=8, max_keepalive_connections=8)

    async def one(client, n):
        async with gate:
            if (await client.get(f"{url}/r/{n}")).status_code == 200:
                ok.append(n)

    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        start = time.monotonic()
        tasks = []
        for n in range(count):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(client, n)))
        await asyncio.gather(*tasks)
    print(json.dumps(ok))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""


@contextlib.asynccontextmanager
async def load(url: str) -> AsyncIterator[asyncio.Task[list[int]]]:
    """REQUESTS requests at RATE a second, each with its own URL, on a few connections (so
    both workers serve some); the task gives the numbers of those answered 200."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LOAD, url, str(REQUESTS), str(RATE), stdout=subprocess.PIPE)

    async def answered() -> list[int]:
        out, _ = await proc.communicate()
        return [int(n) for n in json.loads(out)]

    task = asyncio.create_task(answered())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

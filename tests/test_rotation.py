"""Rotation and its cousins, with a writer appending every few ms while it happens.

The received lines must equal the written lines exactly: nothing lost, nothing doubled,
with a notice where the file changed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import append, live_server, make_config, sse

Rotate = Callable[[Path], None]


@pytest.fixture(params=["inotify", "watchfiles"])
def backend(request) -> str:
    return request.param


def config(tmp: Path, backend: str, files: dict[str, str] | None = None, watch: str = ""):
    """Every rotation test runs on both directory watchers."""
    return make_config(tmp, files, extra=f'[watch]\nbackend = "{backend}"\n{watch}')


def rename_create(path: Path) -> None:
    os.rename(path, path.with_name(path.name + ".1"))
    path.touch()


def copytruncate(path: Path) -> None:
    shutil.copyfile(path, path.with_name(path.name + ".1"))
    with open(path, "r+b") as f:
        f.truncate(0)


def delete_recreate(path: Path) -> None:
    path.unlink()
    path.touch()


def symlink_swap(path: Path) -> None:
    """`path` is a symlink; point it at a new target atomically."""
    target = Path(os.readlink(path))
    new_target = target.with_name(f"{target.stem}.next{target.suffix}")
    if new_target.exists():
        new_target = target.with_name(target.name + "x")
    new_target.touch()
    tmp = path.with_name(path.name + ".tmp")
    os.symlink(new_target, tmp)
    os.replace(tmp, path)


async def writer(path: Path, count: int, rotate: Rotate, rotate_at: set[int],
                 delay: float = 0.003) -> list[str]:
    written = []
    for i in range(count):
        if i in rotate_at:
            rotate(path)
        line = f"w{i:05d}"
        with open(path, "a") as f:  # reopen each time, like a logger after rotation
            f.write(line + "\n")
        written.append(line)
        await asyncio.sleep(delay)
    return written


@pytest.mark.parametrize(("rotate", "notice"), [
    (rename_create, "rotated"),
    (delete_recreate, "rotated"),
])
async def test_rotation_while_writing_loses_and_doubles_nothing(tmp_path, rotate, notice, backend):
    log = tmp_path / "app.log"
    log.touch()
    async with live_server(config(tmp_path, backend)) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            await asyncio.sleep(0.2)
            written = await writer(log, 600, rotate, {150, 300, 450})
            notices: list = []
            got = await s.collect(len(written), notices=notices, timeout=30)
    assert got == written
    assert [n.event for n in notices if n.event != "missing"] == [notice] * 3


async def test_copytruncate_gives_truncated_notice_and_keeps_following(tmp_path, backend):
    log = tmp_path / "app.log"
    log.touch()
    async with live_server(config(tmp_path, backend)) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            append(log, *(f"before {i}" for i in range(100)))
            assert len(await s.collect(100)) == 100
            copytruncate(log)
            await asyncio.sleep(0.3)
            append(log, "after 0", "after 1")
            notices: list = []
            assert await s.collect(2, notices=notices) == ["after 0", "after 1"]
            assert [n.event for n in notices] == ["truncated"]


async def test_copytruncate_then_fast_regrowth_is_still_noticed(tmp_path, backend):
    """Truncated and rewritten past the old offset before logtail looks: caught by the
    checksum of the bytes before the offset, not by the size."""
    log = tmp_path / "app.log"
    append(log, "a" * 50)
    cfg = config(tmp_path, backend, watch="safety_s = 0.2\n")
    async with live_server(cfg) as base:
        async with sse(base, "/api/files/app/stream?n=1") as s:
            assert await s.collect(1) == ["a" * 50]
            with open(log, "r+b") as f:  # truncate and regrow in one go
                f.truncate(0)
                f.write(b"".join(f"new {i:02d}\n".encode() for i in range(20)))
            notices: list = []
            got = await s.collect(20, notices=notices)
    assert got == [f"new {i:02d}" for i in range(20)]
    assert [n.event for n in notices] == ["truncated"]


async def test_symlink_swap_is_followed(tmp_path, backend):
    real = tmp_path / "real"
    real.mkdir()
    target = real / "app-1.log"
    target.touch()
    link = tmp_path / "app.log"
    os.symlink(target, link)
    async with live_server(config(tmp_path, backend)) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            await asyncio.sleep(0.2)
            written = await writer(link, 300, symlink_swap, {100, 200})
            notices: list = []
            got = await s.collect(len(written), notices=notices, timeout=30)
    assert got == written
    assert [n.event for n in notices] == ["rotated", "rotated"]


async def test_directory_deleted_and_recreated(tmp_path, backend):
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "app.log"
    append(log, "first")
    cfg = config(tmp_path, backend, {"app": "logs/app.log"}, watch="safety_s = 0.2\n")
    async with live_server(cfg) as base:
        async with sse(base, "/api/files/app/stream?n=5") as s:
            assert await s.collect(1) == ["first"]
            shutil.rmtree(logs)
            ev = await s.next_event()
            assert ev.event == "missing"
            logs.mkdir()
            append(log, "second")
            notices: list = []
            assert await s.collect(1, notices=notices) == ["second"]
            assert [n.event for n in notices] == ["rotated"]
            append(log, "third")
            assert await s.collect(1) == ["third"]


async def test_rename_rotation_drains_the_old_file_first(tmp_path, backend):
    """Lines written to the old file just before the rename are not lost."""
    log = tmp_path / "app.log"
    log.touch()
    async with live_server(config(tmp_path, backend)) as base:
        async with sse(base, "/api/files/app/stream?n=0") as s:
            await asyncio.sleep(0.2)
            with open(log, "a") as f:
                f.write("".join(f"old {i}\n" for i in range(1000)))
                os.rename(log, tmp_path / "app.log.1")
                f.write("late old\n")  # the writer has not reopened yet
            append(log, "new 0")
            notices: list = []
            got = await s.collect(1002, notices=notices)
    assert got == [*(f"old {i}" for i in range(1000)), "late old", "new 0"]
    assert [n.event for n in notices] == ["rotated"]

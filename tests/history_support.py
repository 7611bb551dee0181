"""A log with a history on disk: the live file and logrotate's siblings, plain and gzip,
each a day of lines with ISO timestamps that grow, so search, time bounds and line ids
can be checked against the text itself."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

DAY0 = datetime(2026, 1, 1, tzinfo=UTC)
LINES = 1000
GENERATIONS = [("app.log.3.gz", 1), ("app.log.2.gz", 2), ("app.log.1", 3), ("app.log", 4)]


def stamp(day: int, i: int) -> datetime:
    return DAY0 + timedelta(days=day - 1, seconds=i * 60)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def day_lines(day: int, n: int = LINES) -> list[str]:
    """Line i of day d: its time, the day, i, and ERROR on every tenth."""
    return [f"{iso(stamp(day, i))} day{day} line {i} {'ERROR' if i % 10 == 0 else 'info'} "
            f"{'x' * (i % 17)}" for i in range(n)]


def write_history(folder: Path, n: int = LINES) -> list[str]:
    """The four generations; returns every line, oldest first."""
    everything: list[str] = []
    for name, day in GENERATIONS:
        lines = day_lines(day, n)
        data = "".join(f"{ln}\n" for ln in lines).encode()
        path = folder / name
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        end = stamp(day, n).timestamp()
        os.utime(path, (end, end))  # as logrotate leaves them: last written at day's end
        everything += lines
    return everything


async def ndjson(client: httpx.AsyncClient, url: str
                 ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A search's matches (and source errors) and its `done` object."""
    resp = await client.get(url, timeout=60)
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in resp.text.splitlines()]
    assert "matches" in rows[-1]
    return rows[:-1], rows[-1]


async def lines_at(client: httpx.AsyncClient, base: str, at: str, **params: Any) -> Any:
    resp = await client.get(base + "/api/files/app/lines", params={"at": at, **params})
    assert resp.status_code == 200, (resp.status_code, resp.text)
    return resp.json()

"""The lines around a line id over HTTP: context, paging across generations (into a .gz),
ids that survive rotation and compression, 410 once a generation is gone, bad input."""

from __future__ import annotations

import gzip
import os

import httpx
import pytest
from helpers import live_server, make_config
from history_support import lines_at, ndjson, write_history


@pytest.fixture
def history(tmp_path):
    return write_history(tmp_path)


async def _id_of(c: httpx.AsyncClient, base: str, text: str) -> str:
    rows, _ = await ndjson(c, f"{base}/api/files/app/search?format=ndjson&case=1&q={text}")
    (row,) = [r for r in rows if f" {text} " in r["line"] + " "]
    return str(row["id"])


async def test_lines_before_and_after_a_line(tmp_path, history):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        at = await _id_of(c, base, "day3 line 500")
        got = await lines_at(c, base, at)  # 20 and 20 by default
        i = history.index(next(ln for ln in history if " day3 line 500 " in ln))
        assert [x["line"] for x in got["lines"]] == history[i - 20: i + 21]
        assert got["at"] == 20 and got["lines"][20]["id"] == at
        assert got["file"] == "app" and got["more_before"] and got["more_after"]
        for x in got["lines"][::7]:  # every id names its own line
            assert (await lines_at(c, base, x["id"], before=0, after=0))["lines"] == [x]
        got = await lines_at(c, base, at, before=3, after=0)
        assert [x["line"] for x in got["lines"]] == history[i - 3: i + 1] and got["at"] == 3
        resp = await c.get(base + "/api/files/app/lines", params={"at": at, "format": "text",
                                                                  "before": 1, "after": 1})
        assert resp.headers["content-type"] == "text/plain; charset=utf-8"
        assert resp.text == "".join(f"{ln}\n" for ln in history[i - 1: i + 2])


async def test_load_earlier_pages_up_through_every_generation_into_the_gz(tmp_path, history):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        at = await _id_of(c, base, "day4 line 5")
        seen: list[str] = []
        got = await lines_at(c, base, at, before=0, after=0)
        seen = [got["lines"][0]["line"]]
        pages = 0
        while True:  # the viewer's "load earlier": before=N&after=0 from the first line
            got = await lines_at(c, base, at, before=333, after=0)
            assert got["lines"][got["at"]]["id"] == at
            seen = [x["line"] for x in got["lines"][: got["at"]]] + seen
            at = got["lines"][0]["id"]
            pages += 1
            if not got["more_before"]:
                break
        assert seen == history[: 3000 + 6]
        assert pages == 10
        # the first page crossed from app.log into app.log.1, later ones into both .gz
        first = await lines_at(c, base, await _id_of(c, base, "day2 line 2"), before=5, after=0)
        assert [x["line"] for x in first["lines"]] == history[997:1003]


async def test_after_goes_on_into_newer_generations(tmp_path, history):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        at = await _id_of(c, base, "day1 line 998")
        got = await lines_at(c, base, at, before=1, after=1000)
        assert [x["line"] for x in got["lines"]] == history[997:1999]
        assert got["at"] == 1 and got["more_after"]
        last = await lines_at(c, base, await _id_of(c, base, "day4 line 998"), after=5)
        assert not last["more_after"] and last["lines"][-1]["line"] == history[-1]


async def test_an_id_taken_before_rotation_and_compression_still_resolves(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("".join(f"2026-01-01T00:00:{i % 60:02d}Z first life line {i}\n"
                           for i in range(500)))
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        at = await _id_of(c, base, "life line 250")
        before = await lines_at(c, base, at, before=2, after=2)
        log.rename(tmp_path / "app.log.1")  # logrotate, with delaycompress
        log.write_text("2026-01-02T00:00:00Z second life\n")
        assert await lines_at(c, base, at, before=2, after=2) == before
        data = (tmp_path / "app.log.1").read_bytes()  # the next day: compressed
        (tmp_path / "app.log.2.gz").write_bytes(gzip.compress(data))
        (tmp_path / "app.log.1").unlink()
        (tmp_path / "app.log").rename(tmp_path / "app.log.1")
        log.write_text("2026-01-03T00:00:00Z third life\n")
        after = await lines_at(c, base, at, before=2, after=2)
        assert [x["line"] for x in after["lines"]] == [x["line"] for x in before["lines"]]
        assert after["lines"][2]["id"] == at
        # gone for good: 410 with a JSON error
        (tmp_path / "app.log.2.gz").unlink()
        resp = await c.get(base + "/api/files/app/lines", params={"at": at})
        assert resp.status_code == 410
        assert resp.json()["status"] == 410 and resp.json()["error"]


async def test_a_generation_rewritten_in_place_is_gone(tmp_path, history):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        at = await _id_of(c, base, "day3 line 400")
        (tmp_path / "app.log.1").write_text("2026-01-03T00:00:00Z something else\n" * 200)
        resp = await c.get(base + "/api/files/app/lines", params={"at": at})
        assert resp.status_code == 410


@pytest.mark.parametrize(("query", "param"), [
    ("", "at"), ("at=", "at"), ("at=zz", "at"), ("at=1000.0123:0", "at"),
    ("at=1000.0123456789abcdef:0&before=-1", "before"),
    ("at=1000.0123456789abcdef:0&after=x", "after"),
    ("at=1000.0123456789abcdef:0&format=ndjson", "format"),
    ("at=1000.0123456789abcdef:0&at=1000.0123456789abcdef:1", "at"),
    ("at=1000.0123456789abcdef:0&n=1", "n"),
])
async def test_bad_parameters_are_400_naming_them(tmp_path, history, query, param):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        resp = await c.get(f"{base}/api/files/app/lines?{query}")
        assert resp.status_code == 400, resp.text
        assert resp.json()["param"] == param


async def test_context_is_bounded_by_max_context(tmp_path, history):
    config = make_config(tmp_path, extra="[history]\nmax_context = 5\n")
    async with live_server(config) as base, httpx.AsyncClient() as c:
        at = await _id_of(c, base, "day3 line 500")
        got = await lines_at(c, base, at, before=100, after=100)
        assert len(got["lines"]) == 11 and got["at"] == 5


async def test_an_unknown_id_is_410_and_an_odd_offset_finds_its_line(tmp_path, history):
    async with live_server(make_config(tmp_path)) as base, httpx.AsyncClient() as c:
        resp = await c.get(base + "/api/files/app/lines?at=1000.0123456789abcdef:0")
        assert resp.status_code == 410
        at = await _id_of(c, base, "day2 line 7")
        key, offset = at.split(":")
        inside = f"{key}:{int(offset, 16) + 9:x}"  # within the line: the line itself
        got = await lines_at(c, base, inside, before=0, after=0)
        assert got["lines"] == [{"id": at, "line": next(ln for ln in history
                                                         if " day2 line 7 " in ln)}]
        size = os.path.getsize(tmp_path / "app.log.1")
        past = await c.get(base + "/api/files/app/lines",
                           params={"at": f"{(await _id_of(c, base, 'day3 line 1')).split(':')[0]}"
                                         f":{size + 10:x}"})
        assert past.status_code == 410

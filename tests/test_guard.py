"""The Guard's limits as a state machine: memory storage, no server."""

from __future__ import annotations

from logtail.config import LimitsConfig
from logtail.http.guard import Guard, Refusal


async def test_streams_are_counted_per_ip_and_in_all_and_given_back():
    guard = Guard(LimitsConfig(streams_per_ip=2, max_streams=3))
    a1 = await guard.acquire_stream("10.0.0.1")
    a2 = await guard.acquire_stream("10.0.0.1")
    assert isinstance(a1, str) and isinstance(a2, str)
    refused = await guard.acquire_stream("10.0.0.1")
    assert isinstance(refused, Refusal)
    assert (refused.status, refused.reason) == (429, "streams_per_ip")
    b1 = await guard.acquire_stream("10.0.0.2")
    assert isinstance(b1, str)
    refused = await guard.acquire_stream("10.0.0.3")
    assert isinstance(refused, Refusal) and (refused.status, refused.reason) == (503, "max_streams")
    await guard.release_stream(a1)
    c1 = await guard.acquire_stream("10.0.0.3")
    assert isinstance(c1, str)
    for token in (a2, b1, c1):
        await guard.release_stream(token)
    assert guard.total == 0 and not guard.local
    await guard.close()


async def test_request_rate_refuses_with_a_retry_after_per_ip():
    guard = Guard(LimitsConfig(requests_per_ip="3/minute"))
    assert [await guard.check_request("10.0.0.1") for _ in range(3)] == [None] * 3
    refused = await guard.check_request("10.0.0.1")
    assert refused is not None and refused.status == 429 and 1 <= refused.retry_after <= 60
    assert await guard.check_request("10.0.0.2") is None
    await guard.close()


async def test_failed_logins_count_while_being_checked_and_successes_do_not_count():
    guard = Guard(LimitsConfig(failed_auth_per_ip="2/minute"))
    ip = "10.0.0.1"
    assert await guard.begin_auth(ip) is None
    assert await guard.begin_auth(ip) is None
    refused = await guard.begin_auth(ip)  # two still being checked: no room for a third
    assert refused is not None and refused.reason == "auth_failures"
    await guard.end_auth(ip, ok=True)
    await guard.end_auth(ip, ok=False)
    assert await guard.begin_auth(ip) is None  # one failure so far
    await guard.end_auth(ip, ok=False)
    assert (await guard.begin_auth(ip)) is not None  # two failures: limit reached
    assert await guard.begin_auth("10.0.0.2") is None
    await guard.end_auth("10.0.0.2", ok=True)
    assert not guard.auth_pending
    await guard.close()

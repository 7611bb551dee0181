"""What every request goes through: the target and Host checks, the per-IP request rate,
CORS, credentials, security headers, the access log. Errors are JSON, named once here.
"""

from __future__ import annotations

import time

from sanic import HTTPResponse, Request
from sanic.response import BaseHTTPResponse
from sanic.response import json as json_response

from logtail.http.auth import AuthBusy
from logtail.http.guard import Refusal
from logtail.http.ratelog import escape
from logtail.http.sanic_compat import is_error_placeholder, malformed_target
from logtail.http.state import state_of

__all__ = ["access", "credentials", "error", "finish_response", "guard_request", "refusal"]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
                    "x-frame-options": "DENY"}
OPEN_PATHS = frozenset({"/healthz"})


def error(status: int, message: str, headers: dict[str, str] | None = None,
          **extra: object) -> HTTPResponse:
    return json_response({"error": message, "status": status, **extra}, status=status,
                         headers=headers)


def refusal(r: Refusal) -> HTTPResponse:
    return error(r.status, r.message, headers={"retry-after": str(r.retry_after)},
                 reason=r.reason, retry_after=r.retry_after)


async def guard_request(request: Request) -> HTTPResponse | None:
    """Before any route: the target and Host, the per-IP request rate, CORS preflight,
    credentials. Malformed and misdirected requests are refused first and not counted:
    a DNS-rebinding page must not spend the rate of the browser it runs in."""
    state = state_of(request)
    if is_error_placeholder(request):
        return None  # Sanic answers a head it could not read (400, 408, 413) itself
    request.ctx.started = time.monotonic()
    request.ctx.user = None
    ip = request.ctx.client_ip = state.client_ip.resolve(request.ip, request.headers)
    if (target := malformed_target(request)) is not None:
        state.bad_requests.warning(f"malformed request from {ip}: "
                                     f"{escape(request.method, 20)} {escape(target)}")
        return error(400, "malformed request target (control characters)")
    hosts = request.headers.getall("host", [])
    if len(hosts) > 1 or not state.hosts.allows(hosts[0] if hosts else None):
        state.metrics.reject("host")
        return error(421, "this server does not answer for this host (server.allowed_hosts)",
                     host=escape(", ".join(hosts), 100))
    # probes are never rate-limited: a load balancer that gets a 429 takes us out of rotation
    probe = request.method in ("GET", "HEAD") and (
        request.path == "/healthz" or (request.path == "/metrics" and ip in state.metrics_allow))
    if not probe:
        refused = await state.guard.check_request(ip)
        if refused is not None:
            state.metrics.reject(refused.reason)
            return refusal(refused)
    if request.method == "OPTIONS":
        return _preflight(request)
    auth = state.auth
    if auth.enabled and request.path not in OPEN_PATHS:
        found = await credentials(request)
        if isinstance(found, HTTPResponse):
            return found
        if found is None:
            state.metrics.reject("auth")
            return error(401, "authentication required",
                         headers={"www-authenticate": auth.challenge})
        request.ctx.user = found
    return None


async def credentials(request: Request) -> str | HTTPResponse | None:
    """The user the request's credentials name, None without valid ones, or a refusal:
    429 past `limits.failed_auth_per_ip` failures from this client (no password is
    checked then), 503 while too many password checks wait."""
    header = request.headers.get("authorization")
    if not header:
        return None
    state = state_of(request)
    ip = request.ctx.client_ip
    refused = await state.guard.begin_auth(ip)
    if refused is not None:
        state.metrics.reject(refused.reason)
        return refusal(refused)
    ok = True  # a check cut short (client gone) is not a failure
    try:
        user = await state.auth.check(header)
        ok = user is not None
        return user
    except AuthBusy:
        ok = False  # counts toward failed_auth_per_ip: a flood meets its limit, not a queue
        state.metrics.reject("auth_busy")
        return error(503, "too many logins being checked", headers={"retry-after": "1"},
                     reason="auth_busy", retry_after=1)
    finally:
        await state.guard.end_auth(ip, ok)


def _preflight(request: Request) -> HTTPResponse:
    origin = request.headers.get("origin")
    if origin is None or origin not in state_of(request).cors:
        return error(403, "CORS origin not allowed")
    return HTTPResponse(status=204, headers={
        "access-control-allow-methods": "GET, OPTIONS",
        "access-control-allow-headers": "Authorization, Last-Event-ID",
        "access-control-max-age": "600",
    })


def _security_headers(request: Request, headers: dict[str, str] | object) -> None:
    h = headers  # Sanic's Header (a multidict) or a plain dict
    for k, v in SECURITY_HEADERS.items():
        h[k] = v  # type: ignore[index]
    h["content-security-policy"] = CSP  # type: ignore[index]
    origin = request.headers.get("origin")
    if origin is not None and origin in state_of(request).cors:
        h["access-control-allow-origin"] = origin  # type: ignore[index]
        h["access-control-allow-credentials"] = "true"  # type: ignore[index]
        h["vary"] = "Origin"  # type: ignore[index]


async def finish_response(request: Request, response: BaseHTTPResponse
                          ) -> HTTPResponse | None:
    """Security headers on every response; the access-log line (streams log their own
    when they end). Returns None: the response goes out as it is."""
    _security_headers(request, response.headers)
    if not getattr(request.ctx, "stream", False):
        access(request, response.status, len(response.body or b""))
    return None


def access(request: Request, status: int, size: int, duration: float | None = None) -> None:
    route = request.route.name.rsplit(".", 1)[-1] if request.route else "none"
    state = state_of(request)
    state.metrics.request(route, status)
    log = getattr(state, "access", None)  # none before the server started
    if log is None:
        return
    if duration is None:
        duration = time.monotonic() - getattr(request.ctx, "started", time.monotonic())
    target = request.path + (f"?{request.query_string}" if request.query_string else "")
    log.write(getattr(request.ctx, "client_ip", request.ip), getattr(request.ctx, "user", None),
                 request.method, target, f"HTTP/{request.version}", status, size,
                 request.headers.get("referer"), request.headers.get("user-agent"), duration)



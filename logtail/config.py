"""Configuration: `config.toml` parsed into frozen dataclasses.

Every problem is a `ConfigError` whose message names the key and the bad value, so the
CLI can print one line and exit 2 instead of starting with a half-understood config.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "FileConfig",
    "LimitsConfig",
    "ServerConfig",
    "StreamConfig",
    "WatchConfig",
    "config_for_paths",
    "load_config",
    "parse_config",
]

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
FORWARDED_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")
RATE_RE = re.compile(r"^\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day)s?\s*$", re.I)


class ConfigError(ValueError):
    """A config problem, worded for the operator: `key: what is wrong, got value`."""


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "must be a port number 0-65535"


def _rate(v: str) -> str | None:
    return None if RATE_RE.match(v) else 'must look like "120/minute" or "10 per second"'


def _check(fn: Any) -> dict[str, Any]:
    return {"check": fn}


def _forwarded_header(v: str) -> str | None:
    return None if v.lower() in FORWARDED_HEADERS else \
        'must be "X-Forwarded-For", "Forwarded" or "X-Real-IP"'


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=_check(_port))
    workers: int = field(default=1, metadata=_check(_positive))
    trusted_proxies: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    access_log: str = "off"
    show_paths: bool = False
    request_timeout_s: float = field(default=10.0, metadata=_check(_positive))
    keepalive_timeout_s: float = field(default=15.0, metadata=_check(_positive))
    forwarded_header: str = field(default="X-Forwarded-For",
                                  metadata=_check(_forwarded_header))
    allowed_hosts: tuple[str, ...] = ()  # () = automatic, see logtail.http.hosts
    metrics_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    secret_file: str = ""  # the key that signs stream ids; "" = logtail.files.secret's default


@dataclass(frozen=True)
class StreamConfig:
    backlog_lines: int = field(default=100, metadata=_check(_non_negative))
    max_backlog_lines: int = field(default=10000, metadata=_check(_non_negative))
    heartbeat_s: float = field(default=15.0, metadata=_check(_positive))
    stall_timeout_s: float = field(default=60.0, metadata=_check(_positive))
    retry_ms: int = field(default=3000, metadata=_check(_non_negative))
    max_line_bytes: int = field(default=65536, metadata=_check(_positive))
    client_buffer_bytes: int = field(default=4 * 1024 * 1024, metadata=_check(_positive))
    partial_line_s: float = field(default=5.0, metadata=_check(_positive))
    max_resume_bytes: int = field(default=256 * 1024 * 1024, metadata=_check(_non_negative))
    max_backlog_bytes: int = field(default=64 * 1024 * 1024, metadata=_check(_positive))


@dataclass(frozen=True)
class LimitsConfig:
    streams_per_ip: int = field(default=8, metadata=_check(_non_negative))
    requests_per_ip: str = field(default="120/minute", metadata=_check(_rate))
    max_streams: int = field(default=1000, metadata=_check(_non_negative))
    storage: str = "memory://"
    failed_auth_per_ip: str = field(default="10/minute", metadata=_check(_rate))
    scan_threads: int = field(default=2, metadata=_check(_positive))
    scans_per_ip: int = field(default=1, metadata=_check(_positive))


@dataclass(frozen=True)
class AuthConfig:
    users: tuple[tuple[str, str], ...] = ()
    tokens: tuple[str, ...] = ()
    realm: str = "logtail"

    @property
    def enabled(self) -> bool:
        return bool(self.users or self.tokens)


def _backend(v: str) -> str | None:
    return None if v in ("auto", "inotify", "watchfiles") else \
        'must be "auto", "inotify" or "watchfiles"'


@dataclass(frozen=True)
class WatchConfig:
    backend: str = field(default="auto", metadata=_check(_backend))
    step_ms: int = field(default=1, metadata=_check(_positive))
    debounce_ms: int = field(default=10, metadata=_check(_positive))
    safety_s: float = field(default=1.0, metadata=_check(_positive))
    idle_stop_s: float = field(default=5.0, metadata=_check(_non_negative))


@dataclass(frozen=True)
class FileConfig:
    name: str
    path: Path
    title: str


@dataclass(frozen=True)
class Config:
    server: ServerConfig = ServerConfig()
    stream: StreamConfig = StreamConfig()
    limits: LimitsConfig = LimitsConfig()
    auth: AuthConfig = AuthConfig()
    watch: WatchConfig = WatchConfig()
    files: tuple[FileConfig, ...] = ()
    source: Path | None = None

    def file(self, name: str) -> FileConfig | None:
        return next((f for f in self.files if f.name == name), None)

    def with_overrides(self, *, host: str | None = None, port: int | None = None) -> Config:
        server = self.server
        if host is not None:
            server = replace(server, host=host)
        if port is not None:
            if _port(port):
                raise ConfigError(f"--port: must be a port number 0-65535, got {port}")
            server = replace(server, port=port)
        return replace(self, server=server)


RENAMED = {"stream.backlog_scan_bytes": "stream.max_backlog_bytes (it bounds every backlog)"}

SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "stream": StreamConfig,
    "limits": LimitsConfig,
    "watch": WatchConfig,
}


def _type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        t, "a list of strings"
    )


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check `value` against the type of the field's default; ints are accepted as floats."""
    kind = type(default)
    if kind is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: must be a list of strings, got {value!r}")
        return tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"{key}: must be {_type_name(kind)}, got {value!r}")
    return value


def _section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: must be a table, got {raw!r}")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        f = known.get(key)
        if f is None and f"{name}.{key}" in RENAMED:
            raise ConfigError(f"{name}.{key}: renamed to {RENAMED[f'{name}.{key}']}")
        if f is None:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(known)})")
        full = f"{name}.{key}"
        default = f.default
        value = _coerce(full, value, default)
        check = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{full}: {problem}, got {value!r}")
        values[key] = value
    return cls(**values)


HOST_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
HOST_NAME_RE = re.compile(rf"\.?{HOST_LABEL}(?:\.{HOST_LABEL})*\.?", re.I)


def host_entry_problem(entry: str) -> str | None:
    """Why `entry` cannot be an `allowed_hosts` entry, or None if it can."""
    bare = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
    try:
        ipaddress.ip_address(bare)
        return None
    except ValueError:
        pass
    if entry == "*" or HOST_NAME_RE.fullmatch(entry):
        return None
    return 'must be a host name (".example.com" for it and its subdomains), ' \
           'an IP address, or "*", without a port'


def _check_proxies(server: ServerConfig) -> None:
    for key in ("trusted_proxies", "metrics_allow"):
        for i, entry in enumerate(getattr(server, key)):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(
                    f"server.{key}[{i}]: not an IP address or CIDR, got {entry!r}"
                ) from None
    for i, entry in enumerate(server.allowed_hosts):
        if problem := host_entry_problem(entry):
            raise ConfigError(f"server.allowed_hosts[{i}]: {problem}, got {entry!r}")


def _auth(raw: Any) -> AuthConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"auth: must be a table, got {raw!r}")
    unknown = set(raw) - {"users", "tokens", "realm"}
    if unknown:
        raise ConfigError(f"auth.{sorted(unknown)[0]}: unknown key (known: users, tokens, realm)")
    users = raw.get("users", {})
    if not isinstance(users, dict):
        raise ConfigError(f"auth.users: must be a table of user = password-hash, got {users!r}")
    pairs = []
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not hashed.startswith("scrypt$"):
            raise ConfigError(
                f"auth.users.{user}: must be a hash from `logtail hash-password`, got {hashed!r}"
            )
        pairs.append((user, hashed))
    tokens = _coerce("auth.tokens", raw.get("tokens", []), ())
    for i, tok in enumerate(tokens):
        if len(tok) < 16:
            raise ConfigError(f"auth.tokens[{i}]: must be at least 16 characters long")
    realm = _coerce("auth.realm", raw.get("realm", "logtail"), "")
    return AuthConfig(users=tuple(pairs), tokens=tokens, realm=realm)


def _files(raw: Any, base: Path) -> tuple[FileConfig, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("files: at least one [[files]] entry is needed")
    out: list[FileConfig] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        key = f"files[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{key}: must be a table, got {entry!r}")
        unknown = set(entry) - {"name", "path", "title"}
        if unknown:
            raise ConfigError(f"{key}.{sorted(unknown)[0]}: unknown key (known: name, path, title)")
        name, path = entry.get("name"), entry.get("path")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ConfigError(
                f"{key}.name: must be 1-64 characters of A-Z a-z 0-9 . _ -, got {name!r}"
            )
        if name in (".", ".."):
            raise ConfigError(f"{key}.name: must not be {name!r}")
        if name in seen:
            raise ConfigError(f"{key}.name: duplicate name {name!r}")
        seen.add(name)
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{key}.path: must be a non-empty string, got {path!r}")
        title = entry.get("title", name)
        if not isinstance(title, str):
            raise ConfigError(f"{key}.title: must be a string, got {title!r}")
        resolved = (base / Path(path).expanduser()).absolute()
        out.append(FileConfig(name=name, path=resolved, title=title))
    return tuple(out)


def parse_config(data: dict[str, Any], base: Path, source: Path | None = None) -> Config:
    """Build a Config from parsed TOML; relative paths resolve from `base`."""
    unknown = set(data) - {*SECTIONS, "files", "auth"}
    if unknown:
        raise ConfigError(
            f"{sorted(unknown)[0]}: unknown key (known: {', '.join([*SECTIONS, 'auth', 'files'])})"
        )
    parts = {name: _section(name, cls, data.get(name, {})) for name, cls in SECTIONS.items()}
    _check_proxies(parts["server"])
    stream: StreamConfig = parts["stream"]
    if stream.backlog_lines > stream.max_backlog_lines:
        raise ConfigError(
            f"stream.backlog_lines: must be <= stream.max_backlog_lines "
            f"({stream.max_backlog_lines}), got {stream.backlog_lines}"
        )
    return Config(
        **parts,
        auth=_auth(data.get("auth", {})),
        files=_files(data.get("files"), base),
        source=source,
    )


def load_config(path: Path | str) -> Config:
    """Read and validate a config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return parse_config(data, path.absolute().parent, source=path.absolute())


def config_for_paths(paths: list[str], base: Config | None = None) -> Config:
    """A config for `logtail serve FILE ...`: each file named after its basename."""
    entries = []
    used: set[str] = set()
    for p in paths:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(p).name)[:60] or "file"
        name, n = stem, 2
        while name in used or name in (".", ".."):
            name, n = f"{stem}-{n}", n + 1
        used.add(name)
        entries.append({"name": name, "path": str(Path(p).absolute()), "title": p})
    files = _files(entries, Path.cwd())
    return replace(base or Config(), files=files)

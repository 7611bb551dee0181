"""Configuration: `config.toml` parsed into frozen dataclasses.

Every problem is a `ConfigError` whose message names the key and the bad value, so the
CLI can print one line and exit 2 instead of starting with a half-understood config.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "FileConfig",
    "FleetConfig",
    "HistoryConfig",
    "LimitsConfig",
    "RedisConfig",
    "ServerConfig",
    "ShipConfig",
    "StreamConfig",
    "WatchConfig",
    "config_for_paths",
    "config_schema",
    "load_config",
    "parse_config",
    "redact_url",
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
    restart_retry_ms: int = field(default=2000, metadata=_check(_non_negative))
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
    max_files: int = field(default=1000, metadata=_check(_positive))
    max_files_per_stream: int = field(default=16, metadata=_check(_positive))


@dataclass(frozen=True)
class AuthConfig:
    users: tuple[tuple[str, str], ...] = ()
    tokens: tuple[str, ...] = ()
    realm: str = "logtail"


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
    rotate_grace_s: float = field(default=30.0, metadata=_check(_non_negative))


@dataclass(frozen=True)
class HistoryConfig:
    """Bounds on reading a log's history (search, lines around a position): per request,
    and scans at once per server and per client address."""

    max_scan_bytes: int = field(default=4 * 1024 ** 3, metadata=_check(_positive))
    max_scans: int = field(default=4, metadata=_check(_positive))
    scans_per_ip: int = field(default=2, metadata=_check(_positive))
    max_context: int = field(default=1000, metadata=_check(_positive))
    max_matches: int = field(default=10000, metadata=_check(_positive))


REDIS_SCHEMES = ("redis", "rediss", "unix")
SHIP_HOST_RE = re.compile(r"^[A-Za-z0-9._-]{1,253}$")


def _redis_url(v: str) -> str | None:
    """What redis-py's `from_url` takes: redis://[[user]:password@]host[:port][/db],
    rediss:// (TLS) the same, unix:///path/to/socket[?db=N]."""
    wanted = 'must look like "redis://[:password@]host[:port][/db]", rediss://... or ' \
             '"unix:///path/to/redis.sock"'
    try:
        url = urlsplit(v)
        port = url.port
    except ValueError:
        return wanted
    if url.scheme not in REDIS_SCHEMES:
        return wanted
    if url.scheme == "unix":
        return None if url.path else wanted
    if port == 0 or not url.hostname or not re.fullmatch(r"/?[0-9]*", url.path):
        return wanted
    return None


def _ship_host(v: str) -> str | None:
    """A host names Redis keys (`logtail:<host>:<file>`): no `:`, nothing surprising."""
    if v == "" or (SHIP_HOST_RE.match(v) and v not in (".", "..")):
        return None
    return "must be 1-253 characters of A-Z a-z 0-9 . _ - (\"\" = the machine's hostname)"


def redact_url(v: str) -> str:
    """A URL fit for logs and error messages: its password replaced by `***`."""
    try:
        url = urlsplit(v)
        if url.password is None:
            return v
        user = url.username or ""
        host = url.netloc.rpartition("@")[2]
        return urlunsplit(url._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "(a URL that cannot be parsed)" if "@" in v else v


@dataclass(frozen=True)
class RedisConfig:
    """Where shipped logs go (`logtail ship`) and are read from."""

    url: str = field(default="redis://127.0.0.1:6379/0",
                     metadata={"check": _redis_url, "shown": redact_url})


@dataclass(frozen=True)
class ShipConfig:
    """`logtail ship`: this host's name in Redis, and how much Redis keeps per file."""

    host: str = field(default="", metadata=_check(_ship_host))  # "" = socket.gethostname()
    maxlen: int = field(default=1_000_000, metadata=_check(_positive))  # lines, about
    heartbeat_s: float = field(default=5.0, metadata=_check(_positive))


@dataclass(frozen=True)
class FleetConfig:
    """`logtail serve`: also serve every file that shippers publish in `[redis] url`."""

    enabled: bool = False
    list_s: float = field(default=2.0, metadata=_check(_positive))  # list refreshed this often
    quiet_s: float = field(default=30.0, metadata=_check(_positive))  # a host this quiet: marked


@dataclass(frozen=True)
class FileConfig:
    """One [[files]] entry: a file (`path`), or a glob whose matches are served as
    `<name>.<basename>` (`path` is then the pattern; only its last part has wildcards)."""

    name: str
    path: Path
    title: str  # for a glob: "" or what goes before "/<basename>" in its files' titles
    glob: bool = False
    follow_symlinks: bool = True  # a glob's symlinks (a path's is always followed)
    files_only: bool = False  # `logtail serve DIR`: regular files only, no subdirectories


@dataclass(frozen=True)
class Config:
    server: ServerConfig = ServerConfig()
    stream: StreamConfig = StreamConfig()
    limits: LimitsConfig = LimitsConfig()
    auth: AuthConfig = AuthConfig()
    watch: WatchConfig = WatchConfig()
    history: HistoryConfig = HistoryConfig()
    redis: RedisConfig = RedisConfig()
    ship: ShipConfig = ShipConfig()
    fleet: FleetConfig = FleetConfig()
    files: tuple[FileConfig, ...] = ()
    source: Path | None = None

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
    "history": HistoryConfig,
    "redis": RedisConfig,
    "ship": ShipConfig,
    "fleet": FleetConfig,
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
            # a password is never printed
            shown = f.metadata["shown"](value) if "shown" in f.metadata else value
            raise ConfigError(f"{full}: {problem}, got {shown!r}")
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


FILE_KEYS = ("name", "path", "glob", "title", "follow_symlinks")
PREFIX_MAX = 32  # a glob's name prefixes its files' names, which are 64 characters at most
GLOB_MAGIC = re.compile(r"[*?[]")


def _files(raw: Any, base: Path, fleet: bool = False) -> tuple[FileConfig, ...]:
    if fleet and raw is None:
        return ()  # a server that shows only what shippers publish
    if not isinstance(raw, list) or not raw:
        raise ConfigError("files: at least one [[files]] entry is needed"
                          + ("" if fleet else " (or [fleet] enabled = true)"))
    out: list[FileConfig] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        fc = _file(f"files[{i}]", entry, base)
        if not fc.glob:  # a glob's name is a prefix: its files get unique names when found
            if fc.name in seen:
                raise ConfigError(f"files[{i}].name: duplicate name {fc.name!r}")
            seen.add(fc.name)
        out.append(fc)
    return tuple(out)


def _file(key: str, entry: Any, base: Path) -> FileConfig:
    if not isinstance(entry, dict):
        raise ConfigError(f"{key}: must be a table, got {entry!r}")
    unknown = set(entry) - set(FILE_KEYS)
    if unknown:
        raise ConfigError(
            f"{key}.{sorted(unknown)[0]}: unknown key (known: {', '.join(FILE_KEYS)})")
    name, path, pattern = entry.get("name"), entry.get("path"), entry.get("glob")
    if path is None and pattern is None:
        raise ConfigError(f"{key}.path: missing: give path (one file) or glob (the files "
                          "that match)")
    if path is not None and pattern is not None:
        raise ConfigError(f"{key}.glob: give path (one file) or glob (the files that match), "
                          "not both")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"{key}.name: must be 1-64 characters of A-Z a-z 0-9 . _ -, got {name!r}")
    if name in (".", ".."):
        raise ConfigError(f"{key}.name: must not be {name!r}")
    title = entry.get("title", name if pattern is None else "")
    if not isinstance(title, str):
        raise ConfigError(f"{key}.title: must be a string, got {title!r}")
    if pattern is not None:
        return _glob_file(key, name, pattern, title, entry.get("follow_symlinks", False), base)
    if "follow_symlinks" in entry:
        raise ConfigError(f"{key}.follow_symlinks: only for a glob (a path that is a symlink "
                          "is always followed)")
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{key}.path: must be a non-empty string, got {path!r}")
    return FileConfig(name=name, path=(base / Path(path).expanduser()).absolute(), title=title)


def _glob_file(key: str, name: str, pattern: Any, title: str, follow: Any,
               base: Path) -> FileConfig:
    if len(name) > PREFIX_MAX:
        raise ConfigError(f"{key}.name: a glob's name prefixes its files' names: at most "
                          f"{PREFIX_MAX} characters, got {name!r}")
    if not isinstance(pattern, str) or not pattern:
        raise ConfigError(f"{key}.glob: must be a non-empty string, got {pattern!r}")
    resolved = (base / Path(pattern).expanduser()).absolute()
    if pattern.endswith("/") or GLOB_MAGIC.search(str(resolved.parent)):
        raise ConfigError(f"{key}.glob: only the file name may have wildcards (one directory "
                          f"is watched), got {pattern!r}")
    if not isinstance(follow, bool):
        raise ConfigError(f"{key}.follow_symlinks: must be true or false, got {follow!r}")
    return FileConfig(name=name, path=resolved, title=title, glob=True, follow_symlinks=follow)


def parse_config(data: dict[str, Any], base: Path, source: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> Config:
    """Build a Config from parsed TOML; relative paths resolve from `base`. With `environ`,
    its `LOGTAIL_<SECTION>__<KEY>` and `LOGTAIL_FILES` variables override the file."""
    labels: dict[str, str] = {}
    if environ:
        data, labels = _merge_env(data, environ)
    try:
        return _parse(data, base, source)
    except ConfigError as e:
        raise _relabel(e, labels) from None


def _parse(data: dict[str, Any], base: Path, source: Path | None) -> Config:
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
        files=_files(data.get("files"), base, parts["fleet"].enabled),
        source=source,
    )


def load_config(path: Path | str, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file (with overrides from `environ`, if given)."""
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
    return parse_config(data, path.absolute().parent, source=path.absolute(), environ=environ)


def config_for_paths(paths: list[str], base: Config | None = None,
                     environ: Mapping[str, str] | None = None) -> Config:
    """A config for `logtail serve FILE|DIR ...`: a file named after its basename; a
    directory served like a glob of its regular files, named `<directory>.<basename>`.
    Without `base`, the settings are the defaults with `environ`'s overrides."""
    entries: list[dict[str, Any]] = []
    used: set[str] = set()
    for p in paths:
        if os.path.isdir(p):
            folder = Path(os.path.abspath(p))  # "logs/.." named after what it is
            prefix = re.sub(r"[^A-Za-z0-9._-]", "_", folder.name)[:PREFIX_MAX].strip(".")
            entries.append({"name": prefix or "root", "glob": str(folder / "*"),
                            "title": p.rstrip("/")})
            continue
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(p).name)[:60] or "file"
        name, n = stem, 2
        while name in used or name in (".", ".."):
            name, n = f"{stem}-{n}", n + 1
        used.add(name)
        entries.append({"name": name, "path": str(Path(p).absolute()), "title": p})
    files = tuple(replace(f, files_only=True) if f.glob else f
                  for f in _files(entries, Path.cwd()))
    if base is None:
        data, labels = _merge_env({}, environ or {})
        data["files"] = entries  # the arguments, not LOGTAIL_FILES
        try:
            base = _parse(data, Path.cwd(), None)
        except ConfigError as e:
            raise _relabel(e, labels) from None
    return replace(base, files=files)


# -- the environment: every key, for containers ------------------------------------------------

ENV_PREFIX = "LOGTAIL_"
ENV_FILES = "LOGTAIL_FILES"  # the whole [[files]] list, as JSON
AUTH_TYPES: dict[str, type] = {"users": dict, "tokens": tuple, "realm": str}
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _merge_env(data: dict[str, Any],
               environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """`data` with `LOGTAIL_<SECTION>__<KEY>` values put in, parsed to each key's type, and
    which variable set which key (for error messages). Variables without `__` are not
    config keys (`LOGTAIL_FILES` excepted)."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    labels: dict[str, str] = {}
    for var in sorted(environ):
        if var == ENV_FILES:
            data["files"] = _env_json(var, "files", environ[var], list,
                                      'a JSON array of tables, like [{"name": ..., "path": ...}]')
            labels["files"] = var
            continue
        section, sep, key = var.removeprefix(ENV_PREFIX).lower().partition("__")
        if not var.startswith(ENV_PREFIX) or not sep:
            continue
        kinds = AUTH_TYPES if section == "auth" else \
            {f.name: type(f.default) for f in fields(SECTIONS[section])} if section in SECTIONS \
            else None
        if kinds is None:
            raise ConfigError(f"{var}: no config section {section!r} "
                              f"(known: {', '.join([*SECTIONS, 'auth'])})")
        if key not in kinds:
            raise ConfigError(f"{var}: no config key {section}.{key} (known: {', '.join(kinds)})")
        table = data.setdefault(section, {})
        if isinstance(table, dict):  # else the file's own error is the one to see
            table[key] = _env_value(var, f"{section}.{key}", kinds[key], environ[var])
        labels[f"{section}.{key}"] = var
    return data, labels


def _env_value(var: str, key: str, kind: type, text: str) -> Any:
    """A variable's text as the value TOML would have given (checked later as any value)."""
    where = f"{var} ({key})"
    t = text.strip()
    if kind is bool:
        if t.lower() in TRUE + FALSE:
            return t.lower() in TRUE
        raise ConfigError(f"{where}: must be true or false (or 1/0, yes/no, on/off), got {text!r}")
    if kind is int:
        if re.fullmatch(r"[+-]?[0-9]+", t):
            return int(t)
        raise ConfigError(f"{where}: must be an integer, got {text!r}")
    if kind is float:
        try:
            number = float(t)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
        raise ConfigError(f"{where}: must be a number, got {text!r}")
    if kind is tuple:
        if t.startswith("["):
            return _env_json(var, key, t, list, 'a JSON array of strings, like ["a", "b"]')
        return [part.strip() for part in t.split(",") if part.strip()]
    if kind is dict:
        return _env_json(var, key, t, dict, 'a JSON object, like {"alice": "scrypt$..."}')
    return text


def _env_json(var: str, key: str, text: str, kind: type, wanted: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{var} ({key}): must be {wanted}: {e}") from None
    if not isinstance(value, kind):
        raise ConfigError(f"{var} ({key}): must be {wanted}, got {text!r}")
    return value


def _relabel(error: ConfigError, labels: dict[str, str]) -> ConfigError:
    """Name the variable when the bad value came from the environment."""
    message = str(error)
    key = message.split(":", 1)[0]
    for name, var in labels.items():
        if key == name or key.startswith((f"{name}.", f"{name}[")):
            return ConfigError(f"{var} ({key}){message[len(key):]}")
    return error


# -- a JSON Schema of config.toml, for editors -------------------------------------------------

JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}
CHECK_SCHEMAS: dict[Any, dict[str, Any]] = {
    _positive: {"exclusiveMinimum": 0},
    _non_negative: {"minimum": 0},
    _port: {"minimum": 0, "maximum": 65535},
    _backend: {"enum": ["auto", "inotify", "watchfiles"]},
    _redis_url: {"pattern": "^(redis|rediss|unix)://"},
    _ship_host: {"pattern": "^([A-Za-z0-9._-]{1,253})?$"},
}


def _table(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _key_schema(f: Any) -> dict[str, Any]:
    default = f.default
    if isinstance(default, tuple):
        out: dict[str, Any] = {"type": "array", "items": {"type": "string"}}
    else:
        out = {"type": JSON_TYPES[type(default)]}
    out["default"] = list(default) if isinstance(default, tuple) else default
    out.update(CHECK_SCHEMAS.get(f.metadata.get("check"), {}))
    return out


def config_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of config.toml, made from the dataclasses above, so
    an editor can check and complete the file (`logtail check-config --schema`)."""
    properties = {name: _table({f.name: _key_schema(f) for f in fields(cls)})
                  for name, cls in SECTIONS.items()}
    properties["auth"] = _table({
        "users": {"type": "object", "default": {},
                  "additionalProperties": {"type": "string", "pattern": "^scrypt\\$"}},
        "tokens": {"type": "array", "default": [], "items": {"type": "string", "minLength": 16}},
        "realm": {"type": "string", "default": "logtail"},
    })
    entry = _table({
        "name": {"type": "string", "pattern": NAME_RE.pattern},
        "path": {"type": "string", "minLength": 1},
        "glob": {"type": "string", "minLength": 1},
        "title": {"type": "string"},
        "follow_symlinks": {"type": "boolean", "default": False},
    })
    entry.update(required=["name"], oneOf=[{"required": ["path"]}, {"required": ["glob"]}])
    properties["files"] = {"type": "array", "minItems": 1, "items": entry}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "logtail config.toml",
            "description": "logtail's configuration; every key is described in README.md "
                           "(Configuration)",
            **_table(properties)}

"""Command line: `logtail serve`, `logtail ship`, `logtail check-config`, `logtail hash-password`,
`logtail demo`.

Startup problems become one line on stderr and an exit code (2 for a bad config or bad
arguments), never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import getpass
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from logtail import __version__
from logtail.config import (
    ENV_FILES,
    Config,
    ConfigError,
    config_for_paths,
    config_schema,
    load_config,
    parse_config,
    redact_url,
)
from logtail.files.secret import SecretError, load_or_create_secret, secret_path

__all__ = ["main"]

DEFAULT_CONFIG = "config.toml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="logtail",
        description="Tail and follow log files over Server-Sent Events, with a browser viewer.",
        epilog="Examples:\n"
               "  logtail serve                      serve the files listed in ./config.toml\n"
               "  logtail serve /var/log/syslog      serve one file, no config needed\n"
               "  logtail serve /var/log/nginx/      serve the logs in a directory\n"
               "  logtail check-config -c prod.toml  validate a config and exit\n"
               "  logtail ship -c ship.toml          append the config's files to Redis\n"
               "  curl -N 'http://127.0.0.1:8080/api/files/syslog/stream?format=text'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"logtail {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("serve", help="start the server",
                       description="Start the server. With FILE arguments, serve those files "
                                   "(named after their basenames) instead of the config's "
                                   "list; a directory serves the logs in it as they come "
                                   "and go (named <directory>.<basename>). Settings can "
                                   "be overridden with LOGTAIL_<SECTION>__<KEY> variables.")
    s.add_argument("-c", "--config", metavar="PATH",
                   help=f"config file (default: ./{DEFAULT_CONFIG} if it exists)")
    s.add_argument("--host", help="address to bind (default from config: 127.0.0.1)")
    s.add_argument("--port", type=int, help="port to bind (default from config: 8080; 0 = any)")
    s.add_argument("files", nargs="*", metavar="FILE",
                   help="files or directories to serve instead of [[files]]")

    sh = sub.add_parser("ship", help="append the config's files to Redis Streams",
                        description="Follow the config's [[files]] and append every line to "
                                    "the Redis stream logtail:<host>:<name> ([redis] url, "
                                    "[ship] host), exactly once across restarts. Stops "
                                    "cleanly on SIGTERM or SIGINT.")
    sh.add_argument("-c", "--config", metavar="PATH",
                    help=f"config file (default: ./{DEFAULT_CONFIG})")

    c = sub.add_parser("check-config", help="validate a config file and exit",
                       description="Validate a config file (with the environment's "
                                   "LOGTAIL_* overrides); exit 0 if it is good, 2 if not.")
    c.add_argument("-c", "--config", metavar="PATH",
                   help=f"config file (default: ./{DEFAULT_CONFIG})")
    c.add_argument("--schema", action="store_true",
                   help="print a JSON Schema of the config file (for editors) and exit")

    sub.add_parser("hash-password", help="print a password hash for [auth.users]",
                   description="Read a password (twice, from the terminal, or one line from "
                               "standard input) and print its scrypt hash for config.toml.")

    d = sub.add_parser("demo", help="append realistic log lines to a file, for trying logtail",
                       description="Append a few realistic, mixed-level log lines per second "
                                   "to FILE until interrupted.")
    d.add_argument("file", metavar="FILE")
    d.add_argument("--rate", type=float, default=3.0, help="lines per second (default 3)")
    return p


def _load(args: argparse.Namespace) -> Config:
    if getattr(args, "files", None):
        base = load_config(args.config, os.environ) if args.config else None
        config = config_for_paths(args.files, base, os.environ)
    else:
        config = _config(args.config)
    return config.with_overrides(host=args.host, port=args.port)


def _config(path: str | None) -> Config:
    """The config file with the environment's overrides; without a file, the environment
    alone if it names the files (`LOGTAIL_FILES`, for containers)."""
    if path is None and not Path(DEFAULT_CONFIG).exists():
        if ENV_FILES in os.environ:
            return parse_config({}, Path.cwd(), environ=os.environ)
        raise ConfigError(f"{DEFAULT_CONFIG}: no config file here; pass -c PATH or FILE "
                          f"arguments, or set {ENV_FILES}")
    return load_config(path or DEFAULT_CONFIG, os.environ)


def _check_bind(host: str, port: int) -> None:
    """Fail with a clear message, before starting workers, when the port is taken."""
    if port == 0:
        return
    _bind(host, port).close()


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or exit with a clear message when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
    except OSError as e:
        s.close()
        why = "already in use" if e.errno == errno.EADDRINUSE else e.strerror
        raise SystemExit(f"logtail: cannot listen on {host}:{port}: {why}") from None
    return s


def serve(config: Config) -> int:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    from logtail.http.app import create_app
    from logtail.http.metrics import SHARED_DIR_ENV

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ours = logging.getLogger("logtail")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    server = config.server
    _check_bind(server.host, server.port)
    # made here, once, before any worker starts: they all read the same key
    key_file = secret_path(server.secret_file, config.source.parent if config.source else None)
    try:
        load_or_create_secret(key_file)
    except SecretError as e:
        raise ConfigError(f"server.secret_file: {e}") from None
    served = [f"{f.name}.*" if f.glob else f.name for f in config.files]
    if config.fleet.enabled:
        served.append(f"the files shipped to {redact_url(config.redis.url)}")
    names = ", ".join(served)
    print(f"logtail {__version__}: serving {names} on http://{server.host}:{server.port}/",
          file=sys.stderr, flush=True)
    if server.workers == 1:
        os.environ.pop(SHARED_DIR_ENV, None)
        app = create_app(config)
        # a listening socket of our own, so that shutdown can close it before the streams
        # say `bye` (see logtail.http.sanic_compat.stop_listening); Sanic keeps its own
        sock = _bind(server.host, server.port)
        sock.listen(100)  # Sanic's default backlog
        app.run(host=server.host, port=server.port, access_log=False, motd=False,
                sock=sock, single_process=True)
        return 0
    if not config.limits.storage.startswith(("redis://", "rediss://")):
        print(f"logtail: warning: {server.workers} workers with limits.storage = "
              f"{config.limits.storage!r}: the per-IP limits and max_streams are counted in "
              f"each worker (a client may get up to {server.workers}x); set limits.storage to "
              "a redis:// URL to make them global", file=sys.stderr, flush=True)
    # Each worker builds its own app (same name in every process, as Sanic requires) and
    # writes its metrics totals into this folder, so any worker can answer for all of them.
    shared = tempfile.mkdtemp(prefix="logtail-")
    os.environ[SHARED_DIR_ENV] = shared  # inherited by the workers Sanic spawns
    try:
        loader = AppLoader(factory=partial(create_app, config, name="logtail"))
        app = loader.load()
        app.prepare(host=server.host, port=server.port, access_log=False, motd=False,
                    workers=server.workers)
        Sanic.serve(primary=app, app_loader=loader)
    finally:
        os.environ.pop(SHARED_DIR_ENV, None)
        shutil.rmtree(shared, ignore_errors=True)
    return 0


def ship(config: Config) -> int:
    from logtail.fleet.ship import run_ship

    _log_to_stderr()
    return run_ship(config)


def _log_to_stderr() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ours = logging.getLogger("logtail")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)


def hash_password_command() -> int:
    from logtail.http.auth import hash_password

    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            print("logtail: the passwords differ", file=sys.stderr)
            return 2
    else:
        first = sys.stdin.readline().rstrip("\n")
    if len(first) < 8:
        print("logtail: use at least 8 characters", file=sys.stderr)
        return 2
    print(hash_password(first))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return serve(_load(args))
        if args.command == "ship":
            return ship(_config(args.config))
        if args.command == "check-config":
            if args.schema:
                print(json.dumps(config_schema(), indent=2))
                return 0
            config = _config(args.config)
            globs = sum(f.glob for f in config.files)
            print(f"{config.source or 'environment'}: ok ({len(config.files) - globs} files, "
                  f"{globs} globs)")
            return 0
        if args.command == "hash-password":
            return hash_password_command()
        if args.command == "demo":
            from logtail.demo import run_demo

            return run_demo(Path(args.file), args.rate)
    except ConfigError as e:
        print(f"logtail: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    parser.print_help()
    return 2

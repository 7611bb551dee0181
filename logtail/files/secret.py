"""The server's secret key, which signs stream ids: made once, kept on disk, shared.

Every worker and every restart must use the same key, or clients could not resume; so
it lives in a file, created with mode 0600 on first start if the config names none that
exists. Creation is atomic (written aside, then hard-linked into place), so workers that
start together all end up reading the one key that won.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["SecretError", "default_secret_path", "load_or_create_secret", "secret_path"]

KEY_BYTES = 32


class SecretError(OSError):
    """The key file cannot be read or made; the message names the file and why."""


def default_secret_path() -> Path:
    """systemd's `StateDirectory=` if set, else `$XDG_STATE_HOME/logtail/secret`
    (`~/.local/state/logtail/secret`)."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        return Path(state.split(":")[0]) / "secret"
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "logtail" / "secret"


def load_or_create_secret(path: Path) -> bytes:
    """The key in `path`, made first if the file does not exist."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, secrets.token_hex(KEY_BYTES).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process won the race: read theirs
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return _read(path)
    except OSError as e:
        raise SecretError(f"cannot create the secret key file {path}: "
                          f"{e.strerror or e}") from None


def _read(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise SecretError(f"cannot read the secret key file {path}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode()
    if len(key) < 16:
        raise SecretError(f"the secret key file {path} holds fewer than 16 bytes of key")
    return key


def secret_path(setting: str, base: Path | None) -> Path:
    """`server.secret_file` (relative to the config file's folder), or the default."""
    if not setting:
        return default_secret_path()
    path = Path(setting).expanduser()
    return path if path.is_absolute() or base is None else base / path

"""Config validation: every problem refuses to start, naming the key; exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from logtail.config import ConfigError, config_for_paths, load_config

GOOD_FILES = '[[files]]\nname = "app"\npath = "app.log"\n'


def write(tmp_path, text):
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_shipped_config_is_valid():
    from helpers import ROOT

    config = load_config(ROOT / "config.toml")
    assert config.server.host == "127.0.0.1"
    assert {f.name for f in config.files} >= {"demo"}


def test_defaults_and_relative_paths(tmp_path):
    config = load_config(write(tmp_path, GOOD_FILES))
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.stream.backlog_lines == 100
    assert config.files[0].path == tmp_path / "app.log"
    assert config.files[0].title == "app"


@pytest.mark.parametrize(("text", "key"), [
    ("[server]\nprot = 1\n" + GOOD_FILES, "server.prot"),
    ("[stream]\nheartbeat_s = -1\n" + GOOD_FILES, "stream.heartbeat_s"),
    ("[stream]\nbacklog_lines = \"ten\"\n" + GOOD_FILES, "stream.backlog_lines"),
    ("[stream]\nmax_line_bytes = true\n" + GOOD_FILES, "stream.max_line_bytes"),
    ("[server]\nport = 70000\n" + GOOD_FILES, "server.port"),
    ("[server]\ntrusted_proxies = [\"not-an-ip\"]\n" + GOOD_FILES, "server.trusted_proxies[0]"),
    ("[limits]\nrequests_per_ip = \"lots\"\n" + GOOD_FILES, "limits.requests_per_ip"),
    ("[limits]\nstreams_per_ip = -2\n" + GOOD_FILES, "limits.streams_per_ip"),
    ("[stream]\nbacklog_lines = 50\nmax_backlog_lines = 10\n" + GOOD_FILES,
     "stream.backlog_lines"),
    ("", "files"),
    ('[[files]]\nname = "a/b"\npath = "x"\n', "files[0].name"),
    ('[[files]]\nname = ".."\npath = "x"\n', "files[0].name"),
    ('[[files]]\nname = "app"\n', "files[0].path"),
    ('[[files]]\nname = "app"\npath = "a"\ncolour = 1\n', "files[0].colour"),
    (GOOD_FILES + GOOD_FILES, "files[1].name"),
    ("[sever]\n" + GOOD_FILES, "sever"),
    ('[auth]\nusers = { bob = "plain" }\n' + GOOD_FILES, "auth.users.bob"),
    ('[auth]\ntokens = ["short"]\n' + GOOD_FILES, "auth.tokens[0]"),
])
def test_bad_config_names_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert str(e.value).startswith(key + ":")


def test_not_toml(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[server\n"))


def test_missing_file_is_fine_until_it_appears(tmp_path):
    config = load_config(write(tmp_path, GOOD_FILES))
    assert not config.files[0].path.exists()


def test_files_from_command_line_get_unique_names(tmp_path):
    config = config_for_paths([str(tmp_path / "a.log"), str(tmp_path / "x" / "a.log"),
                               "/var/log/sys log"])
    assert [f.name for f in config.files] == ["a.log", "a.log-2", "sys_log"]


@pytest.mark.parametrize("command", ["serve", "check-config"])
def test_cli_exits_2_naming_the_key(tmp_path, command):
    p = write(tmp_path, "[stream]\nheartbeat_s = 0\n" + GOOD_FILES)
    r = subprocess.run([sys.executable, "-m", "logtail", command, "-c", str(p)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "stream.heartbeat_s: must be > 0, got 0" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_config_ok(tmp_path):
    p = write(tmp_path, GOOD_FILES)
    r = subprocess.run([sys.executable, "-m", "logtail", "check-config", "-c", str(p)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_help_is_usable():
    r = subprocess.run([sys.executable, "-m", "logtail", "serve", "--help"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    for word in ("--config", "--host", "--port", "FILE"):
        assert word in r.stdout


def test_port_in_use_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "logtail", "serve", "--port", str(port),
                            str(tmp_path / "x.log")], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "already in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_every_config_key_is_documented():
    """README's configuration section names every key the loader accepts."""
    from dataclasses import fields

    from helpers import ROOT

    from logtail.config import SECTIONS

    readme = (ROOT / "README.md").read_text()
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            assert f"`{section}.{f.name}`" in readme, f"{section}.{f.name} not in README"
    for key in ("auth.users", "auth.tokens", "auth.realm", "files.name", "files.path",
                "files.title"):
        assert f"`{key}`" in readme, key

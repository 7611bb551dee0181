"""Configuration for containers: every key from the environment (`LOGTAIL_<SECTION>__<KEY>`,
`LOGTAIL_FILES`), with the same checks and an error naming the variable; and a JSON Schema
of config.toml (`logtail check-config --schema`) that the shipped config passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import ROOT

from logtail.config import (
    SECTIONS,
    ConfigError,
    config_for_paths,
    config_schema,
    load_config,
    parse_config,
)

FILES = '[[files]]\nname = "app"\npath = "app.log"\n'


def parse(environ: dict[str, str], text: str = FILES, base: Path = Path("/srv")) -> Any:
    return parse_config(tomllib.loads(text), base, environ=environ)


# -- overrides -------------------------------------------------------------------------------

def test_variables_override_the_file_parsed_to_each_keys_type():
    config = parse({
        "LOGTAIL_SERVER__PORT": "9000",
        "LOGTAIL_SERVER__SHOW_PATHS": "yes",
        "LOGTAIL_SERVER__TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8",
        "LOGTAIL_SERVER__CORS_ORIGINS": '["https://a.example", "https://b.example"]',
        "LOGTAIL_LIMITS__REQUESTS_PER_IP": "60/minute",
        "LOGTAIL_STREAM__HEARTBEAT_S": "2.5",
        "LOGTAIL_STREAM__BACKLOG_LINES": "7",
        "LOGTAIL_WATCH__BACKEND": "watchfiles",
        "LOGTAIL_AUTH__TOKENS": "a-long-token-for-scripts-1",
        "LOGTAIL_AUTH__USERS": '{"alice": "scrypt$16384$8$1$c2FsdA$aGFzaA"}',
    }, "[server]\nport = 8080\nshow_paths = false\n" + FILES)
    assert config.server.port == 9000
    assert config.server.show_paths is True
    assert config.server.trusted_proxies == ("127.0.0.1", "10.0.0.0/8")
    assert config.server.cors_origins == ("https://a.example", "https://b.example")
    assert config.limits.requests_per_ip == "60/minute"
    assert config.stream.heartbeat_s == 2.5
    assert config.stream.backlog_lines == 7
    assert config.watch.backend == "watchfiles"
    assert config.auth.tokens == ("a-long-token-for-scripts-1",)
    assert config.auth.users == (("alice", "scrypt$16384$8$1$c2FsdA$aGFzaA"),)


STRINGS = {"host": "0.0.0.0", "access_log": "stderr", "forwarded_header": "Forwarded",
           "secret_file": "/srv/key", "requests_per_ip": "5/second",
           "failed_auth_per_ip": "3 per hour", "backend": "watchfiles"}


def _other_value(key: str, default: Any) -> tuple[str, Any]:
    """A valid value for a key other than its default (where there is one), as a
    variable's text and as it parses."""
    if key in STRINGS:
        return STRINGS[key], STRINGS[key]
    if isinstance(default, bool):
        return ("false", False) if default else ("on", True)
    if isinstance(default, int):
        return str(default + 1), default + 1
    if isinstance(default, float):
        return f"{default + 0.5}", default + 0.5
    if isinstance(default, tuple):
        return json.dumps(list(default)), default
    return default, default


@pytest.mark.parametrize(("section", "key"), [
    (section, f.name) for section, cls in SECTIONS.items() for f in fields(cls)])
def test_every_key_can_be_overridden(section, key):
    default = getattr(getattr(parse({}), section), key)
    if (section, key) == ("stream", "backlog_lines"):
        default = 10  # must stay <= max_backlog_lines
    text, value = _other_value(key, default)
    config = parse({f"LOGTAIL_{section.upper()}__{key.upper()}": text})
    assert getattr(getattr(config, section), key) == value


def test_the_files_list_from_the_environment(tmp_path):
    config = parse({"LOGTAIL_FILES": json.dumps([
        {"name": "app", "path": "/var/log/app.log"},
        {"name": "nginx", "glob": "/var/log/nginx/*.log"}])}, "")
    assert [(f.name, f.glob) for f in config.files] == [("app", False), ("nginx", True)]
    assert config.files[1].follow_symlinks is False


def test_variables_that_are_not_config_keys_are_left_alone():
    config = parse({"LOGTAIL_SHARED_DIR": "/tmp/x", "LOGTAIL_CHROMIUM": "/usr/bin/c",
                    "HOME": "/root"})
    assert config.server.port == 8080


def test_overrides_apply_to_files_given_on_the_command_line():
    config = config_for_paths(["/var/log/syslog"], environ={"LOGTAIL_SERVER__PORT": "9001"})
    assert config.server.port == 9001
    assert [f.name for f in config.files] == ["syslog"]
    assert config_for_paths(["/var/log/syslog"]).server.port == 8080  # none without environ


def test_a_plain_parse_reads_no_environment(monkeypatch):
    monkeypatch.setenv("LOGTAIL_SERVER__PORT", "9002")
    assert parse_config(tomllib.loads(FILES), Path("/srv")).server.port == 8080


@pytest.mark.parametrize(("environ", "message"), [
    ({"LOGTAIL_SERVER__PORT": "abc"},
     "LOGTAIL_SERVER__PORT (server.port): must be an integer, got 'abc'"),
    ({"LOGTAIL_SERVER__PORT": "70000"},
     "LOGTAIL_SERVER__PORT (server.port): must be a port number 0-65535, got 70000"),
    ({"LOGTAIL_LIMITS__REQUESTS_PER_IP": "lots"},
     "LOGTAIL_LIMITS__REQUESTS_PER_IP (limits.requests_per_ip): must look like"),
    ({"LOGTAIL_SERVER__SHOW_PATHS": "maybe"},
     "LOGTAIL_SERVER__SHOW_PATHS (server.show_paths): must be true or false"),
    ({"LOGTAIL_STREAM__HEARTBEAT_S": "nan"},
     "LOGTAIL_STREAM__HEARTBEAT_S (stream.heartbeat_s): must be a number, got 'nan'"),
    ({"LOGTAIL_STREAM__HEARTBEAT_S": "-1"},
     "LOGTAIL_STREAM__HEARTBEAT_S (stream.heartbeat_s): must be > 0, got -1.0"),
    ({"LOGTAIL_SERVER__TRUSTED_PROXIES": "10.0.0.1,not-an-ip"},
     "LOGTAIL_SERVER__TRUSTED_PROXIES (server.trusted_proxies[1]): not an IP address or CIDR"),
    ({"LOGTAIL_SERVER__CORS_ORIGINS": "[1, 2]"},
     "LOGTAIL_SERVER__CORS_ORIGINS (server.cors_origins): must be a list of strings"),
    ({"LOGTAIL_SERVER__CORS_ORIGINS": "[oops"},
     "LOGTAIL_SERVER__CORS_ORIGINS (server.cors_origins): must be a JSON array of strings"),
    ({"LOGTAIL_AUTH__USERS": '{"bob": "plain"}'},
     "LOGTAIL_AUTH__USERS (auth.users.bob): must be a hash from `logtail hash-password`"),
    ({"LOGTAIL_SERVER__PROT": "1"}, "LOGTAIL_SERVER__PROT: no config key server.prot (known:"),
    ({"LOGTAIL_SEVER__PORT": "1"}, "LOGTAIL_SEVER__PORT: no config section 'sever'"),
    ({"LOGTAIL_FILES": "{}"}, "LOGTAIL_FILES (files): must be a JSON array of tables"),
    ({"LOGTAIL_FILES": "[]"}, "LOGTAIL_FILES (files): at least one [[files]] entry"),
    ({"LOGTAIL_FILES": '[{"name": "a"}]'}, "LOGTAIL_FILES (files[0].path): missing"),
])
def test_a_bad_variable_is_named_in_the_error(environ, message):
    with pytest.raises(ConfigError) as e:
        parse(environ)
    assert str(e.value).startswith(message), str(e.value)


def run(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "logtail", *args], capture_output=True,
                          text=True, timeout=30, env=env, cwd=cwd)


def test_the_cli_exits_2_naming_the_variable(tmp_path):
    (tmp_path / "config.toml").write_text(FILES)
    env = {"PATH": "/usr/bin:/bin", "LOGTAIL_SERVER__PORT": "http"}
    for command in ("check-config", "serve"):
        r = run(command, "-c", str(tmp_path / "config.toml"), env=env)
        assert r.returncode == 2, r.stderr
        assert "logtail: config error: LOGTAIL_SERVER__PORT (server.port): must be an " \
               "integer, got 'http'" in r.stderr
        assert "Traceback" not in r.stderr


def test_the_environment_alone_is_a_config(tmp_path):
    env = {"PATH": "/usr/bin:/bin",
           "LOGTAIL_FILES": '[{"name": "logs", "glob": "/var/log/*.log"}]'}
    r = run("check-config", env=env, cwd=tmp_path)  # no config.toml here
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "environment: ok (0 files, 1 globs)"
    r = run("check-config", env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert r.returncode == 2
    assert "LOGTAIL_FILES" in r.stderr


# -- the schema ------------------------------------------------------------------------------

def validator() -> jsonschema.protocols.Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_cli_prints_the_schema():
    r = run("check-config", "--schema")
    assert r.returncode == 0, r.stderr
    schema = json.loads(r.stdout)
    assert schema == config_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_shipped_config_validates():
    data = tomllib.loads((ROOT / "config.toml").read_text())
    assert list(validator().iter_errors(data)) == []
    load_config(ROOT / "config.toml")  # and logtail agrees


def test_the_schema_has_every_key_with_its_default():
    schema = config_schema()
    assert schema["additionalProperties"] is False
    for section, cls in SECTIONS.items():
        table = schema["properties"][section]
        assert table["additionalProperties"] is False
        assert set(table["properties"]) == {f.name for f in fields(cls)}
        for f in fields(cls):
            default = f.default
            assert table["properties"][f.name]["default"] == (
                list(default) if isinstance(default, tuple) else default), f.name


GOOD = [
    FILES,
    '[[files]]\nname = "nginx"\nglob = "/var/log/nginx/*.log"\nfollow_symlinks = true\n',
    '[server]\nport = 0\n[watch]\nbackend = "inotify"\n[auth]\ntokens = ["0123456789abcdef"]\n'
    + FILES,
]
BAD = [
    "[server]\nprot = 1\n" + FILES,
    '[server]\nport = "80"\n' + FILES,
    "[server]\nport = 70000\n" + FILES,
    "[stream]\nheartbeat_s = 0\n" + FILES,
    "[limits]\nstreams_per_ip = -1\n" + FILES,
    '[watch]\nbackend = "poll"\n' + FILES,
    '[auth]\ntokens = ["short"]\n' + FILES,
    '[auth]\nusers = { bob = "plain" }\n' + FILES,
    '[[files]]\nname = "a/b"\npath = "x"\n',
    '[[files]]\nname = "a"\n',
    '[[files]]\nname = "a"\npath = "x"\nglob = "*.log"\n',
    '[[files]]\nname = "a"\npath = "x"\ncolour = 1\n',
    "files = []\n",
]


@pytest.mark.parametrize("text", GOOD)
def test_good_configs_validate(text):
    data = tomllib.loads(text)
    assert list(validator().iter_errors(data)) == []
    parse_config(data, Path("/srv"))


@pytest.mark.parametrize("text", BAD)
def test_bad_configs_do_not(text):
    data = tomllib.loads(text)
    assert list(validator().iter_errors(data)) != []
    with pytest.raises(ConfigError):
        parse_config(data, Path("/srv"))

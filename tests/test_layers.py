"""The packages import one way only: config <- files <- streaming <- fleet <- http <- cli.

The file layer is closed: the rest uses its public surface (subscribe/attach/hold/
unsubscribe, the generation chain's properties), never its internals.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "logtail"
LAYERS = ["config", "files", "streaming", "fleet", "http", "cli"]  # each may import those before it
TOP = {"__init__": -1, "__main__": 5, "cli": 5, "demo": 5, "config": 0}
INTERNALS = {"subs", "_cache", "_final", "_next", "_reason", "_successor", "retired"}
CHAIN = {"final", "next", "reason"}  # read anywhere, set only by the file layer


def _modules() -> list[tuple[str, Path]]:
    return [(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts), p)
            for p in sorted(PACKAGE.rglob("*.py"))]


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__init__",):
        return -1  # `logtail` itself: the version
    if parts[1] in TOP:
        return TOP[parts[1]]
    return LAYERS.index(parts[1])


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("logtail"):
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("logtail")]
    return out


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_imports_go_down_the_layers_only(module, path):
    mine = _layer(module)
    for imported in _imports(path):
        assert _layer(imported) <= mine, f"{module} (layer {mine}) imports {imported}"


def test_the_layering_is_checked_at_all():
    """Guard for the guard: every package is known, and an upward import is caught."""
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages - {"viewer"} <= set(LAYERS)
    assert _layer("logtail.http.app") > _layer("logtail.fleet.ship") > \
        _layer("logtail.streaming.stream") > _layer("logtail.files.follow") > \
        _layer("logtail.config")


@pytest.mark.parametrize(("module", "path"),
                         [(m, p) for m, p in _modules() if not m.startswith("logtail.files")],
                         ids=[m for m, _ in _modules() if not m.startswith("logtail.files")])
def test_nothing_outside_the_file_layer_touches_its_internals(module, path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            assert node.attr not in INTERNALS, f"{module}:{node.lineno} uses .{node.attr}"
            if isinstance(node.ctx, ast.Store):
                assert node.attr not in CHAIN, f"{module}:{node.lineno} sets .{node.attr}"

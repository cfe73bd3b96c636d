"""The layout is the architecture: imports run one way, and no handle is typed ``Any``.

Each part of the code may import only the parts below it (the table), so a
newcomer can read the request path top to bottom and nothing calls back up.
mypy --strict (in .ci/run) fails an unannotated parameter; this test fails a
parameter annotated plain ``Any``, the other way to hide what a handle is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for pkg in ("gateway", "policies", "providers") for p in (ROOT / pkg).rglob("*.py"))

# part -> the parts it may import (besides itself). A part is a top-level package, a
# gateway sub-package, or a top-level gateway module.
ALLOWED: dict[str, set[str]] = {
    "providers": set(),
    "policies": {"providers"},
    "gateway.errors": {"providers"},
    "gateway.config": {"gateway.errors", "policies", "providers"},
    "gateway.store": set(),
    "gateway.accounting": {"gateway", "providers"},
    "gateway.snapshot": {"gateway.accounting", "gateway.config", "policies", "providers"},
    "gateway.ledger": {"gateway.accounting", "gateway.config", "gateway.errors", "gateway.store"},
    "gateway.upstream": {"gateway.snapshot", "gateway.store", "gateway.ledger", "policies", "providers"},
    "gateway.fronts": {"gateway.errors", "providers"},
    "gateway.services": {"gateway.accounting", "gateway.ledger", "gateway.upstream", "gateway.snapshot",
                         "gateway.store", "policies"},
    "gateway.proxy": {"gateway.accounting", "gateway.config", "gateway.errors", "gateway.fronts", "gateway.ledger",
                      "gateway.services", "gateway.snapshot", "gateway.upstream", "policies", "providers"},
    "gateway.keys": {"gateway.config", "gateway.errors", "gateway.store"},
    "gateway.edge": {"gateway.accounting", "gateway.config", "gateway.errors", "gateway.fronts", "gateway.keys", "gateway.ledger",
                     "gateway.proxy", "gateway.services", "gateway.snapshot", "policies", "providers"},
    "gateway.cli": {"gateway.accounting", "gateway.config", "gateway.store", "gateway"},
    "gateway": {"gateway.cli"},  # __init__ (the version) and __main__
}


def part_of(module: str) -> str:
    pieces = module.split(".")
    if pieces[0] != "gateway":
        return pieces[0]
    if len(pieces) == 1 or pieces[1] in ("__init__", "__main__"):
        return "gateway"
    return "gateway." + pieces[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"gateway.{a.name}" for a in node.names if node.module == "gateway"
                    and ((ROOT / "gateway" / a.name).is_dir() or (ROOT / "gateway" / f"{a.name}.py").exists())}
    return {m for m in out if m.split(".")[0] in ("gateway", "policies", "providers")}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path: Path) -> None:
    here = part_of(module_name(path))
    assert here in ALLOWED, f"{here} is a new part: add it to ALLOWED with the parts it may use"
    for name in imports(path):
        there = part_of(name)
        if name == "gateway" or there == here:
            continue
        assert there in ALLOWED[here], f"{module_name(path)} imports {name}: {here} may not depend on {there}"


# A parameter may be plain ``Any`` only when it holds a JSON value (or a raw store reply)
# of unknown shape, and then its name says so. A handle — a client, a service, the
# gateway — always has a type.
JSON_VALUE_NAMES = {"value", "obj", "body", "node", "content", "payload", "arguments", "err", "raw", "result",
                    "part", "image_url", "tools", "tool_choice", "choice", "calls", "ts", "picousd", "context"}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_handle_is_typed_plain_any(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            for arg in args:
                ann = arg.annotation
                if isinstance(ann, ast.Name) and ann.id == "Any":
                    assert arg.arg in JSON_VALUE_NAMES, \
                        f"{path.name}:{node.lineno} {node.name}({arg.arg}: Any): name the type it is"


def test_no_module_is_past_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"split these: {long}"

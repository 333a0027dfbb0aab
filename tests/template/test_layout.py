"""The folders are the architecture, and the imports keep to it: the runtime (what the layer ships) never
imports the operator's CLI, adapters never import the service, identity knows nothing of billing or the web
edge, and every package says in its __init__ what lives there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "layers" / "core" / "portal_gateway"
CLI = ROOT / "cli" / "portal_admin"


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; name the module whole"
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def test_the_runtime_and_the_functions_never_import_the_cli():
    for path in [*modules(RUNTIME), *(ROOT / "functions").glob("*/app.py")]:
        assert not any(name.startswith("portal_admin") for name in imports_of(path)), path


def test_the_layer_ships_no_cli_code():
    names = {path.stem for path in modules(RUNTIME)}
    assert not names & {"admin", "cli", "support", "smoke", "keys"}


@pytest.mark.parametrize("adapter", [*sorted((RUNTIME / "aws").glob("*.py")),
                                     RUNTIME / "billing" / "stripe_adapter.py",
                                     RUNTIME / "billing" / "stripe_client.py"], ids=lambda p: p.name)
def test_adapters_never_import_the_service(adapter):
    assert "portal_gateway.service" not in imports_of(adapter)


@pytest.mark.parametrize("module", sorted((RUNTIME / "identity").glob("*.py")), ids=lambda p: p.name)
def test_identity_knows_nothing_of_billing_the_web_edge_or_the_service(module):
    assert not {name for name in imports_of(module)
                if name.startswith(("portal_gateway.billing", "portal_gateway.web", "portal_gateway.service"))}


@pytest.mark.parametrize("package", [p for p in [RUNTIME, *RUNTIME.iterdir(), CLI] if (p / "__init__.py").exists()],
                         ids=lambda p: p.name)
def test_every_package_says_what_lives_there(package):
    init = package / "__init__.py"
    assert ast.get_docstring(ast.parse(init.read_text())), init


def test_the_wheel_holds_both_packages_and_the_command_points_at_the_cli():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["stripe-portal-admin"] == "portal_admin.cli:main"
    found = project["tool"]["setuptools"]["packages"]["find"]
    assert found["where"] == ["layers/core", "cli"] and found["include"] == ["portal_gateway*", "portal_admin*"]

"""Run after a plain `sam build` (make build): the artifacts are laid out the way the Lambda runtime imports
them, with compiled bytecode that the runtime will use as it is (no recompiling on a read-only /opt)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"


def test_layer_has_package_and_dependencies_under_single_python_folder():
    layer = BUILD / "CoreLayer" / "python"
    assert (layer / "portal_gateway" / "__init__.py").is_file()
    for dependency in ("aws_lambda_powertools", "cryptography", "jmespath"):
        assert (layer / dependency).is_dir(), dependency
    for unused in ("stripe", "jwt", "requests", "urllib3", "bin"):  # what the function no longer imports is not shipped
        assert not (layer / unused).exists(), unused
    assert not (layer / "python").exists()


def test_layer_native_code_is_built_for_arm64():
    so_files = list((BUILD / "CoreLayer" / "python").rglob("*.so"))
    assert so_files
    assert all("x86_64" not in path.name for path in so_files)
    assert any("aarch64" in path.name for path in so_files)


def test_function_artifact_holds_only_the_thin_handler():
    function = BUILD / "PortalFunction"
    assert (function / "app.py").is_file()
    assert not (function / "portal_gateway").exists()
    assert not (function / "stripe").exists()


def test_rotation_function_artifact():
    function = BUILD / "RotationFunction"
    assert (function / "app.py").is_file()
    assert not (function / "portal_gateway").exists()


def test_webhook_function_ships_the_official_stripe_library_beside_the_layer():
    """The webhook function alone ships stripe-python (its pin in functions/webhooks/requirements.txt), built for
    the function's Python; the runtime package still comes from the layer only."""
    function = BUILD / "WebhookFunction"
    assert (function / "app.py").is_file()
    assert (function / "stripe" / "__init__.py").is_file() and (function / "requests").is_dir()
    assert not (function / "portal_gateway").exists() and not (function / "python").exists()
    pinned = next(line.split("==")[1] for line in (ROOT / "functions/webhooks/requirements.txt").read_text()
                  .splitlines() if line.startswith("stripe=="))
    assert list(function.glob(f"stripe-{pinned}.dist-info")), "the pinned stripe version"
    dev = (ROOT / "requirements-dev.txt").read_text()
    for line in (ROOT / "functions/webhooks/requirements.txt").read_text().splitlines():
        if "==" in line and line.split("==")[0] in dev:
            assert line in dev.splitlines(), f"the tests run another version than ships: {line}"


def _unchecked_hash(pyc: Path) -> bool:
    # PEP 552 header: magic (4 bytes), flags (4 bytes little-endian): bit 0 = hash-based, bit 1 = check_source.
    flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
    return flags & 0b01 == 1 and flags & 0b10 == 0


def test_layer_ships_compiled_bytecode_for_python_313():
    import importlib.util

    package = BUILD / "CoreLayer" / "python" / "portal_gateway"
    cached = list(package.rglob("__pycache__/*.cpython-313.pyc"))
    sources = list(package.rglob("*.py"))
    assert len(cached) == len(sources) >= 10
    assert all(_unchecked_hash(pyc) for pyc in cached)  # valid whatever mtimes the zip gives the sources
    assert all(pyc.read_bytes()[:4] == importlib.util.MAGIC_NUMBER for pyc in cached)  # CPython 3.13's
    assert list((BUILD / "CoreLayer" / "python" / "jmespath" / "__pycache__").glob("*.cpython-313.pyc"))


def test_functions_ship_compiled_bytecode():
    for function in ("PortalFunction", "RotationFunction", "PreTrafficHookFunction", "WebhookFunction"):
        [pyc] = (BUILD / function / "__pycache__").glob("app.cpython-313.pyc")
        assert _unchecked_hash(pyc)


def test_plain_sam_build_uses_the_build_makefiles():
    """No extra step after `sam build`: the template asks for the Makefiles that compile the bytecode."""
    from devstack.cfn import load_template

    template = load_template(ROOT / "template.yaml")
    for name in ("CoreLayer", "PortalFunction", "RotationFunction", "PreTrafficHookFunction", "WebhookFunction"):
        assert template["Resources"][name]["Metadata"]["BuildMethod"] == "makefile", name
    assert "compileall" not in (ROOT / "Makefile").read_text().split("\nbuild:")[1].split("\n\n")[0]


def test_pipx_style_install_gives_a_working_admin_command(tmp_path):
    """`pipx install .` in short: a fresh virtualenv, the project with its declared dependencies, the command."""
    import subprocess
    import sys
    import venv

    import shutil

    # A copy of what `pipx install .` reads, so the build leaves nothing behind in the checkout.
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for package in ("layers/core/portal_gateway", "cli/portal_admin"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv.create(tmp_path / "env", with_pip=True)
    pip, command = tmp_path / "env/bin/pip", tmp_path / "env/bin/stripe-portal-admin"
    subprocess.run([pip, "install", "-q", "--disable-pip-version-check", str(source)], check=True,
                   capture_output=True, timeout=600)
    shown = subprocess.run([command, "check", "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "--stack" in shown.stdout, shown.stderr
    imported = subprocess.run([tmp_path / "env/bin/python", "-c", "import portal_gateway.checks.stripe_key_check, "
                               "portal_gateway.identity.tokens, portal_admin.cli, portal_admin.support, boto3"],
                              capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    assert sys.version_info[:2] == (3, 13)


def test_the_reconciliation_ships_the_webhook_functions_artifact():
    """The scheduled ReconcileFunction runs app.reconcile_handler of the webhook function's very artifact."""
    reconcile, webhook = BUILD / "ReconcileFunction", BUILD / "WebhookFunction"
    assert (reconcile / "app.py").read_bytes() == (webhook / "app.py").read_bytes()
    assert (reconcile / "stripe" / "__init__.py").is_file() and not (reconcile / "portal_gateway").exists()

"""Run after `sam build` (make build): the artifacts are laid out the way the Lambda runtime imports them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"


def test_layer_has_package_and_dependencies_under_single_python_folder():
    layer = BUILD / "CoreLayer" / "python"
    assert (layer / "portal_gateway" / "__init__.py").is_file()
    for dependency in ("stripe", "jwt", "aws_lambda_powertools", "cryptography"):
        assert (layer / dependency).is_dir(), dependency
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


def test_layer_ships_compiled_bytecode_for_python_313():
    cached = list((BUILD / "CoreLayer" / "python" / "portal_gateway" / "__pycache__").glob("*.cpython-313.pyc"))
    assert len(cached) >= 10

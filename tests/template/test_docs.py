"""The docs a newcomer reads: a short README whose two commands are what CI runs, links that lead somewhere,
and nothing named in them (a make target, an admin command, an error code, a route) that does not exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_short_and_its_first_lines_are_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert commands == ["make run", "make test"]
    assert readme.index("```sh") < readme.index("\n## ")  # before anything else
    ci = (ROOT / ".ci" / "run").read_text()
    assert [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))] == ["make test"]


@pytest.mark.parametrize("document", DOCS, ids=lambda path: path.name)
def test_every_relative_link_leads_to_a_file(document):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", document.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        assert (document.parent / target).exists(), f"{document.name}: {target}"


def test_every_make_target_the_docs_name_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    named = {t for doc in DOCS for t in re.findall(r"`make ([a-z][a-z-]*)`", doc.read_text())}
    assert named and named <= targets, named - targets


def test_every_admin_command_the_docs_name_exists():
    from portal_admin.cli import COMMANDS

    named = {c for doc in DOCS for c in re.findall(r"stripe-portal-admin ([a-z][a-z-]+)", doc.read_text())}
    named |= {c for doc in DOCS for c in re.findall(r"^\| [^|]+ \| `([a-z-]+) --stack", doc.read_text(), re.M)}
    assert named and named <= set(COMMANDS), named - set(COMMANDS)


def test_every_error_code_the_docs_name_exists():
    from portal_gateway.web.answers import STATUS_BY_CODE

    for doc in DOCS:
        for status, code in re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", doc.read_text(), re.M):
            assert STATUS_BY_CODE.get(code) == int(status), f"{doc.name}: {status} {code}"


def test_every_route_the_docs_name_is_a_route_of_the_template():
    from devstack.cfn import load_template

    events = load_template(ROOT / "template.yaml")["Resources"]["PortalFunction"]["Properties"]["Events"]
    paths = {event["Properties"]["Path"] for event in events.values()}
    for doc in DOCS:
        for path in re.findall(r"`(?:GET |POST |OPTIONS )?(/(?:portal|health)[a-z/]*)`", doc.read_text()):
            assert path in paths, f"{doc.name}: {path}"


def test_the_cost_table_in_the_deploy_guide_is_what_the_script_prints_now():
    """Every figure in the docs comes from a run anyone can repeat: a new alarm, function or metric changes the
    estimate, and the guide must show the new one (`.venv/bin/python scripts/cost.py`)."""
    import subprocess
    import sys

    printed = subprocess.run([sys.executable, "scripts/cost.py"], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, check=True).stdout.strip()
    assert printed in (ROOT / "docs/deploy.md").read_text(), "run scripts/cost.py and paste its output"

"""The deploy guide (docs/deploy.md, linked from the README's Deploy section), read as the script it is: the
guided deploy's prompts and answers, the teardown's answers, the question count it promises, and its shell
commands. The rehearsal reads these, so the guide and what is rehearsed cannot drift apart."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMPT_HEADER = "| Prompt | Type | What it means |"


@dataclass(frozen=True)
class Answer:
    prompt: str  # the prompt's text as SAM prints it, without its default
    typed: str  # "" for Enter
    times: int  # how often SAM asks it


DEPLOY_GUIDE = ROOT / "docs" / "deploy.md"


def deploy_section() -> str:
    return DEPLOY_GUIDE.read_text()


def prompt_tables(section: str) -> list[list[Answer]]:
    tables, current = [], None
    for line in section.splitlines():
        line = line.strip()
        if line == PROMPT_HEADER:
            current = []
            tables.append(current)
            continue
        if current is None or line.startswith("|---"):
            continue
        if not line.startswith("|"):
            current = None
            continue
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        prompt = re.match(r"^`([^`]+)`(?: \((\d+) times\))?$", cells[0])
        if prompt is None:
            raise ValueError(f"a prompt row the rehearsal cannot read: {line}")
        typed = "" if cells[1] == "Enter" else re.fullmatch(r"`([^`]*)`", cells[1]).group(1)
        current.append(Answer(prompt.group(1), typed, int(prompt.group(2) or 1)))
    return tables


def guided_answers() -> list[Answer]:
    return prompt_tables(deploy_section())[0]


def redeploy_answers() -> list[Answer]:
    return prompt_tables(deploy_section())[1]


def promised_question_count() -> int:
    return int(re.search(r"The guided deploy asks these (\d+) questions", deploy_section()).group(1))


def shell_commands() -> list[str]:
    """Every command line of the section's ```sh blocks, in order."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", deploy_section(), re.S):
        commands += [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]
    return commands

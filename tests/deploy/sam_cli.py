"""Drive the real SAM CLI (.venv-sam) in a pseudo-terminal, as a person at a keyboard would, with no AWS
credentials: it answers each prompt from a script and records what was asked, until SAM stops."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.readme_script import Answer

ROOT = Path(__file__).resolve().parents[2]
SAM = ROOT / ".venv-sam" / "bin" / "sam"
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
OFFLINE_LAUNCHER = Path(__file__).with_name("sam_offline.py")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PROMPT = re.compile(r"(?:^|\n)[ \t]*([^\n\[]+?)(?: \[([^\]\n]*)\])?: $")


@dataclass
class Run:
    asked: list[tuple[str, str, str]] = field(default_factory=list)  # (prompt, default, typed)
    unexpected: list[str] = field(default_factory=list)  # prompts the script has no answer for
    output: str = ""
    exit_code: int | None = None


def scratch_project(directory: Path) -> Path:
    """What `sam deploy` reads of the project: the template, samconfig.toml and the code it would package."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("template.yaml", "samconfig.toml", ".python-version", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, directory / name)
    for folder in ("functions", "layers"):
        shutil.copytree(ROOT / folder, directory / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return directory


def offline_environment(home: Path) -> dict[str, str]:
    """No AWS credentials, no config, no instance metadata: SAM can only stop where it must reach AWS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(home), SAM_CLI_TELEMETRY="0", AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=str(home / "no-aws-config"), AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-creds"),
               TERM="dumb")
    return env


def run_sam(args: list[str], *, cwd: Path, home: Path, script: list[Answer] | None = None,
            timeout: float = 180, managed_bucket_stand_in: bool = False) -> Run:
    """Run `sam <args>`; answer prompts from `script` (each used as many times as it says). With
    `managed_bucket_stand_in`, the one AWS call a guided deploy makes before saving its answers is stood in
    (sam_offline.py), so SAM saves samconfig.toml as after a real first deploy."""
    remaining = {answer.prompt: [answer.typed] * answer.times for answer in script or []}
    run = Run()
    pid, fd = pty.fork()
    if pid == 0:  # the child: SAM itself
        os.chdir(cwd)
        if managed_bucket_stand_in:
            os.execve(str(SAM_PYTHON), [str(SAM_PYTHON), str(OFFLINE_LAUNCHER), *args], offline_environment(home))
        os.execve(str(SAM), ["sam", *args], offline_environment(home))
    pending = ""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)  # a prompt is answered after 50 ms of quiet
            if ready:
                try:
                    data = os.read(fd, 65536).decode("utf-8", "replace")
                except OSError:  # the child closed the terminal: it has ended
                    break
                if not data:
                    break
                run.output += data
                pending += ANSI.sub("", data).replace("\r", "")
                continue
            found = PROMPT.search(pending)
            if found is None:
                continue
            prompt, default = found.group(1).strip(), found.group(2) or ""
            answers = remaining.get(prompt)
            if answers:
                typed = answers.pop(0)
            else:
                run.unexpected.append(prompt)
                typed = ""
            run.asked.append((prompt, default, typed))
            os.write(fd, (typed + "\r").encode())
            pending = ""
        else:
            os.kill(pid, 9)
            raise TimeoutError(f"sam {' '.join(args)} did not end within {timeout} s")
    finally:
        _, status = os.waitpid(pid, 0)
        run.exit_code = os.waitstatus_to_exitcode(status)
        os.close(fd)
    run.output = ANSI.sub("", run.output).replace("\r", "")
    return run


def saved_parameters(samconfig: Path, environment: str) -> tuple[dict[str, str], dict]:
    """(parameter_overrides as a dict, the environment's deploy parameters) from a samconfig.toml."""
    import tomllib

    config = tomllib.loads(samconfig.read_text())
    deploy = {**config.get(environment, {}).get("global", {}).get("parameters", {}),
              **config.get(environment, {}).get("deploy", {}).get("parameters", {})}
    overrides = deploy.get("parameter_overrides", "")
    if isinstance(overrides, list):
        overrides = " ".join(overrides)
    pairs = dict(re.findall(r'([A-Za-z0-9]+)="((?:[^"\\]|\\.)*)"', overrides))
    return pairs, deploy

"""docker/: the image runs the README's commands as a user without privileges, and the compose
file names the image and a PostgreSQL that the server is pointed at. No Docker engine is
needed: the files are read, not run."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from .conftest import REPO

DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "docker" / "compose.yaml"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) of each line of a Dockerfile, continuations joined."""
    text = re.sub(r"\\\n\s*", " ", path.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            found.append((instruction.upper(), arguments.strip()))
    return found


def command(arguments: str) -> str:
    """A RUN or CMD as a shell line: the exec form's JSON joined, RUN's --mount options off."""
    if arguments.startswith("["):
        return shlex.join(json.loads(arguments))
    return re.sub(r"^(--\w+=\S+\s+)+", "", arguments)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_the_dockerfiles_commands_are_the_readmes() -> None:
    readme = flat((REPO / "README.md").read_text(encoding="utf-8"))
    commands = [command(arguments) for instruction, arguments in instructions(DOCKERFILE)
                if instruction in ("RUN", "CMD")]

    assert len(commands) >= 4
    for line in commands:
        assert flat(line) in readme, f"the README does not show: {line}"


def test_the_image_serves_as_a_user_without_privileges_and_checks_healthz() -> None:
    steps = instructions(DOCKERFILE)
    last_stage = steps[max(index for index, (name, _) in enumerate(steps) if name == "FROM"):]
    names = [name for name, _ in last_stage]
    user = next(arguments for name, arguments in last_stage if name == "USER")
    healthcheck = next(arguments for name, arguments in last_stage if name == "HEALTHCHECK")
    cmd = next(arguments for name, arguments in last_stage if name == "CMD")

    assert user not in ("root", "0")
    assert names.index("USER") < names.index("CMD")
    assert "/healthz" in healthcheck
    assert json.loads(cmd)[:2] == ["mailflow", "serve"]
    assert "0.0.0.0" in json.loads(cmd), "listens beyond the container's loopback"


def test_the_compose_file_is_yaml_naming_the_image_and_postgresql() -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    postgres = next(name for name, service in services.items()
                    if str(service.get("image", "")).startswith("postgres:"))
    server = services["mailflow"]

    assert server["image"].startswith("mailflow")
    assert (COMPOSE.parent / server["build"]["context"] / server["build"]["dockerfile"]) \
        .resolve() == DOCKERFILE
    assert f"@{postgres}:5432/" in server["environment"]["DATABASE_URL"]
    assert server["depends_on"][postgres]["condition"] == "service_healthy"
    assert "healthcheck" in services[postgres]

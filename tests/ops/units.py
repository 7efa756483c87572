"""Reading systemd unit files, and finding what an installed unit references that is not there."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import typer

from sender_cli.app import app
from sender_cli.commands.daemon import DAEMONS
from sender_cli.commands.install_cmd import SERVICES

# Daemons whose units ship before the daemons do: their subcommand may not exist yet.
PENDING_DAEMONS = set(SERVICES) - set(DAEMONS)
STANDARD_TARGETS = {"multi-user.target", "default.target", "network.target", "network-online.target"}


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections → (key, value) pairs in order (keys may repeat, as systemd allows)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def directive(unit: dict, section: str, key: str) -> str | None:
    values = [v for k, v in unit.get(section, []) if k == key]
    return values[-1] if values else None


def staged(root: Path, target: str) -> Path:
    return root / Path(target).relative_to("/")


def missing_references(unit_path: Path, *, root: Path, man_dir: Path) -> list[str]:
    """What the unit names that does not exist: its command, the sender subcommand, the config
    and writable paths (under the staging ROOT), its man pages, the units it is tied to."""
    unit = parse_unit(unit_path)
    problems = []
    for key in ("ExecStart", "ExecStartPre", "ExecStop", "ExecReload"):
        for _, value in [kv for kv in unit.get("Service", []) if kv[0] == key]:
            argv = shlex.split(value.lstrip("-@:+!"))
            exe = argv[0]
            if not (os.path.isabs(exe) and os.path.isfile(exe) and os.access(exe, os.X_OK)):
                problems.append(f"{key}: {exe} is not an executable file")
                continue
            if Path(exe).name == "sender":
                problems += _sender_argv_problems(argv[1:], root)
    for _, value in [kv for kv in unit.get("Service", []) if kv[0] == "ReadWritePaths"]:
        for p in shlex.split(value):
            p = p.lstrip("-+")
            if not staged(root, p).is_dir():
                problems.append(f"ReadWritePaths: {p} does not exist")
    for section in unit.values():
        for k, v in section:
            if k == "Documentation":
                for ref in v.split():
                    if ref.startswith("man:"):
                        name, _, sec = ref[4:].rstrip(")").partition("(")
                        if not (man_dir / f"man{sec}" / f"{name}.{sec}").is_file():
                            problems.append(f"Documentation: {ref} is not installed")
            if k in ("PartOf", "WantedBy", "Wants", "Requires", "After", "Before"):
                for dep in v.split():
                    if dep not in STANDARD_TARGETS and not (unit_path.parent / dep).is_file():
                        problems.append(f"{k}: {dep} is not installed next to it")
    return problems


def _sender_argv_problems(args: list[str], root: Path) -> list[str]:
    problems = []
    if "--config" in args:
        i = args.index("--config")
        config, args = args[i + 1], args[:i] + args[i + 2 :]
        if not staged(root, config).is_file():
            problems.append(f"ExecStart: config {config} does not exist")
    group = typer.main.get_command(app)
    command = group
    for word in args:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            if command is group.commands["daemon"] and word in PENDING_DAEMONS:
                return problems  # its daemon comes later; the unit is written ahead of it
            problems.append(f"ExecStart: `sender {' '.join(args)}`: no command {word!r}")
            return problems
        command = sub
    if hasattr(command, "commands"):
        problems.append(f"ExecStart: `sender {' '.join(args)}` is a group, not a command")
    return problems

"""The runbooks stay true: every `sender …` command and option they show exists, and every
config key they name is in the schema."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from daemons.core import config as config_mod
from sender_cli.app import app

RUNBOOKS = sorted((Path(__file__).resolve().parents[2] / "docs" / "runbooks").glob("*.md"))
SECTIONS = {k.split(".", 1)[0] for k in config_mod.SCHEMA}
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", "2>&1"}


def code_snippets(text: str) -> list[str]:
    """Fenced blocks (line by line) and inline code spans."""
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    lines = [line for block in fenced for line in block.splitlines()]
    rest = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    return lines + re.findall(r"`([^`\n]+)`", rest)


def sender_invocations(text: str) -> list[list[str]]:
    out = []
    for snippet in code_snippets(text):
        try:
            tokens = shlex.split(snippet, comments=True)
        except ValueError:
            continue
        for i, tok in enumerate(tokens):
            if Path(tok).name != "sender" or (i and tokens[i - 1] in ("-u", "-g", "-o")):
                continue
            if i + 1 < len(tokens) and (tokens[i + 1] == "sender" or "/" in tokens[i + 1]):
                continue  # `sudo -u sender sender …`, `ln -s …/sender /usr/local/bin/sender`
            words = []
            for w in tokens[i + 1 :]:
                if w in SHELL_OPERATORS:
                    break
                words.append(w)
            out.append(words)
    return out


def check(words: list[str]) -> str | None:
    command = typer.main.get_command(app)
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
            if name not in options:
                return f"no option {name} on `{command.name}`"
            skip = name in ("--config", "-c") and "=" not in word
        elif hasattr(command, "commands"):
            if word not in command.commands:
                return f"no command {word!r} under `{command.name}`"
            command = command.commands[word]
    return None


def test_there_are_runbooks():
    assert {p.name for p in RUNBOOKS} >= {"obs.md", "single-node.md"}


@pytest.mark.parametrize("runbook", RUNBOOKS, ids=lambda p: p.name)
def test_commands_and_options_exist(runbook):
    invocations = sender_invocations(runbook.read_text())
    assert len(invocations) > 5
    problems = [f"`sender {' '.join(words)}`: {why}" for words in invocations if (why := check(words))]
    assert problems == [], f"{runbook.name}: {problems}"


def test_the_checker_catches_a_wrong_command():
    assert check(["stream", "craete", "x"]) and check(["doctor", "--jsn"]) and check(["config", "set", "a", "b"]) is None


@pytest.mark.parametrize("runbook", RUNBOOKS, ids=lambda p: p.name)
def test_config_keys_exist(runbook):
    text = runbook.read_text()
    keys = {k for k in re.findall(r"\b([a-z_]+(?:\.[a-z_]+)+)\b", text) if k.split(".", 1)[0] in SECTIONS}
    keys = {k for k in keys if not re.search(r"\.(md|com|toml|pem|key|conf|db|service|target|sock|json|js)$", k)}
    unknown = sorted(k for k in keys if k not in config_mod.SCHEMA)
    assert unknown == [], f"{runbook.name} names config keys that do not exist: {unknown}"
    assert keys, runbook.name

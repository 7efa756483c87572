"""The man pages: the committed ones are what the generator makes from the code today, they
cover every command, option and config key, and groff/man render them without a warning."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer
import typer._click as click

from daemons.core import config as config_mod
from sender_cli import manpages
from sender_cli.app import app

MAN_DIR = Path(__file__).resolve().parents[2] / "man"
REGENERATE = ".venv/bin/python -m sender_cli.manpages man/"


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return manpages.pages()


def test_committed_pages_are_current(generated):
    committed = {p.name for p in MAN_DIR.glob("*.[0-9]")}
    assert committed == set(generated), f"man/ has {sorted(committed)}, the generator makes {sorted(generated)}: run `{REGENERATE}`"
    for name, text in generated.items():
        assert (MAN_DIR / name).read_text() == text, f"man/{name} is stale (the CLI or the config schema changed): run `{REGENERATE}` and commit man/"


def _walk(command, path, ctx):
    yield path, command, ctx
    for name in getattr(command, "commands", {}) and command.list_commands(ctx):
        sub = command.commands[name]
        if not getattr(sub, "hidden", False):
            yield from _walk(sub, (*path, name), click.Context(sub, info_name=name, parent=ctx))


def test_sender_1_has_every_command_and_option(generated):
    page = generated["sender.1"]
    root = typer.main.get_command(app)
    seen = 0
    for path, command, ctx in _walk(root, ("sender",), click.Context(root, info_name="sender")):
        if len(path) > 1:
            assert f'.SS "{manpages.esc(" ".join(path))}"' in page, " ".join(path)
        for p in command.params:
            for opt in [*p.opts, *p.secondary_opts]:
                if opt.startswith("-"):
                    assert f"\\fB{manpages.esc(opt)}\\fR" in page, f"{' '.join(path)} {opt}"
                    seen += 1
    assert seen > 50
    for name in ("install", "uninstall", "doctor", "init", "up"):
        assert f'.SS "sender {name}"' in page


def test_sender_toml_5_has_every_key_with_its_default(generated):
    page = generated["sender.toml.5"]
    for key, spec in config_mod.SCHEMA.items():
        block = page.split(f".TP\n\\fB{manpages.esc(key)}\\fR\n", 1)
        assert len(block) == 2, key
        body = block[1].split(".TP", 1)[0]
        assert manpages.esc(spec.kind.name) in body and "Default: " in body, key
    assert '.SS "[rtmp.limits]"' in page
    example = config_mod.from_text(manpages.EXAMPLE_TOML)  # the EXAMPLE section is a valid file
    assert example["renditions.ladder"][1]["name"] == "480p"


def test_sender_daemons_8_names_units_signals_files_and_ports(generated):
    page = generated["sender-daemons.8"]
    for unit in ("sender\\-ingest.service", "sender\\-http.service", "sender\\-edge\\-fill.service", "sender\\-snapshot.service", "sender.target"):
        assert unit in page
    for section in ("SIGNALS", "FILES", "PORTS", "UNITS", "STARTUP CHECKS"):
        assert f".SH {section}" in page
    assert "WatchdogSec=30" in page and "\\fBSIGTERM\\fR" in page


GROFF = shutil.which("groff")
MAN = shutil.which("man")


@pytest.mark.skipif(GROFF is None, reason="groff not installed (bash .ci/bootstrap --test installs groff-base)")
@pytest.mark.parametrize("name", ["sender.1", "sender.toml.5", "sender-daemons.8"])
def test_groff_renders_without_warnings(name):
    r = subprocess.run([GROFF, "-man", "-Tutf8", "-ww", "-z", str(MAN_DIR / name)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


@pytest.mark.skipif(MAN is None, reason="man not installed (bash .ci/bootstrap --test installs man-db)")
@pytest.mark.parametrize("name", ["sender.1", "sender.toml.5", "sender-daemons.8"])
def test_man_l_renders_cleanly(name):
    env = {**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "", "LC_ALL": "C.UTF-8", "MANROFFSEQ": ""}
    r = subprocess.run([MAN, "-l", str(MAN_DIR / name)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = re.sub(r".\x08", "", r.stdout)  # overstrike bold/underline, if the pager path kept it
    assert text.splitlines()[0].split()[0] == name.rsplit(".", 1)[0].upper() + f"({name.rsplit('.', 1)[1]})"
    assert "\\f" not in text and "\\-" not in text and "\\[" not in text  # no escape left unrendered
    assert max(len(line) for line in text.splitlines()) <= 80

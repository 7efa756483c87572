"""One Sender install: its config file, directories, store and per-install secret.

`init()` lays an install down (what `sender init` does); `Install.load()` opens an existing one
for the CLI and the daemons. With a directory (`sender init --dir D`) everything lives under D:
D/sender.toml, D/state (store, secret, local stats) and D/spool — the single-box and test layout.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from daemons.core import config as config_mod
from daemons.core.config import Config
from daemons.core.errors import ConfigError
from daemons.core.store import Store

SECRET_FILE = "secret"


@dataclass
class InitResult:
    config_path: Path
    created: list[Path]


def init(config_path: Path | None = None, *, directory: Path | None = None, force: bool = False) -> InitResult:
    """Write a complete config, create the state/spool/store directories and the install secret."""
    if directory is not None:
        directory = Path(directory).resolve()
        config_path = directory / "sender.toml"
        state_dir = directory / "state"
        spool = directory / "spool"
    else:
        config_path = Path(config_path or config_mod.DEFAULT_CONFIG_PATH)
        state_dir = Path(config_mod.SCHEMA["node.state_dir"].default)
        spool = Path(config_mod.SCHEMA["spool.root"].default)

    if config_path.exists() and not force:
        raise ConfigError(f"{config_path} already exists: this is an install already (use --force to overwrite it)")

    values = config_mod.defaults()
    values["node.id"] = _node_id()
    values["node.state_dir"] = str(state_dir)
    values["spool.root"] = str(spool)
    values["store.path"] = str(state_dir / "sender.db")
    cfg = Config(values, config_path)

    created: list[Path] = []
    for d in (config_path.parent, state_dir, spool):
        if not d.is_dir():
            d.mkdir(parents=True, mode=0o750)
            created.append(d)
    config_mod.write(cfg, config_path)
    created.append(config_path)

    secret_path = state_dir / SECRET_FILE
    if force or not secret_path.exists():
        _write_secret(secret_path)
        created.append(secret_path)

    with Store.open(values["store.path"], busy_timeout_ms=values["store.busy_timeout_ms"]):
        pass
    created.append(Path(values["store.path"]))
    return InitResult(config_path, created)


def _node_id() -> str:
    host = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname().lower())
    return (host.strip("-") or "node")[:40]


def _write_secret(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    os.replace(tmp, path)


@dataclass
class Install:
    config: Config

    @classmethod
    def load(cls, config_path: str | os.PathLike | None = None) -> "Install":
        return cls(config_mod.load(config_path))

    @property
    def state_dir(self) -> Path:
        return Path(self.config["node.state_dir"])

    @property
    def spool_root(self) -> Path:
        return Path(self.config["spool.root"])

    def secret(self) -> bytes:
        """The per-install key for stream-key and token verifiers."""
        path = self.state_dir / SECRET_FILE
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(f"install secret {path} is missing (run `sender init`)") from None
        except OSError as e:
            raise ConfigError(f"cannot read install secret {path}: {e}") from None
        if len(text) < 32:
            raise ConfigError(f"install secret {path} is too short")
        return text.encode()

    def distribution_key(self) -> bytes | None:
        """The key an origin and its edges share (distribution.key_file), or None when unset."""
        path = self.config["distribution.key_file"]
        if not path:
            return None
        try:
            text = Path(path).read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the distribution key {path}: {e.strerror or e}") from None
        if len(text) < 32:
            raise ConfigError(f"the distribution key in {path} is too short (32 characters at least)")
        return text.encode()

    def playback_secret(self) -> bytes:
        """What signs playback tokens: the distribution key when this node is part of one (so a
        token works on every node a player may move to), else the install secret."""
        return self.distribution_key() or self.secret()

    def open_store(self, *, migrate: bool = True) -> Store:
        return Store.open(
            self.config["store.path"],
            busy_timeout_ms=self.config["store.busy_timeout_ms"],
            migrate=migrate,
        )

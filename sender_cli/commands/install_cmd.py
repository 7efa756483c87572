"""`sender install` and `sender uninstall`: systemd units, the `sender` user, directories.

`install` fills the templates in `units/` with this install's real paths (the `sender`
executable of this virtualenv, the config, the state and spool directories, the capabilities the
listen ports need) and writes them with a sysusers.d and a tmpfiles.d file; on a live system it
also creates the user and the directories with their owners and modes, runs `sender init` when
there is no config, and calls systemctl. `--root DIR` stages the same files under DIR for a
package and touches nothing else (no useradd, no systemctl, no secret or store: those belong to
the machine, and `sender install` there completes them). `--user` writes user units
(~/.config/systemd/user) for an install in the XDG directories, without a dedicated user.

`--front nginx` adds the front tier: `sender-front.service` (in sender.target) runs nginx with a
config Sender generates from sender.toml into `/etc/sender/front/` (written here too, so `nginx -t`
can check it before anything starts), `front.kind` is set and sender-http moves to loopback behind
it (docs/runbooks/front.md).

`uninstall` removes what `install` wrote; config, state, spool and the user stay unless --purge.
"""

from __future__ import annotations

import os
import grp
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import typer

from daemons.core import config as config_mod
from daemons.core import install as install_mod
from daemons.core.config import Config
from daemons.core.errors import SenderError
from daemons.runtime import checks
from sender_cli import context, render
from sender_cli.commands.daemon import DAEMONS
from sender_cli.context import JSON_OPTION

# The unit templates and man pages this Sender ships: package data (sender_cli/share/ links to the
# checkout's top-level units/ and man/; a wheel carries copies of them).
SHARE = resources.files("sender_cli") / "share"
TEMPLATES = SHARE / "units"
MAN_PAGES = SHARE / "man"
PACKAGED = Path("/usr/lib")  # where a package puts units, sysusers.d and tmpfiles.d
USER = "sender"
# Every unit Sender ships, and the config keys each daemon listens on (for CAP_NET_BIND_SERVICE).
SERVICES = {
    "ingest": ("rtmp.listen", "rtmp.rtmps_listen"),
    "http": ("http.listen",),
    "edge-fill": (),
    "snapshot": (),
}
TARGET = "sender.target"
# The front tier's unit: written and enabled only where front.kind is set (`--front`).
FRONT_SERVICE = "front"
FRONT_LISTEN_KEYS = ("front.listen", "front.http_listen")
FRONT_KINDS = ("nginx",)  # docs/runbooks/front.md says why not Varnish
# Directories whose contents systemd manages for the units (StateDirectory= etc.).
MANAGED = (Path("/var/lib/sender"), Path("/var/cache/sender"), Path("/run/sender"), Path("/etc/sender"))
# Directives that need a system manager (namespaces, another user, capabilities): not in user units.
SYSTEM_ONLY = (
    "User", "Group", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "ReadWritePaths",
    "CapabilityBoundingSet", "AmbientCapabilities", "ProtectKernelTunables", "ProtectKernelModules",
    "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictNamespaces",
    "StateDirectory", "StateDirectoryMode", "CacheDirectory", "CacheDirectoryMode",
    "ConfigurationDirectory", "ConfigurationDirectoryMode",
)
HOME_PREFIXES = (Path("/home"), Path("/root"), Path("/run/user"))


def register(app: typer.Typer) -> None:
    app.command("install")(install)
    app.command("uninstall")(uninstall)


# --- where things go ---------------------------------------------------------------------------


@dataclass
class Layout:
    """Target paths (as on the machine that runs Sender) and where they are written (under root)."""

    root: Path
    user_mode: bool
    config: Path
    unit_dir: Path
    man_dir: Path
    sysusers: Path | None
    tmpfiles: Path | None
    state_dir: Path
    spool: Path

    @property
    def staged(self) -> bool:
        return self.root != Path("/")

    def at(self, target: Path) -> Path:
        return self.root / Path(target).relative_to("/")


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value and os.path.isabs(value) else Path.home() / default


def layout(root: Path | None, user_mode: bool, config_path: str | None) -> Layout:
    root = Path(root).resolve() if root else Path("/")
    if user_mode:
        config = Path(config_path) if config_path else _xdg("XDG_CONFIG_HOME", ".config") / "sender" / "sender.toml"
        return Layout(
            root, True, config.absolute(),
            unit_dir=_xdg("XDG_CONFIG_HOME", ".config") / "systemd" / "user",
            man_dir=_xdg("XDG_DATA_HOME", ".local/share") / "man",
            sysusers=None, tmpfiles=None,
            state_dir=_xdg("XDG_STATE_HOME", ".local/state") / "sender",
            spool=_xdg("XDG_CACHE_HOME", ".cache") / "sender" / "spool",
        )
    config = Path(config_path) if config_path else config_mod.DEFAULT_CONFIG_PATH
    base = Path("/usr/lib") if root != Path("/") else Path("/etc")  # a package's files, or the admin's
    return Layout(
        root, False, config.absolute(),
        unit_dir=base / "systemd" / "system",
        man_dir=Path("/usr/share/man") if root != Path("/") else Path("/usr/local/share/man"),
        sysusers=base / "sysusers.d" / "sender.conf",
        tmpfiles=base / "tmpfiles.d" / "sender.conf",
        state_dir=Path(config_mod.SCHEMA["node.state_dir"].default),
        spool=Path(config_mod.SCHEMA["spool.root"].default),
    )


@dataclass
class Report:
    actions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def did(self, text: str) -> None:
        self.actions.append(text)

    def note(self, text: str) -> None:
        self.notes.append(text)


# --- unit rendering ----------------------------------------------------------------------------


def _unit_quote(value: str) -> str:
    value = value.replace("%", "%%")
    return f'"{value}"' if any(c.isspace() for c in value) else value


def sender_executable() -> Path:
    """This virtualenv's `sender` (not resolved: the venv's bin is what selects the venv)."""
    return Path(sys.executable).parent / "sender"


def unit_values(cfg: Config, lay: Layout, service: str | None) -> dict[str, str]:
    paths = [Path(cfg["node.state_dir"]), Path(cfg["spool.root"]), Path(cfg["store.path"]).parent]
    rw: list[str] = []
    for p in paths:
        s = f"-{_unit_quote(str(p))}"
        if s not in rw:
            rw.append(s)
    if service == FRONT_SERVICE:  # nginx.conf and the Lua module are rewritten at each start and reload
        rw.append(f"-{_unit_quote(str(lay.config.parent / 'front'))}")
    low_port = False
    for key in (FRONT_LISTEN_KEYS if service == FRONT_SERVICE else SERVICES.get(service, ())):
        if cfg[key] and 0 < config_mod.parse_listen(cfg[key])[1] < 1024:
            low_port = True
    in_home = any(_under(p, h) for p in [sender_executable(), lay.config, *paths] for h in HOME_PREFIXES)
    return {
        "SENDER": _unit_quote(str(sender_executable())),
        "CONFIG": _unit_quote(str(lay.config)),
        "USER": USER,
        "READ_WRITE_PATHS": " ".join(rw),
        "CAPABILITIES": "CAP_NET_BIND_SERVICE" if low_port else "",
        "PROTECT_HOME": "read-only" if in_home else "yes",
        "WANTED_BY": "default.target" if lay.user_mode else "multi-user.target",
    }


def _under(p: Path, parent: Path) -> bool:
    try:
        Path(p).relative_to(parent)
        return True
    except ValueError:
        return False


_FIELD = re.compile(r"@[A-Z_]+@")
# The @FIELD@s of the templates (unit_values fills them).
FIELDS = ("SENDER", "CONFIG", "USER", "READ_WRITE_PATHS", "CAPABILITIES", "PROTECT_HOME", "WANTED_BY")


def render_unit(template: str, values: dict[str, str], *, user_mode: bool) -> str:
    out = []
    for line in template.splitlines():
        if line.startswith("#@"):
            continue  # template-only comment
        key = line.split("=", 1)[0] if "=" in line and not line.startswith("#") else None
        if user_mode and key in SYSTEM_ONLY:
            continue
        if user_mode and line.startswith("# Hardening:"):
            line = "# Hardening that works without a system manager (seccomp, no new privileges)."
        for name, value in values.items():
            line = line.replace(f"@{name}@", value)
        if _FIELD.search(line):
            raise SenderError(f"unit template line {line!r} has an unknown @FIELD@")
        out.append(line)
    return "\n".join(out) + "\n"


def unit_names(front: bool = False) -> list[str]:
    return [f"sender-{s}.service" for s in SERVICES] + ([f"sender-{FRONT_SERVICE}.service"] if front else []) + [TARGET]


def _templates(front: bool = False) -> dict[str, str]:
    out = {}
    for name in unit_names(front):
        path = TEMPLATES / name
        try:
            out[name] = path.read_text()
        except OSError as e:
            raise SenderError(f"unit template {path} is missing ({e.strerror}): this Sender install is incomplete") from None
    return out


# --- install -----------------------------------------------------------------------------------


def install(
    ctx: typer.Context,
    root: Path = typer.Option(None, "--root", metavar="DIR", help="Stage every file under DIR (for a package); touch nothing else."),
    user: bool = typer.Option(False, "--user", help="User units in ~/.config/systemd/user and an install in the XDG directories, run as you."),
    enable: bool = typer.Option(False, "--enable", help="Enable sender.target and the daemons' units (and start them, on a running systemd)."),
    front: str = typer.Option(None, "--front", metavar="KIND", help="Also install the front tier: nginx (HTTPS, HTTP/2, "
                              "every public viewer request answered by nginx; sender-http moves to loopback behind it)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Install the systemd units, the `sender` user and the directories; run `sender init` if there is no config."""
    cli = context.get(ctx)
    lay = layout(root, user, cli.config_path)
    if not lay.staged and not lay.user_mode and os.geteuid() != 0:
        raise SenderError("installing system units needs root: run it with sudo, or use --user (units for your user) or --root DIR (stage files for a package)")
    if front is not None and front not in FRONT_KINDS:
        raise SenderError(f"--front {front!r}: the front tiers Sender runs are {', '.join(FRONT_KINDS)} (docs/runbooks/front.md)")
    rep = Report()

    account = _ensure_user(lay, rep)
    cfg = _ensure_config(lay, rep)
    if front is not None:
        cfg = _configure_front(lay, cfg, front, rep)
    with_front = bool(cfg["front.kind"])
    templates = _templates(with_front)
    for template in templates.values():  # a broken template fails before anything is written
        render_unit(template, {k: "x" for k in FIELDS}, user_mode=False)
    _ensure_directories(lay, cfg, account, rep)
    if not lay.staged:
        _ensure_secret_and_store(cfg, account, rep)

    if lay.sysusers is not None:
        _write_unless_packaged(lay, lay.sysusers, PACKAGED / "sysusers.d" / "sender.conf", sysusers_conf(cfg), rep)
        _write_unless_packaged(lay, lay.tmpfiles, PACKAGED / "tmpfiles.d" / "sender.conf", tmpfiles_conf(cfg, lay), rep)
    for name, template in templates.items():
        service = name.removeprefix("sender-").removesuffix(".service")
        values = unit_values(cfg, lay, service if service in SERVICES or service == FRONT_SERVICE else None)
        text = render_unit(template, values, user_mode=lay.user_mode)
        _write_unless_packaged(lay, lay.unit_dir / name, PACKAGED / "systemd" / "system" / name, text, rep)
    if with_front:
        _write_nginx_config(lay, cfg, account, rep)
    _install_man_pages(lay, rep)
    _systemd_after_install(lay, enable, rep, front=with_front)

    data = {
        "root": str(lay.root),
        "mode": "user" if lay.user_mode else "system",
        "staged": lay.staged,
        "config": str(lay.config),
        "units": [str(lay.unit_dir / n) for n in templates],
        "enabled": enable,
        "actions": rep.actions,
        "notes": rep.notes,
    }

    def human() -> None:
        where = f" (staged under {lay.root})" if lay.staged else ""
        render.console.print(f"Sender {data['mode']} install{where}: config {lay.config}", markup=False)
        for a in rep.actions:
            render.console.print(f"  {a}", markup=False)
        for n in rep.notes:
            render.console.print(f"note: {n}", markup=False)
        render.console.print("Check it with: sender doctor", markup=False)

    render.emit(data, as_json, human)


def _configure_front(lay: Layout, cfg: Config, kind: str, rep: Report) -> Config:
    """front.kind set, sender-http on loopback (the front is the only way in), and the public base
    URL through the front when front.server_name names it."""
    from daemons.core.front_config import binaries, install_hint
    from daemons.core.front_config import public_base_url

    new = cfg.with_value("front.kind", kind)
    host, port = cfg.listen("http.listen")
    if host not in ("127.0.0.1", "::1", "localhost"):
        new = new.with_value("http.listen", f"127.0.0.1:{port}")
    if (base := public_base_url(new)) and new["node.public_base_url"] != base:
        new = new.with_value("node.public_base_url", base)
    changed = [k for k in new.values if new[k] != cfg[k]]
    if changed:
        config_mod.write(new, lay.at(lay.config))
        rep.did(f"config {lay.config}: " + ", ".join(f"{k} = {new[k]!r}" for k in changed))
    missing = [n for n, p in binaries(new).items() if p is None]
    if missing and not lay.staged:
        raise SenderError(f"--front {kind} needs {', '.join(missing)}, which is not installed: {install_hint(missing)}")
    if missing:
        rep.note(f"the front needs {', '.join(missing)} on the target machine ({install_hint(missing)})")
    if new["front.listen"] and not (new["front.tls_cert"] and new["front.tls_key"]):
        rep.note("HTTPS needs a certificate: `sender config set front.tls_cert PATH` and `front.tls_key PATH` "
                 "(docs/runbooks/front.md: certbot), or `sender config set front.listen ''` for plain HTTP only")
    return new


def _write_nginx_config(lay: Layout, cfg: Config, account: Account | None, rep: Report) -> None:
    """nginx.conf and its Lua module as sender-front will write them at its start, checked with
    `nginx -t` (in a scratch copy: the staged paths are not the target's) when nginx is installed."""
    from daemons.core.front_config import NGINX_LUA
    from daemons.core.front_nginx import LUA_MODULE, NginxFiles, render_owned_nginx
    from daemons.runtime.front_files import CHECK_KEY, check_config, nginx_binary

    files = NginxFiles(lay.config.parent / "front", Path(cfg["node.state_dir"]) / "front" / "nginx")
    target_cfg = Config(cfg.values, lay.config, cfg.explicit)  # comments name the target's path
    directory = lay.at(files.config_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o750)
    # sender-front rewrites it with this machine's key at its start.
    _write(directory / files.conf.name, render_owned_nginx(target_cfg, key=CHECK_KEY, files=files), rep, mode=0o640)
    _write(directory / files.lua.name, LUA_MODULE.read_text(), rep, mode=0o640)
    if account is not None:  # sender-front (as the sender user) rewrites them at each reload
        os.chown(directory, account.uid, account.gid)
        for p in directory.iterdir():
            os.chown(p, account.uid, account.gid)
    nginx = nginx_binary()
    if nginx is None or not all(os.path.exists(p) for p in NGINX_LUA.values()):
        return
    problem = check_config(target_cfg, nginx)
    if problem:
        raise SenderError(f"nginx -t rejects the generated config {directory / files.conf.name}: {problem}")
    rep.did(f"checked {directory / files.conf.name} with nginx -t")


def man_page_names() -> list[str]:
    return sorted(p.name for p in MAN_PAGES.iterdir() if re.fullmatch(r".+\.[0-9]", p.name))


def _install_man_pages(lay: Layout, rep: Report) -> None:
    """sender(1), sender.toml(5), sender-daemons(8): the units' Documentation= points at them."""
    for name in man_page_names():
        section = name.rsplit(".", 1)[1]
        target = Path(f"man{section}") / name
        _write_unless_packaged(lay, lay.man_dir / target, Path("/usr/share/man") / target, (MAN_PAGES / name).read_text(), rep)


@dataclass
class Account:
    uid: int
    gid: int


def _ensure_user(lay: Layout, rep: Report) -> Account | None:
    """The `sender` system user (live system install only); None when files stay ours."""
    if lay.staged or lay.user_mode:
        return None
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        home = str(lay.state_dir)
        if shutil.which("useradd"):
            _run(["useradd", "--system", "--user-group", "--home-dir", home, "--no-create-home",
                  "--shell", "/usr/sbin/nologin", "--comment", "Sender live streaming", USER], rep)
        else:
            raise SenderError("cannot create the sender user: useradd is not installed")
        pw = pwd.getpwnam(USER)
    else:
        rep.note(f"user {USER} exists (uid {pw.pw_uid})")
    return Account(pw.pw_uid, pw.pw_gid)


def _ensure_config(lay: Layout, rep: Report) -> Config:
    path = lay.at(lay.config)
    if path.exists():
        rep.note(f"config {lay.config} exists: kept as it is")
        cfg = config_mod.load(path)
        return cfg
    if not lay.staged and not lay.user_mode:
        result = install_mod.init(lay.config)  # `sender init`: config, state, spool, secret, store
        rep.did(f"ran sender init: wrote {result.config_path}")
        return config_mod.load(lay.config)
    values = config_mod.defaults()
    if not lay.staged:
        values["node.id"] = install_mod._node_id()
    values["node.state_dir"] = str(lay.state_dir)
    values["spool.root"] = str(lay.spool)
    values["store.path"] = str(lay.state_dir / "sender.db")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    config_mod.write(Config(values, lay.config), path)
    rep.did(f"wrote config {path} (every key with its default; see sender.toml(5))")
    if lay.staged:
        rep.note("node.id is the default 'node-1': set it per machine (`sender config set node.id NAME`)")
    return config_mod.load(path)


def _ensure_directories(lay: Layout, cfg: Config, account: Account | None, rep: Report) -> None:
    """State, spool and the store's directory: 0750, owned by the daemons' user; the config
    readable by that user's group and no one else."""
    dirs = []
    for p in (Path(cfg["node.state_dir"]), Path(cfg["spool.root"]), Path(cfg["store.path"]).parent):
        if p not in dirs:
            dirs.append(p)
    for target in dirs:
        path = lay.at(target)
        if not path.is_dir():
            path.mkdir(parents=True, mode=0o750)
            rep.did(f"created {path} (0750)")
        if account is not None:
            st = path.stat()
            if (st.st_uid, st.st_gid) != (account.uid, account.gid):
                os.chown(path, account.uid, account.gid)
                rep.did(f"chown {USER}:{USER} {path}")
        os.chmod(path, 0o750)
    if account is not None:
        conf = lay.config
        os.chown(conf, 0, account.gid)
        os.chmod(conf, 0o640)
        st = conf.parent.stat()
        os.chown(conf.parent, st.st_uid, account.gid)
        os.chmod(conf.parent, (st.st_mode & 0o7777) | 0o050)
        rep.did(f"config {conf} root:{USER} 0640, its directory group {USER}")


def _ensure_secret_and_store(cfg: Config, account: Account | None, rep: Report) -> None:
    state = Path(cfg["node.state_dir"])
    secret = state / install_mod.SECRET_FILE
    if not secret.exists():
        install_mod._write_secret(secret)
        rep.did(f"created the install secret {secret} (0600)")
    with install_mod.Install(cfg).open_store() as store:
        applied = store.schema_version()
    rep.did(f"store {cfg['store.path']} migrated ({len(applied)} migrations)")
    if account is not None:
        db = Path(cfg["store.path"])
        for p in (secret, db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            if p.exists():
                os.chown(p, account.uid, account.gid)
        for p in state.rglob("*"):
            os.chown(p, account.uid, account.gid)


def sysusers_conf(cfg: Config) -> str:
    return (
        "# The user Sender's daemons run as (written by `sender install`).\n"
        f'u {USER} - "Sender live streaming" {cfg["node.state_dir"]} /usr/sbin/nologin\n'
    )


def tmpfiles_conf(cfg: Config, lay: Layout) -> str:
    lines = ["# Sender's directories (written by `sender install`): state and spool belong to the daemons' user."]
    seen = set()
    for p in (cfg["node.state_dir"], cfg["spool.root"], str(Path(cfg["store.path"]).parent)):
        if p not in seen:
            seen.add(p)
            lines.append(f"d {p} 0750 {USER} {USER} -")
    lines.append(f"z {lay.config} 0640 root {USER} -")
    return "\n".join(lines) + "\n"


def _write_unless_packaged(lay: Layout, target: Path, packaged: Path, text: str, rep: Report) -> None:
    """Write TARGET, unless a package already installed the same file at PACKAGED (a package
    built with `--root` whose postinst runs `sender install`: no copies in /etc shadowing it)."""
    if target != packaged and not lay.user_mode:
        shipped = lay.at(packaged)
        if shipped.is_file() and shipped.read_text() == text:
            rep.did(f"unchanged {shipped} (installed by a package)")
            return
    _write(lay.at(target), text, rep, mode=0o644)


def _write(path: Path, text: str, rep: Report, *, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.read_text() == text:
        rep.did(f"unchanged {path}")
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    rep.did(f"wrote {path}")


def _run(cmd: list[str], rep: Report, *, check: bool = True) -> bool:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        if check:
            raise SenderError(f"`{' '.join(cmd)}` failed: {(r.stderr or r.stdout).strip()}")
        rep.note(f"`{' '.join(cmd)}` failed: {(r.stderr or r.stdout).strip()}")
        return False
    rep.did(f"ran {' '.join(cmd)}")
    return True


def enabled_services(front: bool = False) -> list[str]:
    """The units to enable: those of daemons that exist in this version (and the front's, with one)."""
    return [f"sender-{s}.service" for s in SERVICES if s in DAEMONS] + ([f"sender-{FRONT_SERVICE}.service"] if front else [])


def _systemctl(lay: Layout) -> list[str]:
    return ["systemctl", "--user"] if lay.user_mode else ["systemctl"]


def _manager_running(lay: Layout) -> bool:
    if lay.staged or shutil.which("systemctl") is None:
        return False
    if lay.user_mode:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        return bool(runtime) and Path(runtime, "systemd").is_dir()
    return checks.systemd_running()


def _systemd_after_install(lay: Layout, enable: bool, rep: Report, *, front: bool = False) -> None:
    units = [*enabled_services(front), TARGET]
    pending = [f"sender-{s}.service" for s in SERVICES if s not in DAEMONS]
    if pending:
        rep.note(f"written, not enabled: {', '.join(pending)} (their daemons are not in this version)")
    if _manager_running(lay):
        _run([*_systemctl(lay), "daemon-reload"], rep)
        if enable:
            _run([*_systemctl(lay), "enable", "--now", *units], rep)
        else:
            rep.note(f"start with: {' '.join(_systemctl(lay))} enable --now {' '.join(units)}")
        return
    if enable:
        _link_wants(lay, rep, front=front)
    if not lay.staged:
        rep.note("systemd is not running here: units written, nothing started")


def _link_wants(lay: Layout, rep: Report, *, front: bool = False) -> None:
    """What `systemctl enable` does, for a staged root or a machine without a running systemd."""
    # Enablement links live in /etc, whatever directory the units are in.
    link_base = lay.at(lay.unit_dir if lay.user_mode else Path("/etc/systemd/system"))
    wanted_by = "default.target" if lay.user_mode else "multi-user.target"
    links = [(wanted_by, TARGET)] + [(TARGET, s) for s in enabled_services(front)]
    for target, unit in links:
        link = link_base / f"{target}.wants" / unit
        link.parent.mkdir(parents=True, exist_ok=True)
        dest = lay.unit_dir / unit  # the path on the target machine (or the package's copy)
        if not lay.at(dest).exists() and lay.at(PACKAGED / "systemd" / "system" / unit).exists():
            dest = PACKAGED / "systemd" / "system" / unit
        if link.is_symlink() and os.readlink(link) == str(dest):
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(dest)
        rep.did(f"enabled {unit} ({link} → {dest})")


# --- uninstall ---------------------------------------------------------------------------------


def uninstall(
    ctx: typer.Context,
    root: Path = typer.Option(None, "--root", metavar="DIR", help="Remove what `sender install --root DIR` staged under DIR."),
    user: bool = typer.Option(False, "--user", help="Remove the user units that `sender install --user` wrote."),
    purge: bool = typer.Option(False, "--purge", help="Also delete the config, the state (store, secret), the spool and the sender user."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Stop and remove the systemd units and files `sender install` wrote; keep the data unless --purge."""
    cli = context.get(ctx)
    lay = layout(root, user, cli.config_path)
    if not lay.staged and not lay.user_mode and os.geteuid() != 0:
        raise SenderError("removing system units needs root: run it with sudo (or use --user / --root DIR)")
    rep = Report()
    names = unit_names(front=True)
    if _manager_running(lay):
        _run([*_systemctl(lay), "disable", "--now", *names], rep, check=False)

    # What install wrote in this mode: the admin's /etc on a live system, usr/lib under a staging
    # root. A package's own files in /usr/lib are the package manager's to remove.
    for name in names:
        _remove(lay.at(lay.unit_dir / name), rep)
    link_base = lay.at(lay.unit_dir if lay.user_mode else Path("/etc/systemd/system"))
    for wants in (link_base / f"{TARGET}.wants", link_base / "multi-user.target.wants", link_base / "default.target.wants"):
        for name in names:
            _remove(wants / name, rep)
        _rmdir_if_empty(wants, rep)
    for name in man_page_names():
        _remove(lay.at(lay.man_dir / f"man{name.rsplit('.', 1)[1]}" / name), rep)
    if lay.sysusers is not None:
        _remove(lay.at(lay.sysusers), rep)
        _remove(lay.at(lay.tmpfiles), rep)
    if _manager_running(lay):
        _run([*_systemctl(lay), "daemon-reload"], rep, check=False)

    kept = []
    cfg_file = lay.at(lay.config)
    cfg = None
    try:
        cfg = config_mod.load(cfg_file) if cfg_file.exists() else None
    except SenderError as e:
        rep.note(f"config {cfg_file} unreadable ({e.message}): its state and spool are left alone")
    data_paths = []
    if cfg is not None:
        for key in ("spool.root", "node.state_dir"):
            data_paths.append(lay.at(Path(cfg[key])))
    if purge:
        for p in data_paths:
            _purge_dir(p, rep)
        front_dir = cfg_file.parent / "front"  # sender-front's generated config
        if front_dir.is_dir():
            shutil.rmtree(front_dir)
            rep.did(f"deleted {front_dir}")
        _remove(cfg_file, rep)
        _rmdir_if_empty(cfg_file.parent, rep)
        if not lay.staged and not lay.user_mode:
            try:
                pwd.getpwnam(USER)
            except KeyError:
                pass
            else:
                _run(["userdel", USER], rep, check=False)
                try:
                    grp.getgrnam(USER)
                    _run(["groupdel", USER], rep, check=False)
                except KeyError:
                    pass
    else:
        kept = [str(p) for p in [cfg_file, *data_paths] if p.exists()]
        if not lay.staged and not lay.user_mode:
            kept.append(f"user {USER}")

    data = {"root": str(lay.root), "mode": "user" if lay.user_mode else "system", "purged": purge, "actions": rep.actions, "kept": kept, "notes": rep.notes}

    def human() -> None:
        render.console.print("Sender uninstalled" + (f" from {lay.root}" if lay.staged else ""), markup=False)
        for a in rep.actions:
            render.console.print(f"  {a}", markup=False)
        if kept:
            render.console.print(f"kept (remove with --purge): {', '.join(kept)}", markup=False)
        for n in rep.notes:
            render.console.print(f"note: {n}", markup=False)

    render.emit(data, as_json, human)


def _remove(path: Path, rep: Report) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()
        rep.did(f"removed {path}")


def _rmdir_if_empty(path: Path, rep: Report) -> None:
    try:
        path.rmdir()
        rep.did(f"removed {path}")
    except OSError:
        pass


_NEVER_PURGE = {Path(p) for p in ("/", "/etc", "/var", "/var/lib", "/var/cache", "/usr", "/home", "/root", "/tmp", "/srv", "/opt", "/run")}


def _purge_dir(path: Path, rep: Report) -> None:
    if not path.exists():
        return
    if path.resolve() in _NEVER_PURGE or path.resolve() == Path.home() or len(path.resolve().parts) < 3:
        rep.note(f"not deleting {path}: too close to the root of the filesystem; remove what is Sender's by hand")
        return
    shutil.rmtree(path)
    rep.did(f"deleted {path}")
    if path.parent.name == USER:  # e.g. /var/cache/sender, left empty by its spool
        _rmdir_if_empty(path.parent, rep)

"""`sender install --root` / `--user` and `sender uninstall`: the files written, their contents
and modes, the units as systemd-analyze sees them, and nothing touched outside the root."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daemons.core import config as config_mod
from sender_cli.commands.daemon import DAEMONS
from sender_cli.commands.install_cmd import SERVICES, render_unit, unit_names
from tests.conftest import SenderProcess
from tests.ops.units import PENDING_DAEMONS, directive, missing_references, parse_unit, staged

SENDER = Path(sys.executable).parent / "sender"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (bash .ci/bootstrap --test installs Debian's systemd package)")
UNIT_DIR = "usr/lib/systemd/system"
# Paths a real (non-staged) install would write: a staged one must leave them as they were.
REAL_PATHS = [Path(p) for p in ("/etc/sender", "/etc/systemd/system/sender.target", "/usr/lib/systemd/system/sender.target",
                                "/etc/sysusers.d/sender.conf", "/usr/lib/sysusers.d/sender.conf", "/var/lib/sender", "/var/cache/sender")]


def run(sender_noinstall, *args, **env):
    r = sender_noinstall(*args, **env)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


@pytest.fixture(scope="module")
def staged_root(tmp_path_factory):
    """`sender install --root R --enable` (once for the module: tests only read it) and its
    JSON report; the real paths are as they were before."""
    before = {p: p.exists() for p in REAL_PATHS}
    tmp = tmp_path_factory.mktemp("staged")
    root = tmp / "root"
    report = run(SenderProcess(None, tmp), "install", "--root", str(root), "--enable", "--json").json()
    assert {p: p.exists() for p in REAL_PATHS} == before, "a staged install touched the real system"
    return root, report


def test_install_root_stages_units_user_dirs_and_config(staged_root):
    root, report = staged_root
    assert report["staged"] and report["mode"] == "system" and report["config"] == "/etc/sender/sender.toml"
    units = root / UNIT_DIR
    assert sorted(p.name for p in units.iterdir()) == sorted(unit_names())
    for p in units.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        assert "@" not in p.read_text().replace("@system-service", ""), f"{p.name}: an unfilled @FIELD@"

    # The user and directories, for systemd-sysusers and systemd-tmpfiles on the target.
    assert (root / "usr/lib/sysusers.d/sender.conf").read_text().splitlines()[1] == 'u sender - "Sender live streaming" /var/lib/sender /usr/sbin/nologin'
    tmpfiles = (root / "usr/lib/tmpfiles.d/sender.conf").read_text().splitlines()
    assert "d /var/lib/sender 0750 sender sender -" in tmpfiles
    assert "d /var/cache/sender/spool 0750 sender sender -" in tmpfiles
    assert "z /etc/sender/sender.toml 0640 root sender -" in tmpfiles

    # A complete config with the target's paths (not the staging root's), and the directories.
    cfg = config_mod.load(root / "etc/sender/sender.toml")
    assert cfg["node.state_dir"] == "/var/lib/sender" and cfg["spool.root"] == "/var/cache/sender/spool"
    assert cfg["store.path"] == "/var/lib/sender/sender.db" and cfg["node.id"] == "node-1"
    for d in ("var/lib/sender", "var/cache/sender/spool"):
        assert stat.S_IMODE((root / d).stat().st_mode) == 0o750
    # No secret and no store in a package: `sender install` on the machine makes them.
    assert not (root / "var/lib/sender/secret").exists() and not (root / "var/lib/sender/sender.db").exists()

    # --enable: sender.target wanted by multi-user.target, the existing daemons by sender.target.
    wants = root / "etc/systemd/system"
    assert os.readlink(wants / "multi-user.target.wants/sender.target") == "/usr/lib/systemd/system/sender.target"
    enabled = sorted(p.name for p in (wants / "sender.target.wants").iterdir())
    assert enabled == sorted(f"sender-{d}.service" for d in DAEMONS)

    # Man pages, for the units' Documentation=.
    assert sorted(p.name for p in (root / "usr/share/man").rglob("*.[0-9]")) == ["sender-daemons.8", "sender.1", "sender.toml.5"]


def test_units_have_notify_watchdog_restart_and_hardening(staged_root):
    root, _ = staged_root
    for service in SERVICES:
        u = parse_unit(root / UNIT_DIR / f"sender-{service}.service")
        s = lambda key: directive(u, "Service", key)  # noqa: E731
        assert s("ExecStart") == f"{SENDER} --config /etc/sender/sender.toml daemon {service}"
        assert (s("Type"), s("NotifyAccess"), s("WatchdogSec"), s("Restart")) == ("notify", "main", "30", "on-failure")
        assert directive(u, "Unit", "StartLimitBurst") and directive(u, "Unit", "PartOf") == "sender.target"
        assert (s("User"), s("Group")) == ("sender", "sender")
        assert (s("KillSignal"), s("KillMode")) == ("SIGTERM", "mixed")
        for key in ("StateDirectory", "CacheDirectory", "RuntimeDirectory", "ConfigurationDirectory"):
            assert s(key) == "sender", key
        hardening = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                     "SystemCallFilter": "@system-service", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
                     "CapabilityBoundingSet": "", "AmbientCapabilities": ""}
        assert {k: s(k) for k in hardening} == hardening, service
        assert s("ReadWritePaths").split() == ["-/var/lib/sender", "-/var/cache/sender/spool"]
        assert directive(u, "Install", "WantedBy") == "sender.target"
    target = parse_unit(root / UNIT_DIR / "sender.target")
    assert directive(target, "Install", "WantedBy") == "multi-user.target"


def test_low_port_grants_only_that_daemon_cap_net_bind_service(sender_noinstall, tmp_path):
    root = tmp_path / "root"
    conf = root / "etc/sender/sender.toml"
    conf.parent.mkdir(parents=True)
    cfg = config_mod.Config(config_mod.defaults(), conf).with_value("http.listen", "0.0.0.0:80").with_value("spool.root", "/srv/sender-spool")
    config_mod.write(cfg, conf)
    report = run(sender_noinstall, "install", "--root", str(root), "--json").json()
    assert any("exists: kept" in n for n in report["notes"])  # an existing config is never overwritten
    http = parse_unit(root / UNIT_DIR / "sender-http.service")
    ingest = parse_unit(root / UNIT_DIR / "sender-ingest.service")
    assert directive(http, "Service", "CapabilityBoundingSet") == directive(http, "Service", "AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
    assert directive(ingest, "Service", "CapabilityBoundingSet") == ""
    # ReadWritePaths follow the config; the directory is staged too.
    assert "-/srv/sender-spool" in directive(ingest, "Service", "ReadWritePaths").split()
    assert (root / "srv/sender-spool").is_dir()
    assert not (root / "etc/systemd/system").exists()  # no --enable: nothing enabled


def test_units_reference_no_missing_command_or_path(staged_root):
    root, _ = staged_root
    for name in unit_names():
        assert missing_references(root / UNIT_DIR / name, root=root, man_dir=root / "usr/share/man") == [], name
    assert PENDING_DAEMONS == {"edge-fill", "snapshot"} - set(DAEMONS)


def test_missing_reference_check_catches_what_it_should(staged_root, tmp_path):
    """The check above is not vacuous: a unit with a bad binary, subcommand, config or path fails."""
    root, _ = staged_root
    good = (root / UNIT_DIR / "sender-ingest.service").read_text()
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    shutil.copy(root / UNIT_DIR / "sender.target", bad_dir)
    cases = {
        "/nonexistent/sender": good.replace(str(SENDER), "/nonexistent/sender"),
        "no command 'ingset'": good.replace("daemon ingest", "daemon ingset"),
        "config /etc/sender/other.toml": good.replace("/etc/sender/sender.toml", "/etc/sender/other.toml"),
        "/var/lib/elsewhere": good.replace("-/var/lib/sender", "-/var/lib/elsewhere"),
    }
    for expect, text in cases.items():
        (bad_dir / "sender-ingest.service").write_text(text)
        problems = missing_references(bad_dir / "sender-ingest.service", root=root, man_dir=root / "usr/share/man")
        assert any(expect in p for p in problems), (expect, problems)


@needs_systemd_analyze
def test_systemd_analyze_verify_passes_on_every_installed_unit(staged_root, tmp_path):
    root, _ = staged_root
    units = [str(root / UNIT_DIR / n) for n in unit_names()]
    # Documentation=man:… is checked with `man`: point it at the staged pages.
    env = {**os.environ, "MANPATH": str(root / "usr/share/man"), "SYSTEMD_LOG_LEVEL": "notice"}
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", *units], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr
    # ... and it does fail on a unit whose command is missing.
    broken = tmp_path / "sender-broken.service"
    broken.write_text(Path(units[0]).read_text().replace(str(SENDER), "/nonexistent/sender").replace("Documentation=", "#"))
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", str(broken)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "/nonexistent/sender" in r.stderr


@needs_systemd_analyze
def test_systemd_analyze_security_rates_the_services_ok(staged_root):
    root, _ = staged_root
    for service in SERVICES:
        r = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(root / UNIT_DIR / f"sender-{service}.service")],
                           capture_output=True, text=True, timeout=60)
        if "--offline" in r.stderr and r.returncode != 0:
            pytest.skip(f"this systemd-analyze has no offline security analysis: {r.stderr.strip()}")
        level = float(r.stdout.split("Overall exposure level for")[1].split(":")[1].split()[0])
        assert level <= 2.5, (service, r.stdout[-400:])


def test_uninstall_root_removes_what_install_wrote_and_keeps_data_unless_purge(sender_noinstall, tmp_path):
    root = tmp_path / "root"
    run(sender_noinstall, "install", "--root", str(root), "--enable")
    report = run(sender_noinstall, "uninstall", "--root", str(root), "--json").json()
    assert not (root / UNIT_DIR).exists() or not any((root / UNIT_DIR).iterdir())
    assert not (root / "etc/systemd/system/sender.target.wants").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/sender.target").is_symlink()
    assert not (root / "usr/lib/sysusers.d/sender.conf").exists() and not (root / "usr/lib/tmpfiles.d/sender.conf").exists()
    assert not list((root / "usr/share/man").rglob("*.[0-9]"))
    kept = set(report["kept"])
    assert {str(root / "etc/sender/sender.toml"), str(root / "var/lib/sender"), str(root / "var/cache/sender/spool")} == kept
    assert all(Path(p).exists() for p in kept)

    run(sender_noinstall, "install", "--root", str(root))  # again, then purge
    (root / "var/cache/sender/spool/streams").mkdir()
    report = run(sender_noinstall, "uninstall", "--root", str(root), "--purge", "--json").json()
    assert report["purged"] and report["kept"] == []
    assert not (root / "etc/sender").exists() and not (root / "var/lib/sender").exists() and not (root / "var/cache/sender/spool").exists()
    assert [p for p in root.rglob("*") if not p.is_dir()] == []


def test_install_user_mode_makes_a_working_install_in_xdg_dirs(sender_noinstall, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": "", "XDG_STATE_HOME": "", "XDG_CACHE_HOME": "", "XDG_DATA_HOME": "", "XDG_RUNTIME_DIR": ""}
    report = run(sender_noinstall, "install", "--user", "--enable", "--json", **env).json()
    assert report["mode"] == "user" and not report["staged"]
    conf = home / ".config/sender/sender.toml"
    cfg = config_mod.load(conf)
    assert cfg["node.state_dir"] == str(home / ".local/state/sender") and cfg["spool.root"] == str(home / ".cache/sender/spool")
    state = home / ".local/state/sender"
    assert stat.S_IMODE((state / "secret").stat().st_mode) == 0o600 and (state / "sender.db").is_file()
    unit_dir = home / ".config/systemd/user"
    ingest = parse_unit(unit_dir / "sender-ingest.service")
    assert directive(ingest, "Service", "ExecStart") == f"{SENDER} --config {conf} daemon ingest"
    assert directive(ingest, "Service", "User") is None and directive(ingest, "Service", "ProtectSystem") is None
    assert directive(ingest, "Service", "NoNewPrivileges") == "yes" and directive(ingest, "Service", "SystemCallFilter") == "@system-service"
    assert directive(parse_unit(unit_dir / "sender.target"), "Install", "WantedBy") == "default.target"
    assert os.readlink(unit_dir / "default.target.wants/sender.target") == str(unit_dir / "sender.target")
    assert (home / ".local/share/man/man1/sender.1").is_file()
    assert any("systemd is not running" in n for n in report["notes"]) or any("systemctl" in a for a in report["actions"])

    # Installing again changes nothing and keeps the secret.
    secret = (state / "secret").read_bytes()
    again = run(sender_noinstall, "install", "--user", "--json", **env).json()
    assert all(a.startswith(("unchanged", "store ")) for a in again["actions"]), again["actions"]
    assert (state / "secret").read_bytes() == secret

    # The daemons' config and units pass the doctor (ports: let the kernel pick, as tests must).
    config_mod.write(config_mod.load(conf).with_value("rtmp.listen", "127.0.0.1:0").with_value("http.listen", "127.0.0.1:0"), conf)
    doctor = sender_noinstall("--config", str(conf), "doctor", "--json", **env)
    assert doctor.returncode == 0, doctor.stdout
    assert {c["name"]: c["status"] for c in doctor.json()["checks"]}["units"] == "ok"

    report = run(sender_noinstall, "uninstall", "--user", "--json", **env).json()
    assert not (unit_dir / "sender-ingest.service").exists() and conf.exists()


def test_install_refuses_a_live_system_install_without_root(sender_noinstall, tmp_path):
    if os.geteuid() == 0:
        # As root, a live install would really create the user: run it as nobody instead.
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv is missing: cannot try the non-root refusal")
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(SENDER), "install"],
                           capture_output=True, text=True, cwd="/", env={**os.environ, "HOME": "/nonexistent"}, timeout=30)
    else:
        r = subprocess.run([str(SENDER), "install"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith("error: installing system units needs root") and "--root DIR" in r.stderr


def test_templates_render_for_user_and_system():
    from sender_cli.commands.install_cmd import FIELDS, TEMPLATES

    template = (TEMPLATES / "sender-ingest.service").read_text()
    values = {k: "X" for k in FIELDS}
    system = render_unit(template, values, user_mode=False)
    user = render_unit(template, values, user_mode=True)
    assert "#@" not in system and "ProtectSystem=strict" in system and "User=X" in system
    assert "ProtectSystem" not in user and "User=" not in user and "NoNewPrivileges=yes" in user
    from sender_cli.commands.install_cmd import layout, unit_values

    assert set(unit_values(config_mod.Config(config_mod.defaults()), layout(None, False, None), "http")) == set(FIELDS)
    with pytest.raises(Exception, match="unknown @FIELD@"):
        render_unit(template + "Environment=@NOPE@\n", values, user_mode=False)


def test_live_install_leaves_a_packages_identical_files_alone(tmp_path):
    """A package ships the units in /usr/lib (built with --root); its postinst's `sender install`
    must not write shadowing copies into /etc when they are the same."""
    from sender_cli.commands.install_cmd import Layout, Report, _write_unless_packaged

    live = Layout(tmp_path, False, Path("/etc/sender/sender.toml"), unit_dir=Path("/etc/systemd/system"), man_dir=Path("/usr/local/share/man"),
                  sysusers=Path("/etc/sysusers.d/sender.conf"), tmpfiles=Path("/etc/tmpfiles.d/sender.conf"),
                  state_dir=Path("/var/lib/sender"), spool=Path("/var/cache/sender/spool"))
    shipped = tmp_path / "usr/lib/systemd/system/sender.target"
    shipped.parent.mkdir(parents=True)
    shipped.write_text("same\n")
    rep = Report()
    _write_unless_packaged(live, Path("/etc/systemd/system/sender.target"), Path("/usr/lib/systemd/system/sender.target"), "same\n", rep)
    assert not (tmp_path / "etc/systemd/system/sender.target").exists() and "installed by a package" in rep.actions[0]
    _write_unless_packaged(live, Path("/etc/systemd/system/sender.target"), Path("/usr/lib/systemd/system/sender.target"), "changed\n", rep)
    assert (tmp_path / "etc/systemd/system/sender.target").read_text() == "changed\n"  # an override


def test_staged_paths_helper():
    assert staged(Path("/r"), "/etc/x") == Path("/r/etc/x")

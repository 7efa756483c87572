"""`sender install --root DIR --front nginx`: the unit passes systemd-analyze verify, the config it
stages passes nginx's own check (`nginx -t`); `sender doctor` checks the front (binaries, config,
ports, certificate dates)."""

from __future__ import annotations

import datetime
import os
import subprocess

import pytest
import trustme

from daemons.core import config as config_mod
from daemons.runtime import checks
from sender_cli.commands.install_cmd import unit_names
from tests.conftest import SenderProcess
from tests.front.conftest import NGINX, needs_nginx_front
from tests.ops.test_install import SYSTEMD_ANALYZE, UNIT_DIR, needs_systemd_analyze, run
from tests.ops.units import directive, missing_references, parse_unit

pytestmark = needs_nginx_front


def certificate(directory, *, days: int = 90):
    """A certificate from a throwaway CA valid `days` more days: (cert.pem, key.pem)."""
    ca = trustme.CA()
    not_after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    cert = ca.issue_cert("live.example.com", not_after=not_after)
    directory.mkdir(parents=True, exist_ok=True)
    cert.cert_chain_pems[0].write_to_path(str(directory / "cert.pem"))
    cert.private_key_pem.write_to_path(str(directory / "key.pem"))
    return directory / "cert.pem", directory / "key.pem"


def stage(tmp, kind: str):
    """`sender install --root --front KIND --enable` of a config with a certificate and a server name."""
    root = tmp / "root"
    conf = root / "etc/sender/sender.toml"
    conf.parent.mkdir(parents=True)
    cert, key = certificate(tmp / "tls")
    cfg = (config_mod.Config(config_mod.defaults(), conf).with_value("front.tls_cert", str(cert))
           .with_value("front.tls_key", str(key)).with_value("front.server_name", "live.example.com"))
    config_mod.write(cfg, conf)
    report = run(SenderProcess(None, tmp), "install", "--root", str(root), "--front", kind, "--enable", "--json").json()
    return root, report


@pytest.fixture(scope="module")
def staged_nginx_front(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("front-install-nginx")
    return (*stage(tmp, "nginx"), tmp)


def test_install_front_nginx_stages_a_config_nginx_accepts(staged_nginx_front):
    root, report, tmp = staged_nginx_front
    assert sorted(p.name for p in (root / UNIT_DIR).iterdir()) == sorted(unit_names(front=True))
    cfg = config_mod.load(root / "etc/sender/sender.toml")
    assert cfg["front.kind"] == "nginx" and cfg["http.listen"] == "127.0.0.1:8080"
    assert cfg["node.public_base_url"] == "https://live.example.com"
    front = root / "etc/sender/front"
    assert {p.name for p in front.iterdir()} == {"nginx.conf", "sender_front.lua"}
    assert any("checked" in a and "nginx -t" in a for a in report["actions"])
    text = (front / "nginx.conf").read_text()
    assert "listen 443 ssl http2" in text and "return 301 https://live.example.com$request_uri" in text
    assert "tcp_nopush off" in text  # not Debian's stock `tcp_nopush on`: ~44 ms per part
    # nginx's own check on what was staged (its paths moved from /etc/sender/front to the staging root).
    work = tmp / "nginx-work"
    work.mkdir()
    moved = front / "check.conf"
    moved.write_text(text.replace("/etc/sender/front", str(front)).replace(cfg["node.state_dir"] + "/front/nginx", str(work)))
    tested = subprocess.run([NGINX, "-t", "-c", str(moved), "-e", "stderr"], capture_output=True, text=True)
    moved.unlink()
    assert tested.returncode == 0, tested.stderr


def test_doctor_checks_the_nginx_front(tmp_path):
    conf = tmp_path / "sender.toml"
    cert, key = certificate(tmp_path / "tls")
    cfg = (config_mod.Config(config_mod.defaults(), conf).with_value("front.kind", "nginx")
           .with_value("front.tls_cert", str(cert)).with_value("front.tls_key", str(key)))
    by_name = {c.name: c for c in checks.check_front(cfg)}
    assert by_name["front binaries"].status == checks.OK and "nginx" in by_name["front binaries"].detail
    assert by_name["front config"].status == checks.OK and "nginx -t passes" in by_name["front config"].detail
    assert by_name["front certificate"].status == checks.OK
    broken = {c.name: c for c in checks.check_front(cfg.with_value("front.tls_cert", str(tmp_path / "tls" / "key.pem")))}
    assert broken["front config"].status == checks.FAIL and "nginx -t" in broken["front config"].detail
    ports = {c.name for c in checks.check_ports(cfg.with_value("front.listen", "").with_value("front.http_listen", "127.0.0.1:0"))}
    assert "port front.proxy_listen" in ports  # sender-front's pushes: nginx listens there even without HTTPS


def test_the_front_unit(staged_nginx_front):
    root, _, _ = staged_nginx_front
    unit = parse_unit(root / UNIT_DIR / "sender-front.service")
    s = lambda key: directive(unit, "Service", key)  # noqa: E731
    assert s("ExecStart").endswith("--config /etc/sender/sender.toml daemon front")
    assert s("ExecReload") == "/bin/kill -HUP $MAINPID" and s("Type") == "notify"
    assert s("AmbientCapabilities") == "CAP_NET_BIND_SERVICE"  # 443 and 80
    assert "-/etc/sender/front" in s("ReadWritePaths").split()
    assert directive(unit, "Install", "WantedBy") == "sender.target"
    assert missing_references(root / UNIT_DIR / "sender-front.service", root=root, man_dir=root / "usr/share/man") == []


@needs_systemd_analyze
def test_systemd_analyze_verify_passes_on_the_front_unit(staged_nginx_front):
    root, _, _ = staged_nginx_front
    env = {**os.environ, "MANPATH": str(root / "usr/share/man"), "SYSTEMD_LOG_LEVEL": "notice"}
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", str(root / UNIT_DIR / "sender-front.service"), str(root / UNIT_DIR / "sender.target")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr


def test_install_front_refuses_a_kind_it_does_not_run(tmp_path):
    r = SenderProcess(None, tmp_path)("install", "--root", str(tmp_path / "root"), "--front", "varnish")
    assert r.returncode != 0 and "varnish" in r.stderr and "nginx" in r.stderr


def test_doctor_checks_the_front_certificate_and_ports(tmp_path):
    conf = tmp_path / "sender.toml"
    cert, key = certificate(tmp_path / "tls", days=5)
    cfg = (config_mod.Config(config_mod.defaults(), conf).with_value("front.kind", "nginx")
           .with_value("front.tls_cert", str(cert)).with_value("front.tls_key", str(key)))
    by_name = {c.name: c for c in checks.check_front(cfg)}
    assert by_name["front binaries"].status == checks.OK
    assert by_name["front config"].status == checks.OK and "nginx -t passes" in by_name["front config"].detail
    assert by_name["front certificate"].status == checks.WARN and "expires" in by_name["front certificate"].detail
    assert by_name["front upstream"].status == checks.WARN  # http.listen 0.0.0.0: viewers can go around the front
    expired = {c.name: c for c in checks.check_front(cfg, now=datetime.datetime.now().timestamp() + 10 * 86400)}
    assert expired["front certificate"].status == checks.FAIL
    no_key = {c.name: c for c in checks.check_front(cfg.with_value("front.tls_key", str(tmp_path / "missing.pem")))}
    assert no_key["front.tls_key"].status == checks.FAIL
    # The front's ports are among doctor's port checks, only with a front.
    ports = {c.name for c in checks.check_ports(cfg.with_value("front.listen", "127.0.0.1:0").with_value("front.http_listen", "127.0.0.1:0"))}
    assert {"port front.listen", "port front.http_listen", "port front.proxy_listen"} <= ports
    assert not any(n.startswith("port front.") for n in (c.name for c in checks.check_ports(cfg.with_value("front.kind", ""))))

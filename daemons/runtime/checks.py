"""Checks of an install's health, shared by `sender doctor` and every daemon's start.

Each check is a plain function returning `Check` values (name, status, detail, fix): no trio, no
printing. `doctor(config_path)` runs them all; `startup(daemon, install)` runs the ones a daemon
cannot work without (its directories, the install secret, the binaries it runs), creating the
spool with the right mode if it is missing, and the daemon refuses to start on any failure.

A status is "ok", "warn" (worth knowing, not broken: e.g. no systemd units on a `sender up`
install) or "fail" (broken: the fix says what to do).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from daemons.core import config as config_mod
from daemons.core.config import Config
from daemons.core.errors import SenderError

OK, WARN, FAIL = "ok", "warn", "fail"

# The oldest ffmpeg the pipeline is tested with (Debian 12's); older ones lack fixes the fMP4
# output relies on (see docs/arch.md, "Media pipeline").
MIN_FFMPEG = (5, 1)
# Encoders a transcoded rendition uses (daemons/ingest/backend.py); the source remux needs none.
TRANSCODE_ENCODERS = ("libx264", "aac")
# Below this much free space a directory fails the check; below 4× it, a warning.
MIN_FREE_BYTES = 256 * 1024 * 1024
# Wall clocks before this are certainly wrong (an RTC that lost its battery, no NTP yet).
CLOCK_FLOOR = 1_735_689_600  # 2025-01-01T00:00:00Z
CLOCK_SKEW_S = 300

# Which daemons listen on which config keys, and which binaries each runs.
LISTEN_KEYS = {"rtmp.listen": "ingest", "rtmp.rtmps_listen": "ingest", "http.listen": "http",
               "front.listen": "front", "front.http_listen": "front", "front.proxy_listen": "front"}
DAEMON_BINARIES = {"ingest": ("backend.ffmpeg",)}

SYSTEM_UNIT_DIRS = (Path("/etc/systemd/system"), Path("/usr/local/lib/systemd/system"), Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    def line(self) -> str:
        """One line for a log: `name: detail (fix: …)`."""
        return f"{self.name}: {self.detail}" + (f" (fix: {self.fix})" if self.fix else "")


def _ok(name: str, detail: str) -> Check:
    return Check(name, OK, detail)


def _warn(name: str, detail: str, fix: str = "") -> Check:
    return Check(name, WARN, detail, fix)


def _fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, FAIL, detail, fix)


# --- config ------------------------------------------------------------------------------------


def check_config(path: str | os.PathLike | None) -> tuple[Check, Config | None]:
    p = config_mod.resolve_path(path)
    try:
        cfg = config_mod.load(p)
    except SenderError as e:
        if not p.exists():
            return _fail("config", f"no config at {p}", f"`sender init` (or `sender install`), or point --config / {config_mod.CONFIG_ENV} at it"), None
        return _fail("config", e.message, f"edit {p} (every key is documented in sender.toml(5)); `sender config validate` re-checks"), None
    return _ok("config", f"{p} is valid"), cfg


# --- ffmpeg ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FFmpegInfo:
    path: str
    version: str  # as printed, e.g. "5.1.9-0+deb12u1"
    version_tuple: tuple[int, ...] | None  # None for git builds ("N-12345-g…"), taken as new
    encoders: frozenset[str]


def find_binary(name: str) -> str | None:
    """An absolute path or a name on PATH → the executable's path, or None."""
    if os.sep in name:
        return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
    return shutil.which(name)


def ffmpeg_info(exe: str) -> FFmpegInfo:
    """Ask the binary itself; RuntimeError if it does not run like ffmpeg."""
    try:
        ver = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=10)
        enc = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"{exe} does not run: {e}") from None
    m = re.search(r"ffmpeg version (\S+)", ver.stdout)
    if ver.returncode != 0 or not m:
        raise RuntimeError(f"{exe} -version did not print an ffmpeg version")
    version = m.group(1)
    nums = re.match(r"n?(\d+)\.(\d+)(?:\.(\d+))?", version)
    version_tuple = tuple(int(x) for x in nums.groups() if x is not None) if nums else None
    # `-encoders` lists " V....D libx264   libx264 H.264 / …" after a legend ending in " ------".
    listing = enc.stdout.split("------", 1)[-1]
    encoders = frozenset(m.group(1) for m in re.finditer(r"^\s*[VAS][A-Z.]{5}\s+(\S+)", listing, re.M))
    return FFmpegInfo(exe, version, version_tuple, encoders)


def ladder_encoders(renditions: list[dict]) -> set[str]:
    return set(TRANSCODE_ENCODERS) if any(r.get("kind") == "transcode" for r in renditions) else set()


def check_ffmpeg(cfg: Config, extra_renditions: list[dict] = ()) -> list[Check]:
    """ffmpeg present, new enough, and with the encoders the ladder (config and store) needs."""
    name = cfg["backend.ffmpeg"]
    exe = find_binary(name)
    install_fix = "install ffmpeg (`apt install ffmpeg`), or set backend.ffmpeg to its absolute path"
    if exe is None:
        where = "is not executable" if os.sep in name else "is not on PATH"
        return [_fail("ffmpeg", f"{name!r} {where} (PATH={os.environ.get('PATH', '')})", install_fix)]
    try:
        info = ffmpeg_info(exe)
    except RuntimeError as e:
        return [_fail("ffmpeg", str(e), install_fix)]
    out = []
    wanted = ".".join(map(str, MIN_FFMPEG))
    if info.version_tuple is not None and info.version_tuple[:2] < MIN_FFMPEG:
        out.append(_fail("ffmpeg", f"{exe} is version {info.version}; Sender needs {wanted} or newer", f"install ffmpeg {wanted}+ (Debian 12 has 5.1), or set backend.ffmpeg to a newer build"))
    else:
        out.append(_ok("ffmpeg", f"{exe} version {info.version}"))
    needed = ladder_encoders([*cfg["renditions.ladder"], *extra_renditions])
    missing = sorted(needed - info.encoders)
    if missing:
        out.append(_fail("ffmpeg encoders", f"{exe} lacks {', '.join(missing)}, needed by the transcoded renditions of the ladder",
                         "install an ffmpeg built with them (Debian's ffmpeg has libx264 and aac), or use only source renditions"))
    elif needed:
        out.append(_ok("ffmpeg encoders", f"{', '.join(sorted(needed))} available for the transcoded renditions"))
    else:
        out.append(_ok("ffmpeg encoders", "the ladder only remuxes (source renditions): no encoder needed"))
    return out


def check_binaries(daemon: str, cfg: Config) -> list[Check]:
    """At a daemon's start: the binaries it runs are there (no version probing: that is doctor's)."""
    out = []
    for key in DAEMON_BINARIES.get(daemon, ()):
        name = cfg[key]
        if find_binary(name) is None:
            out.append(_fail(key, f"{name!r} is not executable or not on PATH (PATH={os.environ.get('PATH', '')})",
                             f"install it, or set {key} to its absolute path (`sender config set {key} PATH`)"))
    return out


# --- directories -------------------------------------------------------------------------------


def check_directory(name: str, path: Path, key: str, *, create: bool = False, min_free: int = MIN_FREE_BYTES) -> Check:
    """Exists (or is created, mode 0750), is a directory, is writable (a file is really created),
    is not writable by everyone, and has free space."""
    path = Path(path)
    if not path.exists():
        if not create:
            return _fail(name, f"{path} ({key}) does not exist", f"`sudo sender install` creates it (or `mkdir -m 750 {path}` as the daemons' user)")
        try:
            path.mkdir(parents=True, mode=0o750)
            path.chmod(0o750)  # whatever the umask
        except OSError as e:
            return _fail(name, f"cannot create {path} ({key}): {e.strerror}", f"create it writable by the daemons' user, or set {key}")
    if not path.is_dir():
        return _fail(name, f"{path} ({key}) is not a directory", f"remove it or set {key} to a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".sender-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        user = _user_name()
        return _fail(name, f"{path} ({key}) is not writable by {user}: {e.strerror}",
                     f"`chown -R {user} {path}` (or remount it read-write), or set {key}")
    mode = path.stat().st_mode
    if mode & stat.S_IWOTH:
        return _fail(name, f"{path} ({key}) is writable by every user (mode {stat.filemode(mode)})", f"`chmod 750 {path}`")
    free = shutil.disk_usage(path).free
    if free < min_free:
        return _fail(name, f"{path} has only {_size(free)} free", f"free space on that filesystem, or move {key} (needs {_size(min_free)})")
    if free < 4 * min_free:
        return _warn(name, f"{path} is writable; only {_size(free)} free", "free space on that filesystem (parts and segments fill it while live)")
    return _ok(name, f"{path} is writable, {_size(free)} free")


def check_secret(state_dir: Path) -> Check:
    from daemons.core.install import SECRET_FILE

    path = Path(state_dir) / SECRET_FILE
    try:
        st = path.stat()
        text = path.read_text().strip()
    except FileNotFoundError:
        return _fail("secret", f"install secret {path} is missing", "`sender install` (or `sender init --force`, which also rewrites the config) creates it")
    except OSError as e:
        return _fail("secret", f"cannot read install secret {path}: {e.strerror}", f"`chown {_user_name()} {path}`")
    if len(text) < 32:
        return _fail("secret", f"install secret {path} is too short", "restore it from a backup; a new one invalidates every stream key")
    if st.st_mode & 0o077:
        return _fail("secret", f"install secret {path} is readable by others (mode {stat.filemode(st.st_mode)})", f"`chmod 600 {path}`")
    return _ok("secret", f"{path} present, mode 0600")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _user_name() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (KeyError, ImportError):
        return str(os.geteuid())


# --- store -------------------------------------------------------------------------------------


def check_store(cfg: Config) -> tuple[Check, list[dict]]:
    """Opens without migrating; every migration applied and none unknown. Also returns the
    renditions the store's streams use (for the encoder check)."""
    from daemons.core.store import Store
    from daemons.core.store.migrations import MIGRATIONS

    path = Path(cfg["store.path"])
    if not path.exists():
        return _fail("store", f"{path} does not exist", "`sender install` (or `sender init`) creates it"), []
    try:
        with Store.open(path, busy_timeout_ms=cfg["store.busy_timeout_ms"], migrate=False) as store:
            applied = store.schema_version()
            pending = store.pending_migrations()
            known = {m.name for m in getattr(MIGRATIONS, "_migrations", ())} or set(applied)
            unknown = [m for m in applied if m not in known]
            try:
                renditions = store.query("SELECT DISTINCT kind FROM renditions")
            except Exception:  # noqa: BLE001 - an unmigrated store may lack the table
                renditions = []
    except SenderError as e:
        return _fail("store", e.message, f"restore {path} from a backup, or move it aside and `sender init --force`"), []
    if unknown:
        return _fail("store", f"{path} has migrations this Sender does not know ({', '.join(unknown)})", "upgrade Sender to the version that wrote it"), renditions
    if pending:
        return _fail("store", f"{path} needs {len(pending)} migration(s): {', '.join(pending)}", "`sender status` (any command or daemon start migrates)"), renditions
    return _ok("store", f"{path} migrated ({len(applied)} migrations)"), renditions


def check_recordings(cfg: Config) -> Check:
    """What the recordings take in the spool, against recording.max_bytes; a warning when
    recording is on with no size limit (only recording.keep then bounds them)."""
    from daemons.core.domain import recordings
    from daemons.core.store import Store

    store_path, spool = Path(cfg["store.path"]), Path(cfg["spool.root"])
    if not store_path.exists() or not spool.is_dir():
        return _ok("recordings", "none (no store or spool yet)")
    try:
        with Store.open(store_path, busy_timeout_ms=cfg["store.busy_timeout_ms"], migrate=False) as store:
            used = recordings.usage(store, spool)
    except Exception as e:  # noqa: BLE001 - an unmigrated or broken store: the store check says why
        return _warn("recordings", f"cannot count the recordings: {e}")
    enabled, max_bytes = cfg["recording.enabled"], cfg["recording.max_bytes"]
    detail = f"{used['count']} recording(s), {_size(used['bytes'])} in {spool}"
    detail += f" (recording.max_bytes {_size(max_bytes)}, recording.keep {cfg['recording.keep']})" if max_bytes else \
        f" (recording.keep {cfg['recording.keep']}, no size limit)"
    if max_bytes and used["bytes"] > max_bytes:
        return _warn("recordings", detail + ": over recording.max_bytes",
                     "sender-ingest's retention removes the oldest ended ones within a minute (live ones count but stay): "
                     "check that sender-ingest runs")
    if enabled and not max_bytes:
        return _warn("recordings", detail + "; recording.enabled: until recording.keep removes them, recordings fill the spool",
                     "`sender config set recording.max_bytes <bytes>` (a share of the spool's disk)")
    return _ok("recordings", detail)


# --- ports -------------------------------------------------------------------------------------


def check_ports(cfg: Config) -> list[Check]:
    """Each listen address can be bound, or is held by the Sender daemon that should hold it."""
    out = []
    for key, daemon in LISTEN_KEYS.items():
        value = cfg[key]
        if not value or (daemon == "front" and not _front_listens(cfg, key)):
            continue
        host, port = config_mod.parse_listen(value)
        name = f"port {key}"
        if port == 0:
            out.append(_ok(name, f"{value}: the kernel picks a free port"))
            continue
        err = _try_bind(host, port)
        if err is None:
            out.append(_ok(name, f"{value} is free"))
        elif err == errno.EACCES:
            out.append(_warn(name, f"{value}: port {port} < 1024 needs CAP_NET_BIND_SERVICE (the systemd unit grants it; `sender up` as this user cannot bind it)",
                             f"run under the unit, or `sender config set {key} HOST:PORT` with a port ≥ 1024"))
        elif err == errno.EADDRINUSE:
            holders = port_holders(port)
            ours = [h for h in holders if _is_our_daemon(h[1], daemon)]
            if ours:
                out.append(_ok(name, f"{value} is held by sender-{daemon} (pid {ours[0][0]})"))
            else:
                out.append(_fail(name, f"{value} is in use by {describe_holders(holders)}", f"stop that process, or `sender config set {key} HOST:PORT` with a free port"))
        elif err == errno.EADDRNOTAVAIL:
            out.append(_fail(name, f"{value}: {host} is not an address of this machine", f"`sender config set {key} 0.0.0.0:{port}` (or one of this machine's addresses)"))
        else:
            out.append(_fail(name, f"{value}: cannot bind: {os.strerror(err)}", f"`sender config set {key} HOST:PORT`"))
    return out


def check_listen_free(daemon: str, cfg: Config) -> list[Check]:
    """At a daemon's start: every address it listens on can be bound. Held by anyone, even by a
    Sender daemon (then another `sender up` or the units already run this node), it fails, naming
    the holder when /proc shows it. Other bind errors are left to the daemon's own bind."""
    out = []
    for key, owner in LISTEN_KEYS.items():
        value = cfg[key]
        if owner != daemon or not value or (owner == "front" and not _front_listens(cfg, key)):
            continue
        host, port = config_mod.parse_listen(value)
        if port != 0 and _try_bind(host, port) == errno.EADDRINUSE:
            out.append(_fail(f"port {key}", f"{value} is in use by {describe_holders(port_holders(port))}",
                             f"stop it (`sender status` shows what runs), or `sender config set {key} HOST:PORT`"))
    return out


def describe_holders(holders: list[tuple[int, str]]) -> str:
    """`sender-ingest (pid 12)`, `pid 34 (nginx: master process)`, or `another process`."""
    names = []
    for pid, cmd in holders:
        ours = next((d for d in dict.fromkeys(LISTEN_KEYS.values()) if _is_our_daemon(cmd, d)), None)
        names.append(f"sender-{ours} (pid {pid})" if ours else f"pid {pid} ({' '.join(cmd.split())[:60]})")
    return ", ".join(names) or "another process"


def _try_bind(host: str, port: int) -> int | None:
    """errno of binding HOST:PORT the way the daemons do (SO_REUSEADDR), None if it binds."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return errno.EADDRNOTAVAIL
    for family, type_, proto, _, addr in infos:
        with socket.socket(family, type_, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(addr)
                s.listen(1)
            except OSError as e:
                return e.errno
    return None


def port_holders(port: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes with a listening TCP socket on PORT (from /proc;
    processes of other users are invisible unless we are root)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(f"socket:[{f[9]}]")
    holders = []
    if not inodes:
        return holders
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    holders.append((int(pid_dir.name), cmd))
                    break
            except OSError:
                continue
    return holders


def _is_our_daemon(cmdline: str, daemon: str) -> bool:
    if daemon == "front":  # the front's ports are held by the programs sender-front runs
        return "nginx" in cmdline and "/front/" in cmdline
    return f"daemon {daemon}" in cmdline or (daemon == "http" and "daemons.http.main" in cmdline)


def _front_listens(cfg: Config, key: str) -> bool:
    """Whether the front listens on `key`: every front.* listener, only with a front."""
    return bool(cfg["front.kind"])


# --- RTMPS files ---------------------------------------------------------------------------------


def check_tls(cfg: Config) -> list[Check]:
    if not cfg["rtmp.rtmps_listen"]:
        return []
    out = []
    for key in ("rtmp.tls_cert", "rtmp.tls_key"):
        path = cfg[key]
        if not path:
            out.append(_fail(key, f"RTMPS is on ({cfg['rtmp.rtmps_listen']}) but {key} is empty", f"`sender config set {key} /path/to/pem`, or turn RTMPS off with `sender config set rtmp.rtmps_listen ''`"))
        elif not os.access(path, os.R_OK):
            out.append(_fail(key, f"{path} is missing or not readable by {_user_name()}", f"check the path, and `chgrp sender {path}; chmod 640 {path}`"))
        else:
            out.append(_ok(key, f"{path} readable"))
    return out


# --- the front tier ----------------------------------------------------------------------------

CERT_WARN_DAYS = 14  # a certificate expiring sooner is a warning (certbot renews at 30 days left)
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _cert_not_after(path: str) -> float | None:
    """The certificate's notAfter as a Unix time (the first certificate of a PEM chain)."""
    import ssl

    try:
        decoded = ssl._ssl._test_decode_cert(path)  # CPython's own PEM decoder: no dependency
    except (OSError, ValueError, AttributeError, ssl.SSLError):
        return None
    try:
        return ssl.cert_time_to_seconds(decoded["notAfter"])
    except (KeyError, ValueError):
        return None


def check_front(cfg: Config, *, now: float | None = None, compile_config: bool = True) -> list[Check]:
    """The front tier (front.kind): its programs, its generated config (`nginx -t`), the
    certificate's files and dates, sender-http on loopback behind it."""
    kind = cfg["front.kind"]
    if not kind:
        return [_ok("front", "none: sender-http answers viewers itself (`sender install --front nginx` adds HTTPS and carries the viewers)")]
    from daemons.core import front_config as render
    from daemons.core.front_config import binaries, install_hint

    out = []
    bins = binaries(cfg)
    missing = [n for n, p in bins.items() if p is None]
    if missing:
        out.append(_fail("front binaries", f"front.kind = {kind!r} needs {', '.join(missing)}: not installed", install_hint(missing)))
    else:
        out.append(_ok("front binaries", ", ".join(f"{n} {p}" for n, p in bins.items())))
    http_host = cfg.listen("http.listen")[0]
    if http_host not in LOOPBACK_HOSTS:
        out.append(_warn("front upstream", f"http.listen is {cfg['http.listen']}: viewers can reach sender-http around the front",
                         f"`sender config set http.listen 127.0.0.1:{cfg.listen('http.listen')[1]}`"))
    else:
        out.append(_ok("front upstream", f"sender-http on {cfg['http.listen']} (loopback), trusting the front's X-Forwarded-*"))
    if render.https_on(cfg):
        for key in ("front.tls_cert", "front.tls_key"):
            path = cfg[key]
            if not path:
                out.append(_fail(key, f"HTTPS is on ({cfg['front.listen']}) but {key} is empty",
                                 f"`sender config set {key} /path/to/pem` (docs/runbooks/front.md: certbot), or `sender config set front.listen ''`"))
            elif not os.access(path, os.R_OK):
                out.append(_fail(key, f"{path} is missing or not readable by {_user_name()}", f"check the path, and `chgrp sender {path}; chmod 640 {path}`"))
        cert = cfg["front.tls_cert"]
        if cert and os.access(cert, os.R_OK):
            not_after = _cert_not_after(cert)
            now = time.time() if now is None else now
            if not_after is None:
                out.append(_fail("front certificate", f"{cert} holds no PEM certificate", "point front.tls_cert at the PEM certificate chain (fullchain.pem)"))
            else:
                days = (not_after - now) / 86400
                until = time.strftime("%Y-%m-%d", time.gmtime(not_after))
                if days < 0:
                    out.append(_fail("front certificate", f"{cert} expired on {until}", "renew it (certbot renew) and `systemctl reload sender-front`"))
                elif days < CERT_WARN_DAYS:
                    out.append(_warn("front certificate", f"{cert} expires on {until} ({days:.0f} days)", "renew it (certbot renew) and `systemctl reload sender-front`"))
                else:
                    out.append(_ok("front certificate", f"{cert} valid until {until} ({days:.0f} days)"))
    if compile_config and not missing:
        out.append(_check_front_config(cfg, bins))
    return out


def _check_front_config(cfg: Config, bins: dict) -> Check:
    """The config sender-front would write, checked by nginx itself (`nginx -t`)."""
    from daemons.runtime.front_files import check_config

    problem = check_config(cfg, bins["nginx"])
    if problem:
        return _fail("front config", f"nginx -t rejects the generated config: {problem}",
                     "check front.tls_cert / front.tls_key and the listen addresses; else report it")
    return _ok("front config", "nginx -t passes")


# --- clock -------------------------------------------------------------------------------------


def check_clock(cfg: Config | None = None, *, now: float | None = None) -> Check:
    """The wall clock is plausible: after CLOCK_FLOOR, and not behind what this install already
    wrote (the store's and the stats files' modification times) by more than a few minutes.
    Playback tokens and stats freshness depend on it."""
    now = time.time() if now is None else now
    if now < CLOCK_FLOOR:
        return _fail("clock", f"the system clock says {time.strftime('%Y-%m-%d %H:%M', time.gmtime(now))} UTC", "set the time and enable NTP (`timedatectl set-ntp true`)")
    if cfg is not None:
        newest = 0.0
        for p in (Path(cfg["store.path"]), *Path(cfg["node.state_dir"], "stats").glob("*.json")):
            try:
                newest = max(newest, p.stat().st_mtime)
            except OSError:
                pass
        if newest - now > CLOCK_SKEW_S:
            return _fail("clock", f"the clock is {newest - now:.0f} s behind the install's newest file: it went backwards",
                         "fix the time and enable NTP (`timedatectl set-ntp true`)")
    sync = _ntp_synchronized()
    if sync is False:
        return _warn("clock", f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(now))} UTC, but not NTP-synchronized", "`timedatectl set-ntp true`")
    return _ok("clock", f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(now))} UTC" + (", NTP-synchronized" if sync else ""))


def _ntp_synchronized() -> bool | None:
    if not systemd_running() or shutil.which("timedatectl") is None:
        return None
    try:
        r = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"yes": True, "no": False}.get(r.stdout.strip())


# --- systemd units -----------------------------------------------------------------------------


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir()


def check_units(daemons: list[str], *, unit_dirs: tuple[Path, ...] = SYSTEM_UNIT_DIRS, user: bool = False) -> list[Check]:
    """The units of the daemons that exist are installed; when systemd runs, active."""
    units = [f"sender-{d}.service" for d in daemons]
    missing = [u for u in [*units, "sender.target"] if not any((d / u).is_file() for d in unit_dirs)]
    flag = " --user" if user else ""
    if missing:
        return [_warn("units", f"not installed: {', '.join(missing)} (fine for `sender up`)", "`sudo sender install --enable`" if not user else "`sender install --user --enable`")]
    if not systemd_running():
        return [_ok("units", f"installed in {', '.join(str(d) for d in unit_dirs if (d / units[0]).is_file())}; systemd is not running here, so not checked active")]
    out = []
    for unit in units:
        try:
            r = subprocess.run(["systemctl", *(["--user"] if user else []), "show", "-p", "ActiveState,SubState", "--value", unit], capture_output=True, text=True, timeout=10)
            state = " ".join(r.stdout.split())
        except (OSError, subprocess.TimeoutExpired) as e:
            state = f"unknown ({e})"
        if state.startswith("active"):
            out.append(_ok(f"unit {unit}", state))
        else:
            out.append(_fail(f"unit {unit}", state or "unknown", f"`systemctl{flag} start sender.target`; why it stopped: `journalctl{flag} -u {unit} -e`"))
    return out


# --- the sets ----------------------------------------------------------------------------------


def check_control_plane(cfg: Config) -> Check:
    """Reports to the control plane are signed: a report URL needs a readable, non-empty key file."""
    url, key_file = cfg["control_plane.report_url"], cfg["control_plane.signing_key_file"]
    if not url:
        return _ok("control plane", "no report URL: snapshots stay local")
    fix = "put the shared key in a file readable by sender and `sender config set control_plane.signing_key_file PATH`"
    if not key_file:
        return _fail("control plane", f"control_plane.report_url is {url} but no signing key file is set", fix)
    try:
        if not Path(key_file).read_bytes().strip():
            return _fail("control plane", f"the signing key file {key_file} is empty", fix)
    except OSError as e:
        return _fail("control plane", f"cannot read the signing key file {key_file}: {e.strerror}", fix)
    return _ok("control plane", f"reports to {url}, signed")


def check_distribution(cfg: Config) -> Check:
    """The key an origin shares with its edges: readable, long enough, not readable by everyone."""
    path = cfg["distribution.key_file"]
    if not path:
        return _ok("distribution", "no distribution key: this node neither feeds nor follows other Sender nodes")
    fix = "put the same 32+ character key on every node (`openssl rand -hex 32 > FILE`), readable by sender only, " \
          "and `sender config set distribution.key_file FILE`"
    try:
        st = os.stat(path)
        text = Path(path).read_text().strip()
    except OSError as e:
        return _fail("distribution", f"cannot read the distribution key {path}: {e.strerror}", fix)
    if len(text) < 32:
        return _fail("distribution", f"the distribution key in {path} is too short (32 characters at least)", fix)
    if st.st_mode & stat.S_IROTH:
        return _fail("distribution", f"the distribution key {path} is readable by every user (mode {stat.filemode(st.st_mode)})", f"`chmod 640 {path}`")
    return _ok("distribution", f"key {path}: node tokens and playback tokens shared with the other nodes")


def startup(daemon: str, install, *, listens: bool = True) -> list[Check]:
    """What a daemon needs before it starts: state and spool writable (the spool created, mode
    0750, if missing), the install secret, the binaries it runs, and (`listens`: not for a
    process sharing its first worker's socket) its listen addresses free. Failures only."""
    cfg = install.config
    results = [
        check_directory("state", install.state_dir, "node.state_dir", min_free=0),
        check_directory("spool", install.spool_root, "spool.root", create=True, min_free=0),
        check_secret(install.state_dir),
        *check_binaries(daemon, cfg),
        *(check_listen_free(daemon, cfg) if listens else ()),
    ]
    if daemon == "snapshot":
        results.append(check_control_plane(cfg))
    if daemon in ("http", "edge-fill"):
        results.append(check_distribution(cfg))
    if daemon == "front":
        results += check_front(cfg, compile_config=False)
    return [c for c in results if not c.ok]


def doctor(config_path: str | os.PathLike | None, *, daemons: list[str], unit_dirs: tuple[Path, ...] = SYSTEM_UNIT_DIRS, user_units: bool = False) -> list[Check]:
    """Every check, in the order a person fixes things."""
    config_check, cfg = check_config(config_path)
    out = [config_check]
    if cfg is None:
        return [*out, check_clock()]
    store_check, store_renditions = check_store(cfg)
    out += check_ffmpeg(cfg, store_renditions)
    out.append(check_directory("spool", Path(cfg["spool.root"]), "spool.root"))
    out.append(check_directory("state", Path(cfg["node.state_dir"]), "node.state_dir"))
    if Path(cfg["node.state_dir"]).is_dir():
        out.append(check_secret(Path(cfg["node.state_dir"])))
    out.append(store_check)
    out.append(check_recordings(cfg))
    out += check_ports(cfg)
    out += check_tls(cfg)
    out += check_front(cfg)
    out.append(check_control_plane(cfg))
    out.append(check_distribution(cfg))
    out.append(check_clock(cfg))
    out += check_units(daemons, unit_dirs=unit_dirs, user=user_units)
    return out

"""A real OBS Studio publisher for tests: Debian's obs-studio (29: H.264 + AAC over RTMP; HEVC
and AV1 over RTMP came with OBS 30) run headless under Xvfb, streaming a looping media file.

OBS has no command line for its stream settings: `OBSPublisher` writes a fresh OBS home (global
settings, a profile — custom RTMP server and key, x264 CBR with the keyframe interval asked for,
AAC — and a scene collection whose one source plays the media file in a loop), then runs
``xvfb-run obs --startstreaming`` under ``timeout``: stopped by SIGTERM after ``seconds``, as a
user stopping OBS would. OBS renders with Mesa's software OpenGL (llvmpipe); on two cores it
reports many "lagged frames", and the stream still arrives at 30 fps. OBS's own log is in
``home/.config/obs-studio/logs/``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

OBS = shutil.which("obs")
XVFB_RUN = shutil.which("xvfb-run")
TIMEOUT = shutil.which("timeout")

GLOBAL_INI = """\
[General]
FirstRun=true
EnableAutoUpdates=false
ConfirmOnExit=false
WarnBeforeStartingStream=false
WarnBeforeStoppingStream=false
[Basic]
Profile=Sender
ProfileDir=Sender
SceneCollection=Sender
SceneCollectionFile=Sender
"""

BASIC_INI = """\
[General]
Name=Sender
[Output]
Mode=Advanced
[AdvOut]
Encoder=obs_x264
AudioEncoder=ffmpeg_aac
TrackIndex=1
ApplyServiceSettings=true
Track1Bitrate=160
[Video]
BaseCX={width}
BaseCY={height}
OutputCX={width}
OutputCY={height}
FPSType=0
FPSCommon={fps}
[Audio]
SampleRate=48000
ChannelSetup=Stereo
"""


def scene_collection(media: Path, width: int, height: int) -> dict:
    """One scene ("Scene") with one media source ("Media") playing `media` in a loop."""
    item = {"align": 5, "bounds": {"x": 0.0, "y": 0.0}, "bounds_align": 0, "bounds_type": 0, "crop_bottom": 0,
            "crop_left": 0, "crop_right": 0, "crop_top": 0, "id": 1, "locked": False, "name": "Media",
            "pos": {"x": 0.0, "y": 0.0}, "rot": 0.0, "scale": {"x": 1.0, "y": 1.0}, "visible": True}
    return {
        "current_program_scene": "Scene", "current_scene": "Scene", "current_transition": "Fade", "groups": [],
        "name": "Sender", "scene_order": [{"name": "Scene"}], "transition_duration": 300, "transitions": [],
        "sources": [
            {"id": "scene", "versioned_id": "scene", "name": "Scene", "enabled": True, "mixers": 0, "volume": 1.0,
             "settings": {"custom_size": False, "id_counter": 1, "items": [item]}},
            {"id": "ffmpeg_source", "versioned_id": "ffmpeg_source", "name": "Media", "enabled": True, "mixers": 255,
             "volume": 1.0, "monitoring_type": 0,
             "settings": {"is_local_file": True, "local_file": str(media), "looping": True, "restart_on_activate": False,
                          "close_when_inactive": False}},
        ],
    }


class OBSPublisher:
    """OBS configured in `home` to stream `media` to `server` (rtmp://host:port/app) with `key`."""

    def __init__(self, home: Path, media: Path, server: str, key: str, *, keyint_s: int = 2, bitrate_kbps: int = 2500,
                 width: int = 1280, height: int = 720, fps: int = 30, x264opts: str = "scenecut=0"):
        """`x264opts`: OBS's "x264 Options" field. By default scene cuts are off, so keyframes come
        exactly every `keyint_s` (with them x264 adds keyframes where the picture changes, and
        OBS 29's GOPs of this media measured 1.77–2 s against keyint_sec 2)."""
        self.home = home
        cfg = home / ".config" / "obs-studio"
        profile = cfg / "basic" / "profiles" / "Sender"
        profile.mkdir(parents=True, exist_ok=True)
        (cfg / "basic" / "scenes").mkdir(parents=True, exist_ok=True)
        (home / "run").mkdir(mode=0o700, exist_ok=True)
        (cfg / "global.ini").write_text(GLOBAL_INI)
        (profile / "basic.ini").write_text(BASIC_INI.format(width=width, height=height, fps=fps))
        (profile / "service.json").write_text(json.dumps(
            {"type": "rtmp_custom", "settings": {"server": server, "key": key, "use_auth": False, "bwtest": False}}))
        (profile / "streamEncoder.json").write_text(json.dumps(
            {"rate_control": "CBR", "bitrate": bitrate_kbps, "keyint_sec": keyint_s, "preset": "veryfast",
             "profile": "high", "tune": "zerolatency", "x264opts": x264opts}))
        (cfg / "basic" / "scenes" / "Sender.json").write_text(json.dumps(scene_collection(media, width, height)))

    @property
    def logs(self) -> Path:
        return self.home / ".config" / "obs-studio" / "logs"

    def command(self, seconds: float) -> list[str]:
        return [TIMEOUT, "-k", "10", "-s", "TERM", str(seconds), XVFB_RUN, "-a", "-s", "-screen 0 1920x1080x24",
                OBS, "--startstreaming", "--minimize-to-tray", "--disable-shutdown-check", "--disable-missing-files-check"]

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XDG_RUNTIME_DIR": str(self.home / "run"), "LIBGL_ALWAYS_SOFTWARE": "1", "QT_QPA_PLATFORM": "xcb"}

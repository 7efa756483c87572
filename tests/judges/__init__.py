"""Independent playlist judges: npm `hls-parser` in strict mode (tests/judges/judge.mjs, installed
by `.ci/bootstrap --test` with `npm ci` here) and the Python `m3u8` library. A playlist a real
client's parser refuses is a defect, even where the RFC only says SHOULD."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import m3u8
import pytest

HERE = Path(__file__).resolve().parent
NODE = shutil.which("node")

AVAILABLE = NODE is not None and (HERE / "node_modules" / "hls-parser").is_dir()
needs_hls_parser = pytest.mark.skipif(
    not AVAILABLE,
    reason="hls-parser not installed (run .ci/bootstrap --test, or: cd tests/judges && npm ci)",
)


def hls_parser_strict(texts: list[str]) -> list[dict]:
    """Each playlist through hls-parser with strictMode: {"ok": True, ...} or {"ok": False, "error"}."""
    done = subprocess.run([NODE, str(HERE / "judge.mjs")], input=json.dumps(texts), capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout)


def assert_every_judge_accepts(texts: list[str]) -> None:
    """hls-parser (strict) and m3u8 both parse every playlist; the failures are listed together."""
    failures = [f"hls-parser: {r['error']}\n{text}" for text, r in zip(texts, hls_parser_strict(texts)) if not r["ok"]]
    for text in texts:
        try:
            m3u8.loads(text)
        except Exception as e:  # noqa: BLE001 - any refusal is the finding
            failures.append(f"m3u8: {e}\n{text}")
    assert not failures, "\n\n".join(failures[:3])

"""Assertions the CLI tests share."""

from __future__ import annotations


def assert_one_line_error(stderr: str, stdout: str = "") -> str:
    """Bad input: exactly one line on stderr starting with "error:", and no traceback anywhere."""
    lines = stderr.strip("\n").splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in stderr and "Traceback" not in stdout
    return lines[0]

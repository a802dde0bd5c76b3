"""Helpers shared by the tests that run ``mapcvd`` commands in-process (through ``mapcvd.cli.main``)."""

from __future__ import annotations

import pytest

from mapcvd.cli import main

#: The first bytes of every PNG file.
PNG = b"\x89PNG\r\n\x1a\n"


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run ``mapcvd ARGS`` in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def assert_one_line_error(code, err, *words):
    """A non-zero exit with exactly one line ``mapcvd: error: ...`` naming every one of ``words``."""
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mapcvd: error:") and "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]

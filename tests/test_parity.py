"""The command line and the library are one run: the same recordings give the same results either way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import RECORDINGS, ROOT, stable

import streamprep
from streamprep.values.published import VOLATILE_FIELDS


def _cli(source: Path, fps: float, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamprep",
            "run",
            str(source),
            "--fps",
            str(fps),
            "--out",
            str(out),
            "--device",
            "test",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row in rows:
        for key in VOLATILE_FIELDS:
            row.pop(key)
    return rows


@pytest.mark.parametrize(("name", "fps"), [("demo_720p.mp4", 2.0), ("vfr_720p.mp4", 3.0)])
def test_run_and_stream_give_identical_results(name: str, fps: float, tmp_path: Path) -> None:
    source = RECORDINGS / name
    from_cli = _cli(source, fps, tmp_path)
    from_api = stable(list(streamprep.stream(str(source), fps=fps)))
    assert len(from_cli) > 5
    assert [r["seq"] for r in from_cli] == list(range(len(from_cli)))
    assert from_api == from_cli

"""The one run owner (streamprep.run.lifetime.Run): the command line and the library refuse the same configs,
and every sink it opened is shut down however the run ends."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RECORDINGS, ROOT

import streamprep
from streamprep.config.schema import parse
from streamprep.run.lifetime import Run
from streamprep.sinks.memory import MemorySink
from streamprep.values.errors import ConfigError, ModelError, SinkError

PAN = str(RECORDINGS / "pan_1080p.mp4")
DEMO = str(RECORDINGS / "demo_720p.mp4")


def _cli_error(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "run", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    return proc.stderr.strip().splitlines()[-1].removeprefix("streamprep: error: ")


def test_the_library_refuses_what_run_refuses(tmp_path: Path) -> None:
    """The same preflight: a config over [limits] is refused by `run` and by streamprep.stream(), same words."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[limits]\nmax_sources = 2\n")
    said = _cli_error(PAN, PAN, PAN, "--config", str(cfg))
    with pytest.raises(ConfigError) as caught:
        next(iter(streamprep.stream([PAN, PAN, PAN], limits={"max_sources": 2})))
    assert str(caught.value) == said
    assert said.startswith("limits.max_sources: 3 sources")


def test_a_model_that_cannot_be_loaded_is_refused_by_both_with_the_same_words() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamprep", "run", DEMO, "--model", "fastestdet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 4, proc.stderr
    said = proc.stderr.strip().splitlines()[-1].removeprefix("streamprep: error: ")

    async def enter() -> None:
        async with streamprep.open(DEMO, model="fastestdet"):
            pytest.fail("entered with a model that does not exist")

    with pytest.raises(ModelError) as caught:
        asyncio.run(enter())
    assert str(caught.value) == said and "did you mean fastestdet_352" in said


class _Tracked(MemorySink):
    def __init__(self, name: str, fail: bool = False) -> None:
        super().__init__()
        self.name = name
        self.fail = fail
        self.shut = 0

    async def open(self) -> None:
        if self.fail:
            raise SinkError(f"{self.name}: cannot open")

    async def shutdown(self) -> None:
        self.shut += 1


def test_sinks_opened_before_one_that_fails_are_shut_down() -> None:
    first, broken, never = _Tracked("first"), _Tracked("broken", fail=True), _Tracked("never")

    async def enter() -> None:
        async with Run(parse({"sources": [DEMO], "fps": 1}), [first, broken, never]):
            pytest.fail("entered although a sink could not open")

    with pytest.raises(SinkError, match="broken: cannot open"):
        asyncio.run(enter())
    assert first.shut == 1 and broken.shut == 0 and never.shut == 0


def test_a_run_reports_and_leaves_every_sink_shut_down() -> None:
    sink = _Tracked("memory")

    async def main() -> None:
        async with Run(parse({"sources": [DEMO], "fps": 1}), [sink]) as run:
            report = await run.serve()
        assert report.snapshot.sources[0].processed == sink.count == 12

    asyncio.run(main())
    assert sink.shut >= 1 and sink.closed

"""The examples in examples/ run as a user runs them, from another directory, and do what they say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
from conftest import ROOT

EXAMPLES = ROOT / "examples"


def example(name: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=180, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_detect(tmp_path: Path) -> None:
    lines = example("detect.py", "--fps", "1", cwd=tmp_path).splitlines()
    assert len(lines) == 12
    assert "person" in lines[0] and "cat" in lines[5] and "cup" in lines[9]


def test_cameras(tmp_path: Path) -> None:
    out = example("cameras.py", "--results", "10", cwd=tmp_path)
    ends = [line for line in out.splitlines() if line.startswith("at the end:")]
    assert len(ends) == 2
    for line in ends:
        sampled = int(line.split(" sampled")[0].rsplit(" ", 1)[1])
        processed = int(line.split(" processed")[0].rsplit(" ", 1)[1])
        dropped = int(line.split(" dropped")[0].rsplit(" ", 1)[1])
        assert sampled == processed + dropped


def test_own_inference(tmp_path: Path) -> None:
    lines = example("own_inference.py", cwd=tmp_path).splitlines()
    assert len(lines) == 12
    assert "person" in lines[0] and "cat" in lines[5] and "cup" in lines[10]
    assert all("of 1280x720" in line for line in lines)


def test_custom_source(tmp_path: Path) -> None:
    out = example("custom_source.py", cwd=tmp_path)
    calls = [line for line in out.splitlines() if line.startswith("callback:")]
    assert len(calls) == 3 and "person" in calls[0] and "cat" in calls[1] and "cup" in calls[2]
    assert "3 results from 3 photos" in out


def test_annotate(tmp_path: Path) -> None:
    example("annotate.py", str(ROOT / "recordings" / "demo_720p.mp4"), "out.mp4", "--fps", "2", cwd=tmp_path)
    with av.open(str(tmp_path / "out.mp4")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 24
    image = frames[0].to_ndarray(format="bgr24")
    green = (image[:, :, 1] > 200) & (image[:, :, 0] < 80) & (image[:, :, 2] < 80)
    assert green.sum() > 1000, "boxes are drawn"


def test_readme_stream() -> None:
    lines = example("readme_stream.py", cwd=ROOT).splitlines()
    assert len(lines) == 12
    assert lines[0] == "demo_720p 0.0 [('person', 0.95)]"
    assert lines[4].startswith("demo_720p 4.0 [('cat',") and lines[8].startswith("demo_720p 8.0 [('cup',")


def test_readme_open() -> None:
    lines = example("readme_open.py", cwd=ROOT).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("demo_720p online") and lines[1].startswith("lavfi_testsrc2_size_1280x720_rate_30")
    assert all(" sampled, " in line and " processed, " in line for line in lines)


def test_readme_tensors() -> None:
    lines = example("readme_tensors.py", cwd=ROOT).splitlines()
    assert lines == [f"(4, 256, 256, 3) uint8 demo_720p {pts} [[320. 180. 960. 540.]]" for pts in ("0.0", "4.0", "8.0")]

"""The benchmarks still run against the code as it is now (each with its smallest settings, a smoke run:
the figures themselves are meaningless at this size). Slow: ``pytest -m slow tests/test_bench.py``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

QUICK = {
    "colour_parity": [],
    "inference_throughput": ["--rounds", "2", "--runs", "1", "--repeats", "1", "--sources", "1,2", "--batches", "1"],
    "live_cpu": ["--cameras", "1", "--seconds", "2", "--warmup", "1", "--repeats", "1"],
    "live_decode_settings": ["--seconds", "2", "--rounds", "1"],
    "preprocess_speed": ["--repeats", "2", "--warmup", "1"],
    "regions": ["--max-frames", "2", "--repeats", "1", "--cameras", "1", "--fps", "5"],
    "replay_throughput": ["--repeats", "1", "--fps", "5"],
    "tta_cost": ["--repeats", "1"],
    "workers": ["--cameras", "2", "--workers", "1", "--repeats", "1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("bench", sorted(QUICK))
def test_the_benchmark_runs_and_prints_its_table(bench: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{bench}.py"), *QUICK[bench]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "|---" in proc.stdout, "a comparison table"

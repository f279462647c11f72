"""Rebuild tests/golden/*.jsonl: the results streamprep gives for the bundled recordings.

Run after a deliberate change to the recordings, models or decoders, then review the diff:
    .venv/bin/python scripts/make_golden.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from streamprep.values.published import VOLATILE_FIELDS

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    ("demo_720p", "ssd_mobilenet_v2_fpnlite_256_int8", "ssd"),
    ("demo_720p", "fastestdet_352", "fastestdet"),
    ("pan_1080p", "ssd_mobilenet_v2_fpnlite_256_int8", "ssd"),
    ("vfr_720p", "ssd_mobilenet_v2_fpnlite_256_int8", "ssd"),
]


def main() -> None:
    out_dir = ROOT / "tests" / "golden"
    out_dir.mkdir(exist_ok=True)
    for clip, model, short in CASES:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "streamprep",
                "run",
                str(ROOT / "recordings" / f"{clip}.mp4"),
                "--fps",
                "2",
                "--model",
                str(ROOT / "streamprep" / "models" / f"{model}.onnx"),
                "--device",
                "test",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows = [json.loads(line) for line in proc.stdout.splitlines()]
        for row in rows:
            for key in VOLATILE_FIELDS:
                row.pop(key)
        target = out_dir / f"{clip}.{short}.jsonl"
        target.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        print(f"{target.relative_to(ROOT)}: {len(rows)} results")


if __name__ == "__main__":
    main()

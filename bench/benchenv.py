"""What every benchmark prints about the run: the code measured, the machine, the libraries, the load."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import onnxruntime as ort

import streamprep

ROOT = Path(__file__).resolve().parent.parent


def revision() -> str:
    """The streamprep code measured: where it was imported from, its commit, and local changes."""
    package = Path(streamprep.__file__).resolve().parent
    where = "" if package.parent == ROOT else f" imported from {package}"

    def git(*args: str) -> str:
        cmd = ["git", "-C", str(package.parent), *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    try:
        commit = git("rev-parse", "--short", "HEAD").strip()
        modified = bool(git("status", "--porcelain", "--", "streamprep").strip())
    except (OSError, subprocess.CalledProcessError):
        return f"unknown commit (not a git checkout){where}"
    return f"commit {commit}" + (" with uncommitted changes in streamprep/" if modified else "") + where


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}, Python {platform.python_version()}"


def versions() -> str:
    return (
        f"av {av.__version__} (libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}), "
        f"cv2 {cv2.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}"
    )


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"

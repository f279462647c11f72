"""``[model] nice``: inference on a thread of its own at a lower CPU priority, with the same results."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest
from conftest import SSD

from streamprep.config.schema import parse
from streamprep.inference.onnx import OnnxEngine
from streamprep.values.errors import ConfigError


def nice_of(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
def test_inference_runs_below_normal_priority() -> None:
    tensor = np.random.default_rng(0).integers(0, 256, (1, 256, 256, 3), dtype=np.uint8)
    before = {t.native_id for t in threading.enumerate()}
    nice = OnnxEngine(SSD, intra_op_threads=2, nice=7)  # two threads: ONNX Runtime starts one
    plain = OnnxEngine(SSD)
    for a, b in zip(nice.run(tensor), plain.run(tensor), strict=True):
        np.testing.assert_array_equal(a, b)
    lanes = [t for t in threading.enumerate() if t.native_id not in before and t.name.startswith("inference ")]
    assert len(lanes) == 1, "one thread of its own for the engine with nice"
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert lanes[0].native_id is not None and nice_of(lanes[0].native_id) == min(19, base + 7)
    assert nice_of(threading.get_native_id()) == base, "the calling thread keeps its priority"
    lowered = [int(tid) for tid in os.listdir("/proc/self/task") if nice_of(int(tid)) == min(19, base + 7)]
    assert len(lowered) >= 2, "the ONNX Runtime thread the lane started inherited its nice value"


def test_nice_is_checked() -> None:
    assert parse({"model": {"nice": 10}}).model.nice == 10
    with pytest.raises(ConfigError, match="nice"):
        parse({"model": {"nice": 20}})

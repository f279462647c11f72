#!/usr/bin/env bash
# GPU check: on a machine with an NVIDIA GPU, does streamprep use it? One run, one table.
#
#   bench/gpu_check.sh                 # uses .venv/bin/python, or $PYTHON
#
# Checks, each a row of the table (check | result | detail):
#   1. the GPU and driver (nvidia-smi);
#   2. PyAV's FFmpeg has CUDA, and streamprep's start-up probe (hwaccel = "cuda") chooses it;
#   3. NVDEC decode of recordings/pan_1080p.mp4 through streamprep's Decoder: every frame decoded on the
#      device (NV12), Y/U/V planes bit-identical to software decoding, ms per frame against software;
#   4. streamprep's file source with hwaccel = "cuda" at --fps 5 (frame skipping on): the same selected
#      frames (pts, planes) as software;
#   5. ONNX Runtime's CUDA and TensorRT execution providers: available, start for the default model, outputs
#      against the CPU provider, ms per run;
#   6. in-graph preprocessing on the GPU: the preprocessing-only graph for FastestDet (uint8 BGR frames ->
#      float32 NCHW) in a CUDA-only session with CPU fallback disabled (so every node runs on the GPU),
#      outputs against the CPU, and FastestDet loaded by streamprep with in_graph = true on CUDA.
# The GPU build of ONNX Runtime is `onnxruntime-gpu` (it replaces `onnxruntime` in the venv); TensorRT also
# needs NVIDIA's TensorRT libraries. A check that cannot run says why in its row; the exit status is the
# number of failed checks (0: the GPU paths all work).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if ! command -v "$PYTHON" >/dev/null 2>&1 && [ ! -x "$PYTHON" ]; then
    echo "gpu_check: no python at $PYTHON (make the venv: python3 -m venv .venv && .venv/bin/pip install -e .)" >&2
    exit 2
fi
SMI="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
SMI_RC=$?
export GPU_CHECK_SMI="$SMI" GPU_CHECK_SMI_RC="$SMI_RC"
exec "$PYTHON" - <<'PY'
from __future__ import annotations

import asyncio
import os
import platform
import time
import traceback
from fractions import Fraction
from pathlib import Path

import numpy as np

rows: list[tuple[str, str, str]] = []


def row(check: str, ok: bool | None, detail: str) -> None:
    rows.append((check, {True: "ok", False: "FAILED", None: "skipped"}[ok], detail.replace("|", "/")))


def guarded(check: str, fn) -> None:  # type: ignore[no-untyped-def]
    try:
        fn()
    except Exception as exc:  # every check reports, none stops the others
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        row(check, False, last[:300])


ROOT = Path.cwd()
CLIP = ROOT / "recordings" / "pan_1080p.mp4"
smi, smi_rc = os.environ.get("GPU_CHECK_SMI", ""), os.environ.get("GPU_CHECK_SMI_RC", "1")
row("GPU (nvidia-smi)", smi_rc == "0" and bool(smi), smi or "nvidia-smi not found")

import av  # noqa: E402
from av.codec.hwaccel import hwdevices_available  # noqa: E402

import streamprep  # noqa: E402
from streamprep.sources import hwdecode  # noqa: E402
from streamprep.sources.file import FileSource, decode, open_container, to_image  # noqa: E402
from streamprep.sources.skipping import DecodeOptions  # noqa: E402


def planes(image: np.ndarray, fmt: str) -> list[np.ndarray]:
    h, w = image.shape[0] * 2 // 3, image.shape[1]
    chroma = image[h:].reshape(-1)
    if fmt == "nv12":
        uv = chroma.reshape(h // 2, w // 2, 2)
        return [image[:h], uv[..., 0], uv[..., 1]]
    q = (h // 2) * (w // 2)
    return [image[:h], chroma[:q].reshape(h // 2, w // 2), chroma[q:].reshape(h // 2, w // 2)]


class Counts:
    decoded = 0
    corrupt = 0


def decode_all(device: str | None) -> tuple[list[tuple[int, list[np.ndarray], str]], float, bool]:
    container, stream = open_container(CLIP, "gpu-check")
    decoder = hwdecode.Decoder(stream, device, "gpu-check")
    out = []
    t0 = time.perf_counter()
    try:
        for frame in decode(container, stream, Counts(), decoder=decoder):
            image, fmt = to_image(frame)
            out.append((frame.pts, planes(image, fmt), fmt))
    finally:
        container.close()
    return out, time.perf_counter() - t0, bool(decoder.codec_context.is_hwaccel)


def check_probe() -> None:
    have = hwdevices_available()
    row("PyAV FFmpeg device types", "cuda" in have, f"av {av.__version__}: {', '.join(have)}")
    choice = hwdecode.probe("cuda")
    row("streamprep probe (hwaccel = cuda)", choice.device == "cuda", choice.reason)


def check_nvdec() -> None:
    sw, sw_s, _ = decode_all(None)
    hw, hw_s, on_device = decode_all("cuda")
    formats = sorted({fmt for _, _, fmt in hw})
    same = len(sw) == len(hw) and all(
        a[0] == b[0] and all(np.array_equal(x, y) for x, y in zip(a[1], b[1])) for a, b in zip(sw, hw)
    )
    row(
        "NVDEC decode (pan_1080p, every frame)",
        on_device and same and formats == ["nv12"],
        f"{len(hw)} frames, on device: {on_device}, format {'/'.join(formats)}, planes identical to software: "
        f"{same}; {1000 * hw_s / max(len(hw), 1):.2f} ms/frame (software {1000 * sw_s / max(len(sw), 1):.2f}, "
        "incl. download and copy)",
    )


def check_source() -> None:
    async def frames(opts: DecodeOptions) -> list[tuple[float | None, list[np.ndarray], str]]:
        src = FileSource("gpu-check", CLIP, 5, decoding=opts)
        return [(f.pts, planes(f.image, f.pixel_format), f.pixel_format) async for f in src.frames()]

    sw = asyncio.run(frames(DecodeOptions()))
    hw = asyncio.run(frames(DecodeOptions(hwaccel="cuda")))
    formats = sorted({fmt for _, _, fmt in hw})
    same = len(sw) == len(hw) and all(
        a[0] == b[0] and all(np.array_equal(x, y) for x, y in zip(a[1], b[1])) for a, b in zip(sw, hw)
    )
    row(
        "file source, hwaccel cuda, --fps 5, skipping",
        same and len(hw) == 50 and formats == ["nv12"],
        f"{len(hw)} frames, format {'/'.join(formats)} (nv12: decoded on the GPU), same as software: {same}",
    )


def check_providers() -> None:
    import onnxruntime as ort

    available = ort.get_available_providers()
    row("ONNX Runtime providers", "CUDAExecutionProvider" in available, f"onnxruntime {ort.__version__}: {', '.join(available)}")
    from streamprep.config.schema import ModelConfig
    from streamprep.inference.model import load_model

    cpu = load_model(ModelConfig())
    tensor = cpu.preprocessor.new_batch(1)
    container, stream = open_container(CLIP, "gpu-check")
    image, fmt = to_image(next(container.decode(stream)))
    container.close()
    cpu.preprocessor.into(image, tensor[0], fmt)
    reference = cpu.engine.run(tensor)
    for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        if provider not in available:
            row(f"{provider} (default model)", False, "not in this onnxruntime build (install onnxruntime-gpu)")
            continue

        def one(provider: str = provider) -> None:
            model = load_model(ModelConfig(providers=(provider, "CPUExecutionProvider")))
            used = model.engine.info.providers
            model.engine.run(tensor)
            t0 = time.perf_counter()
            for _ in range(20):
                out = model.engine.run(tensor)
            ms = (time.perf_counter() - t0) * 50
            diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) for a, b in zip(out, reference))
            row(f"{provider} (default model)", used[0] == provider, f"session providers {', '.join(used)}; {ms:.2f} ms/run; max |diff| vs CPU {diff:.3g}")

        guarded(f"{provider} (default model)", one)


def check_in_graph() -> None:
    import onnxruntime as ort

    from streamprep.config.schema import ModelConfig
    from streamprep.inference.model import load_model
    from streamprep.preprocess import ingraph
    from streamprep.preprocess.spec import SpecOverrides

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        row("in-graph preprocessing on the GPU", False, "no CUDA execution provider in this onnxruntime build")
        return
    fastestdet = ROOT / "streamprep" / "models" / "fastestdet_352.onnx"
    cpu_model = load_model(ModelConfig(path=fastestdet))
    graph = ingraph.preprocess_model(cpu_model.spec, batch=1)
    frames = np.random.default_rng(0).integers(0, 256, (1, cpu_model.spec.height, cpu_model.spec.width, 3), dtype=np.uint8)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    gpu = ort.InferenceSession(graph, sess_options=options, providers=["CUDAExecutionProvider"])
    cpu = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    a = gpu.run(None, {ingraph.FRAMES_INPUT: frames})[0]
    b = cpu.run(None, {ingraph.FRAMES_INPUT: frames})[0]
    row(
        "in-graph preprocessing, CUDA only (no CPU fallback)",
        gpu.get_providers()[0] == "CUDAExecutionProvider",
        f"every node on {gpu.get_providers()[0]}; output {a.shape} {a.dtype}, max |diff| vs CPU {float(np.max(np.abs(a - b))):.3g}",
    )
    wrapped = load_model(
        ModelConfig(path=fastestdet, providers=("CUDAExecutionProvider", "CPUExecutionProvider"), preprocess=SpecOverrides(in_graph=True))
    )
    row(
        "FastestDet with in_graph = true on CUDA",
        wrapped.in_graph and wrapped.engine.info.providers[0] == "CUDAExecutionProvider",
        f"in graph: {wrapped.in_graph}; providers {', '.join(wrapped.engine.info.providers)}",
    )


guarded("PyAV / streamprep probe", check_probe)
guarded("NVDEC decode (pan_1080p, every frame)", check_nvdec)
guarded("file source, hwaccel cuda, --fps 5, skipping", check_source)
guarded("ONNX Runtime providers", check_providers)
guarded("in-graph preprocessing on the GPU", check_in_graph)

print(f"streamprep {streamprep.__version__} from {Path(streamprep.__file__).parent}; Python {platform.python_version()}")
print()
print("| check | result | detail |")
print("|---|---|---|")
for check, result, detail in rows:
    print(f"| {check} | {result} | {detail} |")
raise SystemExit(sum(result == "FAILED" for _, result, _ in rows))
PY

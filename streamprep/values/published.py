"""The published form of a :class:`~streamprep.values.frames.Result`: one JSON object per sampled frame.

Fields that vary between two replays of the same file are ``id`` (it names the run), ``captured_at``,
``batch_size`` (which frames share a batch depends on timing) and ``timings_ms``;
everything else is deterministic. See the README for the field reference. Version 2 added
``capture_clock`` and counts ``captured_at`` and ``timings_ms.age`` from the frame's capture (version 1:
from its decoding). Version 3 adds ``regions`` (the boxes the model looked at for the frame), a detection's
``carried`` (present, and true, when it repeats an earlier frame's detection), and what second models
(``[[model.then]]``) made of a detection's crop: its ``classes``, nested ``detections`` or ``outputs``, each
only on the detections a second model looked at.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamprep.values.frames import Detection, Result

SCHEMA = "streamprep.result/3"  # version 3 adds regions, and a detection's carried, classes, detections, outputs
SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "result-3.json"  # the JSON Schema of SCHEMA
VOLATILE_FIELDS = ("id", "captured_at", "batch_size", "timings_ms")


def result_to_dict(result: Result, device: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "id": result.id,
        "device": device,
        "source": result.source,
        "seq": result.seq,
        "frame_index": result.frame_index,
        "pts": None if result.pts is None else round(result.pts, 6),
        "captured_at": round(result.captured_at, 6),
        "capture_clock": result.capture_clock,
        "model": result.model,
        "frame": {"width": result.width, "height": result.height},
        "kind": result.kind,
    }
    out["regions"] = [list(r) for r in result.regions]
    if result.detections is not None:
        out["detections"] = [detection_to_dict(d) for d in result.detections]
    if result.classifications is not None:
        out["classifications"] = [
            {"label": c.label, "class_id": c.class_id, "score": c.score} for c in result.classifications
        ]
    if result.outputs is not None:
        out["outputs"] = result.outputs
    t = result.timings
    out["batch_size"] = result.batch_size
    out["timings_ms"] = {
        "queue": round(t.queue_ms, 3),
        "preprocess": round(t.preprocess_ms, 3),
        "inference": round(t.inference_ms, 3),
        "age": round(t.age_ms, 3),
        "total": round(t.total_ms, 3),
    }
    return out


def detection_to_dict(d: Detection) -> dict[str, Any]:
    """One detection; what second models made of its crop only where one looked at it."""
    out: dict[str, Any] = {
        "label": d.label,
        "class_id": d.class_id,
        "score": d.score,
        "box": [d.box.x1, d.box.y1, d.box.x2, d.box.y2],
        "track_id": d.track_id,
    }
    if d.carried:
        out["carried"] = True
    if d.classes is not None:
        out["classes"] = [
            {"model": c.model, "label": c.label, "class_id": c.class_id, "score": c.score} for c in d.classes
        ]
    if d.detections is not None:
        out["detections"] = [detection_to_dict(n) for n in d.detections]
    if d.outputs is not None:
        out["outputs"] = d.outputs
    return out


def encode(result: Result, device: str) -> bytes:
    return json.dumps(result_to_dict(result, device), separators=(",", ":")).encode()

"""The other commands: ``top``, ``inspect``, ``preprocess``, ``record``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streamprep.values.errors import ConfigError, SinkError, StreamprepError

if TYPE_CHECKING:
    pass

from streamprep.cli._args import _model_config

log = logging.getLogger("streamprep")


def _top(args: argparse.Namespace) -> int:
    from rich.console import Console

    from streamprep.ops.dashboard import top
    from streamprep.ops.service import default_status_socket

    path = args.socket or default_status_socket() or Path("/run/streamprep/status.sock")
    if not path.exists():
        raise ConfigError(f"top: no status socket at {path}: is streamprep running with status.socket set?")
    try:
        stayed = asyncio.run(top(path, Console(), args.interval))
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how one leaves top
    except (OSError, TimeoutError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise StreamprepError(f"top: cannot read {path}: {reason} (is the daemon running?)") from None
    if not stayed:
        print(f"streamprep top: the daemon at {path} went away", file=sys.stderr)
    return 0


def _preprocess(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from streamprep.inference.model import load_model
    from streamprep.preprocess.kernels import Preprocessor
    from streamprep.sources.file import frame_at
    from streamprep.values.frames import Image

    model = load_model(_model_config(args))
    preprocessor = Preprocessor(model.spec)
    shown = ""
    if args.at is not None:
        f = frame_at(args.image, args.at)
        tensor = preprocessor.batch_for(preprocessor.new_batch(1), [(f.width, f.height, None)])
        geometry = preprocessor.into(f.image, tensor[0], f.pixel_format, None, f.color_matrix, f.color_range)
        shown = f"frame at {f.pts:.3f} s ({f.color_matrix} {f.color_range} range); "
    else:
        image: Image | None = cv2.imread(str(args.image), cv2.IMREAD_COLOR)  # type: ignore[assignment]
        if image is None:
            reason = "no such file" if not args.image.exists() else "not an image OpenCV can read (a video needs --at)"
            raise ConfigError(f"image {args.image}: {reason}")
        tensor = preprocessor.batch_for(preprocessor.new_batch(1), [(image.shape[1], image.shape[0], None)])
        geometry = preprocessor.into(image, tensor[0])
    try:
        np.save(args.out, tensor)
    except OSError as exc:
        raise SinkError(f"output file {args.out}: {exc.strerror or exc}") from None
    print(
        f"{args.out}: {list(tensor.shape)} {tensor.dtype} for input {model.spec.input_name!r}; {shown}"
        f"source {geometry.src_width}x{geometry.src_height} crop {geometry.crop_width}x{geometry.crop_height}"
        f"+{geometry.crop_x}+{geometry.crop_y} resized {geometry.resized_width}x{geometry.resized_height}"
        f" at +{geometry.pad_x}+{geometry.pad_y}",
        file=sys.stderr,
    )
    return 0


def _record(args: argparse.Namespace) -> int:
    from streamprep.sources.live import LiveOptions
    from streamprep.sources.record import record

    if not args.seconds > 0:
        raise ConfigError("record: --seconds must be positive")
    options = LiveOptions(transport=args.transport, open_timeout=args.timeout, stall_timeout=args.timeout)
    done = record(args.source, args.seconds, args.out, options)
    print(f"{done.path}: {done.packets} frames, {done.seconds:.2f} s", file=sys.stderr)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from streamprep.inference.model import bundled_models, load_model

    if args.list:
        models = bundled_models()
        if args.json:
            print(json.dumps([m.describe() for m in models], indent=2))
            return 0
        rows = [("name", "task", "input", "labels", "licence")]
        rows += [(m.name, m.task, m.input, str(m.labels), m.licence) for m in models]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            print("  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip())
        return 0
    desc = load_model(_model_config(args)).describe()
    if args.json:
        print(json.dumps(desc, indent=2))
        return 0
    print(f"model     {desc['model']}")
    print(f"providers {', '.join(desc['providers'])}")
    for i in desc["inputs"]:
        print(f"input     {i}")
    for o in desc["outputs"]:
        print(f"output    {o}")
    print(f"decoder   {desc['decoder']} (max batch {desc['max_batch']})")
    print(f"in graph  {'yes: ONNX Runtime casts, orders, scales and lays out' if desc['in_graph'] else 'no'}")
    print(f"labels    {desc['labels'] or 'none: classes are reported as class_N'}")
    print("preprocess")
    for key, entry in desc["preprocess"].items():
        value = entry["value"]
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        mark = "  ASSUMED: declare it in the sidecar or [model.preprocess]" if entry["assumed"] else ""
        print(f"  {key:<16} {shown:<32} from {entry['from']}{mark}")
    for i, then in enumerate(desc["then"]):
        print(f"then {i}    {then['summary']}")
    return 0

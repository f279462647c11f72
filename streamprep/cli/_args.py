"""The command line's words: the parser, and the config its flags make (with ``--config`` and its overrides)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamprep.inference.decoders.names import DECODERS
from streamprep.values.errors import ConfigError
from streamprep.version import __version__

if TYPE_CHECKING:
    from streamprep.config import schema as config_mod
    from streamprep.inference.settings import ModelConfig


log = logging.getLogger("streamprep")


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise ConfigError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(prog="streamprep", description="Streaming preprocessor for computer vision at the edge.")
    p.add_argument("--debug", action="store_true", help="log debug detail and show tracebacks")
    p.add_argument("--version", action="version", version=f"streamprep {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    options = _ArgumentParser(add_help=False)
    options.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="video file, stream URL, /dev/videoN or lavfi:GRAPH; SOURCE arguments replace the config's "
        "[[sources]] (a log line says so)",
    )
    options.add_argument("--config", type=Path, help="TOML config file (flags override it)")
    options.add_argument(
        "--model", type=Path, help="ONNX model, or a bundled model's name (default: the bundled SSD detector)"
    )
    options.add_argument("--fps", type=float, help="sample every source to this frame rate")
    options.add_argument(
        "--regions",
        choices=("full", "tiles", "motion"),
        metavar="MODE",
        help="what the model looks at: full (the whole frame), tiles or motion (see docs/regions.md)",
    )
    options.add_argument("--batch", type=int, help="max batch size")
    options.add_argument("--max-wait-ms", type=float, help="max time a batch waits to fill")
    options.add_argument("--decoder", help=f"{', '.join(DECODERS)}")
    options.add_argument("--score-threshold", type=float, help="drop detections scoring less (0..1)")
    options.add_argument("--out", help="JSON lines to FILE, or - for stdout (default when no --mqtt)")
    options.add_argument("--mqtt", help="publish to mqtt://[USER[:PASSWORD]@]HOST[:PORT]")
    options.add_argument(
        "--annotate", type=Path, metavar="OUT.mp4", help="also write the sampled frames with their boxes drawn"
    )
    options.add_argument("--device", help="device name used in MQTT topics (default: host name)")
    options.add_argument("--state-dir", type=Path, help="where undelivered MQTT results are spooled across restarts")
    options.add_argument(
        "--realtime", action="store_true", default=None, help="pace files like live cameras (latest frame wins)"
    )
    options.add_argument(
        "--events", action="store_true", default=None, help="track objects and publish events ([events] for more)"
    )
    options.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics (e.g. 127.0.0.1:9108)")
    options.add_argument("--status-socket", type=Path, help="unix socket for `streamprep top`")
    options.add_argument("--log-format", choices=("auto", "text", "journal", "json"), help="log line format")
    options.add_argument(
        "--credentials",
        type=Path,
        metavar="DIR",
        help="where the credential files are (as systemd's LoadCredential= puts them in $CREDENTIALS_DIRECTORY)",
    )

    run = sub.add_parser("run", parents=[options], help="run sources through a model and publish the results")
    run.add_argument("--dashboard", action="store_true", help="draw a live dashboard on the terminal")
    run.add_argument("--workers", type=int, metavar="N", help="N worker processes share the sources (all cores)")
    run.add_argument("--worker", help=argparse.SUPPRESS)  # K/N: this process is worker K of N (streamprep.ops.workers)
    run.add_argument("--worker-dir", type=Path, help=argparse.SUPPRESS)

    chk = sub.add_parser(
        "check",
        parents=[options],
        help="validate everything run would use (config, models, sources, credentials, outputs); start nothing",
    )
    chk.add_argument("--strict", action="store_true", help="warnings (assumed preprocessing, ...) fail the check")
    chk.add_argument(
        "--probe-sources",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="open every camera and stream once, 3 s at most (default; --no-probe-sources skips it)",
    )

    top = sub.add_parser("top", help="live dashboard of a running daemon, through its status socket")
    top.add_argument("--socket", type=Path, help="status socket (default: $RUNTIME_DIRECTORY/status.sock)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")

    flt = sub.add_parser("fleet", help="every device and source publishing to a broker, from its retained statuses")
    flt.add_argument("--mqtt", metavar="URL", help="the broker (default: [output.mqtt] of --config)")
    flt.add_argument("--config", type=Path, help="take the broker, credentials and TLS from [output.mqtt]")
    flt.add_argument("--prefix", help="topic prefix (default: the config's, else streamprep)")
    flt.add_argument("--watch", action="store_true", help="keep the table live until Ctrl-C")
    flt.add_argument("--json", action="store_true", help="print JSON")
    flt.add_argument("--timeout", type=float, default=5.0, help="seconds to collect retained statuses at most")

    ins = sub.add_parser("inspect", help="show a model's inputs, outputs and the preprocessing streamprep applies")
    ins.add_argument("model", type=Path, nargs="?", help="ONNX model (default: the bundled SSD detector)")
    ins.add_argument("--config", type=Path, help="apply [model] overrides from this config")
    ins.add_argument("--json", action="store_true", help="print JSON")
    ins.add_argument("--list", action="store_true", help="list the bundled models, the names --model takes")

    rec = sub.add_parser("record", help="copy a stream into a file without re-encoding, for replay")
    rec.add_argument("source", metavar="SOURCE", help="stream URL, camera or file")
    rec.add_argument("out", type=Path, metavar="OUT", help="output file (.mp4, .mkv, .ts)")
    rec.add_argument("--seconds", type=float, required=True, help="how much to record")
    rec.add_argument("--transport", choices=("tcp", "udp"), default="tcp", help="RTSP transport")
    rec.add_argument("--timeout", type=float, default=5.0, help="open and read timeout in seconds")

    prb = sub.add_parser("probe", help="find a model's colour order, scaling and resize from photos of known content")
    prb.add_argument("model", type=Path, help="ONNX model")
    prb.add_argument("--images", type=Path, help="probe photos with a manifest.json (default: the bundled ones)")
    prb.add_argument("--write", action="store_true", help="write the winning contract to <model>.streamprep.json")

    ver = sub.add_parser("verify", help="compare streamprep's tensor with your pipeline's and explain a difference")
    ver.add_argument("model", type=Path, help="ONNX model")
    ver.add_argument("--image", type=Path, required=True, help="the image your tensor was made from")
    ver.add_argument("--expect", type=Path, required=True, help="your pipeline's tensor for it (.npy)")
    ver.add_argument("--config", type=Path, help="apply [model] overrides from this config")

    pre = sub.add_parser("preprocess", help="write the exact tensor a model would receive for an image (.npy)")
    pre.add_argument("image", type=Path, help="an image, or a video with --at")
    pre.add_argument("--at", type=float, metavar="SECONDS", help="a video: the frame shown at this time")
    pre.add_argument("--model", type=Path, help="ONNX model (default: the bundled SSD detector)")
    pre.add_argument("--config", type=Path, help="apply [model] overrides from this config")
    pre.add_argument("--out", type=Path, required=True, help="where to write the tensor (.npy)")
    return p


def _config_from_args(args: argparse.Namespace, quiet: bool = False) -> config_mod.Config:
    """The config file with the flags on top. SOURCE arguments replace the file's [[sources]]."""
    from streamprep.config import schema as config_mod

    if getattr(args, "credentials", None) is not None:
        os.environ["CREDENTIALS_DIRECTORY"] = str(args.credentials)
    data: dict[str, Any] = config_mod.load(args.config) if args.config else {}
    flags: dict[str, Any] = {"model": {}, "output": {}}
    if getattr(args, "sources", None):
        flags["sources"] = list(args.sources)
        replaced = data.get("sources") or []
        if replaced and not quiet:
            log.warning(
                "%d SOURCE argument(s) given: they replace the %d [[sources]] of %s",
                len(args.sources),
                len(replaced),
                args.config,
            )
    if args.model is not None:
        flags["model"]["path"] = args.model
    for attr, key in (
        ("batch", "batch"),
        ("max_wait_ms", "max_wait_ms"),
        ("decoder", "decoder"),
        ("score_threshold", "score_threshold"),
    ):
        if getattr(args, attr, None) is not None:
            flags["model"][key] = getattr(args, attr)
    if getattr(args, "out", None) is not None:
        flags["output"]["out"] = args.out
    if getattr(args, "mqtt", None) is not None:
        flags["output"]["mqtt"] = {"url": args.mqtt}
    if getattr(args, "annotate", None) is not None:
        flags["output"]["annotate"] = args.annotate
    if getattr(args, "state_dir", None) is not None:
        flags["state_dir"] = args.state_dir
    if getattr(args, "fps", None) is not None:
        flags["fps"] = args.fps
    if getattr(args, "regions", None) is not None:
        flags["regions"] = args.regions
    if getattr(args, "device", None) is not None:
        flags["device"] = args.device
    if getattr(args, "realtime", None):
        flags["realtime"] = True
    if getattr(args, "events", None) and "events" not in data:
        flags["events"] = {}
    if getattr(args, "metrics", None):
        flags["metrics"] = {"listen": args.metrics}
    if getattr(args, "status_socket", None):
        flags["status"] = {"socket": args.status_socket}
    if getattr(args, "log_format", None):
        flags["logging"] = {"format": args.log_format}
    if getattr(args, "workers", None) is not None:
        flags["workers"] = args.workers
    where = f"{args.config}: " if args.config else ""
    return config_mod.parse(config_mod.merge(data, flags), where)


def _model_config(args: argparse.Namespace) -> ModelConfig:
    from streamprep.config import schema as config_mod

    data: dict[str, Any] = config_mod.load(args.config) if args.config else {}
    if args.model is not None:
        data = config_mod.merge(data, {"model": {"path": args.model}})
    return config_mod.parse(data, f"{args.config}: " if args.config else "").model

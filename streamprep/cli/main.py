"""Command line: ``streamprep run|check|top|fleet|inspect|preprocess|record|probe|verify``.

Maps every StreamprepError to one line and an exit code; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamprep.ops import logs
from streamprep.values.errors import ConfigError, SinkError, StreamprepError, internal_error
from streamprep.values.redact import redact_text
from streamprep.version import __version__

DECODER_NAMES = ("auto", "ssd", "yolov5", "yolov8", "grid", "yunet", "classification", "raw")  # see config.DECODERS

if TYPE_CHECKING:
    from streamprep.config import schema as config_mod
    from streamprep.ops.daemon import Signals

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
    options.add_argument("--decoder", help=f"{', '.join(DECODER_NAMES)}")
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
    chk.add_argument("--probe-sources", action="store_true", help="open every camera and stream once")

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


def _run(args: argparse.Namespace) -> int:
    from streamprep.flow.threads import limit_malloc_arenas
    from streamprep.ops.daemon import Signals, StartupInterrupted

    # a crash in native code (a decoder, the inference runtime) leaves every thread's Python stack in the log
    faulthandler.enable()
    signals = Signals()
    signals.install()  # before anything slow: a stop while models load exits cleanly
    limit_malloc_arenas()  # before any thread starts: memory stays flat on long runs
    try:
        return _serve(args, signals)
    except StartupInterrupted as exc:
        log.info("%s during start-up: stopped before processing anything", exc.signal.name)
        return 0
    finally:
        signals.ignore()  # the outcome is decided: a late signal must not change the exit status


def _serve(args: argparse.Namespace, signals: Signals) -> int:
    from streamprep.config.validate import preflight
    from streamprep.ops.daemon import Daemon, summarize

    cfg = _config_from_args(args)
    logs.setup(cfg.logging.format, "debug" if args.debug else cfg.logging.level, quiet=args.dashboard)
    log.info("streamprep %s starting (pid %d)", __version__, os.getpid())
    signals.checkpoint()
    to_stdout = cfg.output.out == "-" or (cfg.output.out is None and cfg.output.mqtt is None)
    if args.dashboard and to_stdout and sys.stdout.isatty():
        raise ConfigError("--dashboard draws on the terminal: send results elsewhere with --out FILE or --mqtt URL")
    reload = (lambda: _config_from_args(args, quiet=True)) if args.config is not None else None
    if args.worker is not None:  # worker K of N under `run --workers N`: its share of the sources
        from streamprep.ops import workers

        cfg, reload = workers.as_worker(cfg, args.worker, args.worker_dir, reload)
        args.dashboard = False
    count = cfg.workers
    found = preflight(cfg, checkpoint=signals.checkpoint)
    signals.checkpoint()
    for warning in found.warnings:
        log.warning("%s", warning)
    if found.fatal:
        for later in found.fatal[1:]:
            log.error("%s", later)
        raise found.fatal[0]
    if count > 1 and args.worker is None:
        from streamprep.ops import workers

        found.models.clear()  # checked; each worker loads its own
        return workers.supervise(cfg, count, args.argv, signals, reload, dashboard=args.dashboard)
    outcome = Daemon(cfg, signals, reload, dashboard=args.dashboard, models=found.models).run()
    summarize(outcome, quiet=args.dashboard)
    if args.worker is not None:  # its exact counts for the supervisor's summary
        workers.report_final(args.worker_dir, args.worker, outcome.report.snapshot if outcome.report else None)
    return outcome.exit_code


def _check(args: argparse.Namespace) -> int:
    """Frigate-style config check: the same validation as ``run`` (:mod:`streamprep.config.validate`), reported
    in full; warnings listed separately (fatal with ``--strict``)."""
    from streamprep.config.validate import preflight

    cfg = _config_from_args(args)
    found = preflight(cfg, probe_sources=args.probe_sources)
    for line in found.notes:
        print(line)
    if cfg.workers > 1:
        from streamprep.ops.workers import plan, shares

        ids = cfg.source_ids()
        for k, share in enumerate(shares(ids, plan(ids, cfg.workers), cfg.workers)):
            print(f"worker {k}: {', '.join(share) if share else 'no sources (not started)'}")
    for line in found.warnings:
        print(f"warning: {redact_text(line)}")
    problems = list(found.problems)
    if args.strict and found.warnings and not problems:
        more = f" (and {len(found.warnings) - 1} more warning(s) above)" if len(found.warnings) > 1 else ""
        problems.append(ConfigError(f"--strict: {found.warnings[0]}{more}"))
    if problems:
        for problem in problems[1:]:
            print(f"problem: {redact_text(str(problem))}")
        raise problems[0]
    print("config ok")
    return 0


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


def _model_config(args: argparse.Namespace) -> config_mod.ModelConfig:
    from streamprep.config import schema as config_mod

    data: dict[str, Any] = config_mod.load(args.config) if args.config else {}
    if args.model is not None:
        data = config_mod.merge(data, {"model": {"path": args.model}})
    return config_mod.parse(data, f"{args.config}: " if args.config else "").model


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
    from streamprep.inference.model import load_model

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
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    words = list(argv if argv is not None else sys.argv[1:])
    debug = "--debug" in words
    logs.setup("auto", "debug" if debug else "info")
    try:
        args = _parser().parse_args(words)
    except StreamprepError as exc:
        return _error_line(exc, debug)
    args.argv = words  # `run --workers N` starts its workers with it
    code = _dispatch(args, debug)
    if args.command == "run":
        from streamprep.flow.threads import exit_if_threads_linger

        exit_if_threads_linger(code)
    return code


def _error_line(exc: StreamprepError, debug: bool) -> int:
    if debug:
        log.exception("failed")
    print(f"streamprep: error: {redact_text(str(exc))}", file=sys.stderr)
    return exc.exit_code


def _dispatch(args: argparse.Namespace, debug: bool) -> int:
    """Run the command; errors become one line and an exit code."""
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "preprocess":
            return _preprocess(args)
        if args.command == "record":
            return _record(args)
        if args.command == "check":
            return _check(args)
        if args.command == "top":
            return _top(args)
        if args.command == "probe":
            from streamprep.tools import probe

            return probe.main(args)
        if args.command == "fleet":
            from streamprep.ops import fleet

            return fleet.main(args)
        if args.command == "verify":
            from streamprep.tools import verify

            return verify.main(args)
        return _inspect(args)
    except StreamprepError as exc:
        return _error_line(exc, debug)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`streamprep inspect | head`): nothing more to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if debug:
            log.exception("failed")
        print(f"streamprep: error: {internal_error(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

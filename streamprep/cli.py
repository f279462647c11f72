"""Command line: ``streamprep run|check|top|inspect|preprocess|record``.

Maps every StreamprepError to one line and an exit code; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console

from streamprep import config as config_mod
from streamprep import contract, logs, probe, verify
from streamprep.dashboard import dashboard_companion, top
from streamprep.errors import ConfigError, SinkError, StreamprepError
from streamprep.exporter import metrics_companion
from streamprep.frames import Image
from streamprep.logs import CallbackHandler
from streamprep.model import LoadedModel, load_model
from streamprep.pipeline import Companion, Pipeline, RunReport, describe_sources
from streamprep.preprocess.kernels import Preprocessor
from streamprep.record import record
from streamprep.redact import redact_text, redact_url
from streamprep.service import Notifier, default_status_socket, status_companion, systemd_companion
from streamprep.sinks.base import Sink
from streamprep.sinks.jsonl import JsonLinesSink
from streamprep.sinks.mqtt import MqttSink
from streamprep.sources.file import frame_at
from streamprep.sources.live import LiveOptions, classify

log = logging.getLogger("streamprep")


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise ConfigError(f"{self.prog}: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(prog="streamprep", description="Streaming preprocessor for computer vision at the edge.")
    p.add_argument("--debug", action="store_true", help="log debug detail and show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    run = sub.add_parser("run", help="run sources through a model and publish the results")
    run.add_argument("sources", nargs="*", metavar="SOURCE", help="video file or stream URL")
    run.add_argument("--config", type=Path, help="TOML config file (flags override it)")
    run.add_argument("--model", type=Path, help="ONNX model (default: the bundled SSD detector)")
    run.add_argument("--fps", type=float, help="sample every source to this frame rate")
    run.add_argument("--batch", type=int, help="max batch size")
    run.add_argument("--max-wait-ms", type=float, help="max time a batch waits to fill")
    run.add_argument("--decoder", help="auto, ssd, grid, classification or raw")
    run.add_argument("--score-threshold", type=float)
    run.add_argument("--out", help="JSON lines to FILE, or - for stdout (default when no --mqtt)")
    run.add_argument("--mqtt", help="publish to mqtt://[USER[:PASSWORD]@]HOST[:PORT]")
    run.add_argument("--device", help="device name used in MQTT topics (default: host name)")
    run.add_argument("--state-dir", type=Path, help="where undelivered MQTT results are spooled across restarts")
    run.add_argument(
        "--realtime", action="store_true", default=None, help="pace files like live cameras (latest frame wins)"
    )
    run.add_argument("--dashboard", action="store_true", help="draw a live dashboard on the terminal")
    run.add_argument("--metrics", metavar="HOST:PORT", help="serve Prometheus metrics (e.g. 127.0.0.1:9108)")
    run.add_argument("--status-socket", type=Path, help="unix socket for `streamprep top`")
    run.add_argument("--log-format", choices=("auto", "text", "journal", "json"), help="log line format")

    chk = sub.add_parser("check", help="validate a config: keys, values, models, files; start nothing")
    chk.add_argument("sources", nargs="*", metavar="SOURCE")
    chk.add_argument("--config", type=Path, help="TOML config file")
    chk.add_argument("--model", type=Path)
    chk.add_argument("--strict", action="store_true", help="fail when a model's preprocessing is assumed")

    top = sub.add_parser("top", help="live dashboard of a running daemon, through its status socket")
    top.add_argument("--socket", type=Path, help="status socket (default: $RUNTIME_DIRECTORY/status.sock)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")

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

    probe.add_parser(sub)
    verify.add_parser(sub)

    pre = sub.add_parser("preprocess", help="write the exact tensor a model would receive for an image (.npy)")
    pre.add_argument("image", type=Path, help="an image, or a video with --at")
    pre.add_argument("--at", type=float, metavar="SECONDS", help="a video: the frame shown at this time")
    pre.add_argument("--model", type=Path, help="ONNX model (default: the bundled SSD detector)")
    pre.add_argument("--config", type=Path, help="apply [model] overrides from this config")
    pre.add_argument("--out", type=Path, required=True, help="where to write the tensor (.npy)")
    return p


def _config_from_args(args: argparse.Namespace) -> config_mod.Config:
    data: dict[str, Any] = config_mod.load(args.config) if args.config else {}
    flags: dict[str, Any] = {"model": {}, "output": {}}
    if getattr(args, "sources", None):
        flags["sources"] = list(args.sources)
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
    if getattr(args, "state_dir", None) is not None:
        flags["state_dir"] = args.state_dir
    if getattr(args, "fps", None) is not None:
        flags["fps"] = args.fps
    if getattr(args, "device", None) is not None:
        flags["device"] = args.device
    if getattr(args, "realtime", None):
        flags["realtime"] = True
    if getattr(args, "metrics", None):
        flags["metrics"] = {"listen": args.metrics}
    if getattr(args, "status_socket", None):
        flags["status"] = {"socket": args.status_socket}
    if getattr(args, "log_format", None):
        flags["logging"] = {"format": args.log_format}
    where = f"{args.config}: " if args.config else ""
    return config_mod.parse(config_mod.merge(data, flags), where)


def _sinks(cfg: config_mod.Config) -> list[Sink]:
    out = cfg.output
    sinks: list[Sink] = []
    if out.out is not None or out.mqtt is None:
        sinks.append(JsonLinesSink(out.out or "-", cfg.device))
    if out.mqtt is not None:
        sinks.append(MqttSink(out.mqtt, cfg.device, cfg.state_dir))
    return sinks


def _first_error(exc: BaseException) -> BaseException:
    """The first StreamprepError inside (nested) exception groups, else ``exc``."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_error(inner)
            if isinstance(found, StreamprepError):
                return found
        return exc.exceptions[0]
    return exc


def _companions(cfg: config_mod.Config, args: argparse.Namespace, pipeline: Pipeline) -> list[Companion]:
    companions: list[Companion] = []
    notifier = Notifier()
    if notifier.enabled:
        companions.append(systemd_companion(notifier, pipeline.snapshot))
    status_path = cfg.status.socket or default_status_socket()
    if status_path is not None:
        companions.append(status_companion(status_path, pipeline.snapshot))
    if cfg.metrics.listen:
        companions.append(metrics_companion(cfg.metrics.listen, pipeline.snapshot))
    if getattr(args, "dashboard", False):
        companions.append(dashboard_companion(Console(stderr=True)))
    return companions


async def _serve(
    cfg: config_mod.Config, args: argparse.Namespace, models: dict[str, LoadedModel], sinks: list[Sink]
) -> RunReport:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    pipeline = Pipeline(cfg, models, sinks, drain_timeout=cfg.drain_timeout_s)
    notifier = Notifier()
    if getattr(args, "dashboard", False):
        logging.getLogger().addHandler(CallbackHandler(pipeline.metrics.error))

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("second %s: stopping now", sig.name)
            if main is not None:
                main.cancel()
            return
        log.info("%s received: stopping", sig.name)
        notifier.notify(stopping=1)
        stop.set()

    def on_reload() -> None:
        if args.config is None:
            log.warning("SIGHUP: no --config to reload; ignored")
            return
        notifier.notify(reloading=1)
        try:
            started, stopped = pipeline.apply(_config_from_args(args))
            log.info("reloaded %s: started %s; stopped %s", args.config, started or "none", stopped or "none")
        except StreamprepError as exc:
            log.error("reload refused, running on as before: %s", exc)
        notifier.notify(ready=1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    loop.add_signal_handler(signal.SIGHUP, on_reload)
    opened: list[Sink] = []
    try:
        for sink in sinks:
            await sink.open()
            opened.append(sink)
        try:
            return await pipeline.run(stop, _companions(cfg, args, pipeline))
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
    finally:
        for sink in opened:
            await sink.shutdown()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        notifier.close()


def _run(args: argparse.Namespace) -> int:
    cfg = _config_from_args(args)
    logs.setup(cfg.logging.format, "debug" if args.debug else cfg.logging.level, quiet=args.dashboard)
    if not cfg.sources:
        raise ConfigError("no sources: give SOURCE arguments or a [[sources]] table in the config")
    to_stdout = cfg.output.out == "-" or (cfg.output.out is None and cfg.output.mqtt is None)
    if args.dashboard and to_stdout and sys.stdout.isatty():
        raise ConfigError("--dashboard draws on the terminal: send results elsewhere with --out FILE or --mqtt URL")
    models = {key: load_model(cfg.model_for(key)) for key in cfg.used_models()}
    log.info("sources: %s", ", ".join(describe_sources(cfg)))
    report = asyncio.run(_serve(cfg, args, models, _sinks(cfg)))
    for s in report.snapshot.sources:
        log.info(
            "source %s: %s, %d decoded, %d sampled, %d processed, %d dropped",
            s.source,
            s.state,
            s.decoded,
            s.sampled,
            s.processed,
            s.dropped,
        )
    if report.failures:
        for failure in report.failures:
            print(f"streamprep: error: {redact_text(str(failure))}", file=sys.stderr)
        return report.failures[0].exit_code
    return 0


def _check(args: argparse.Namespace) -> int:
    """Frigate-style config check: everything ``run`` would refuse, refused here, without starting."""
    args.fps = args.batch = args.max_wait_ms = args.decoder = args.score_threshold = None
    args.out = args.mqtt = args.device = args.state_dir = args.realtime = None
    cfg = _config_from_args(args)
    problems: list[str] = []
    for key in cfg.used_models():
        try:
            model = load_model(cfg.model_for(key))
            print(f"model {key}: {model.name} ok ({model.spec.width}x{model.spec.height} {model.spec.layout.value})")
            lines, strict_problems = contract.review(key, model, args.strict)
            for line in lines:
                print(line)
            problems += strict_problems
        except StreamprepError as exc:
            problems.append(f"model {key}: {exc}")
    for spec, sid in zip(cfg.sources, cfg.source_ids(), strict=True):
        kind = classify(spec.url)[0]
        if kind == "file" and not Path(spec.url).is_file():
            problems.append(f"source {sid}: {spec.url}: no such file")
        else:
            print(f"source {sid}: {kind} {redact_url(spec.url)}")
    if cfg.output.mqtt is not None:
        MqttSink(cfg.output.mqtt, cfg.device, None)  # credentials and TLS files are read here
        print(f"mqtt: {redact_url(cfg.output.mqtt.url)}")
    if problems:
        raise ConfigError("; ".join(problems))
    print("config ok")
    return 0


def _top(args: argparse.Namespace) -> int:
    path = args.socket or default_status_socket() or Path("/run/streamprep/status.sock")
    if not path.exists():
        raise ConfigError(f"top: no status socket at {path}: is streamprep running with status.socket set?")
    try:
        asyncio.run(top(path, Console(), args.interval))
    except (OSError, TimeoutError) as exc:
        raise SinkError(f"top: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return 0


def _model_config(args: argparse.Namespace) -> config_mod.ModelConfig:
    data: dict[str, Any] = config_mod.load(args.config) if args.config else {}
    if args.model is not None:
        data = config_mod.merge(data, {"model": {"path": args.model}})
    return config_mod.parse(data, f"{args.config}: " if args.config else "").model


def _preprocess(args: argparse.Namespace) -> int:
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
    if not args.seconds > 0:
        raise ConfigError("record: --seconds must be positive")
    options = LiveOptions(transport=args.transport, open_timeout=args.timeout, stall_timeout=args.timeout)
    done = record(args.source, args.seconds, args.out, options)
    print(f"{done.path}: {done.packets} frames, {done.seconds:.2f} s", file=sys.stderr)
    return 0


def _inspect(args: argparse.Namespace) -> int:
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
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    logs.setup("auto", "debug" if debug else "info")
    try:
        args = _parser().parse_args(argv)
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
            return probe.main(args)
        if args.command == "verify":
            return verify.main(args)
        return _inspect(args)
    except StreamprepError as exc:
        if debug:
            log.exception("failed")
        print(f"streamprep: error: {redact_text(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

"""``streamprep run`` and ``streamprep check``: the same preflight, one runs, the other reports."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import sys
from typing import TYPE_CHECKING

from streamprep.ops import logs
from streamprep.values.errors import ConfigError
from streamprep.values.redact import one_line
from streamprep.version import __version__

if TYPE_CHECKING:
    from streamprep.ops.signals import Signals

from streamprep.cli._args import _config_from_args

log = logging.getLogger("streamprep")


def _run(args: argparse.Namespace, signals: Signals) -> int:
    from streamprep.ops.signals import StartupInterrupted

    try:
        from streamprep.flow.threads import limit_malloc_arenas

        # a crash in native code (a decoder, the inference runtime) leaves every thread's Python stack in the log
        faulthandler.enable()
        limit_malloc_arenas()  # before any thread starts: memory stays flat on long runs
        signals.checkpoint()
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
    found.enforce(log)
    if count > 1 and args.worker is None:
        from streamprep.ops import workers

        found.models.clear()  # checked; each worker loads its own
        return workers.supervise(cfg, count, args.argv, signals, reload, dashboard=args.dashboard)
    outcome = Daemon(cfg, signals, reload, dashboard=args.dashboard, checked=found).run()
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
        print(one_line(line))
    if cfg.workers > 1:
        from streamprep.ops.workers import plan, shares

        ids = cfg.source_ids()
        for k, share in enumerate(shares(ids, plan(ids, cfg.workers), cfg.workers)):
            print(f"worker {k}: {', '.join(share) if share else 'no sources (not started)'}")
    for line in found.warnings:
        print(f"warning: {one_line(line)}")
    problems = list(found.problems)
    if args.strict and found.warnings and not problems:
        more = f" (and {len(found.warnings) - 1} more warning(s) above)" if len(found.warnings) > 1 else ""
        problems.append(ConfigError(f"--strict: {found.warnings[0]}{more}"))
    if problems:
        for problem in problems[1:]:
            print(f"problem: {one_line(str(problem))}")
        raise problems[0]
    print("config ok")
    return 0

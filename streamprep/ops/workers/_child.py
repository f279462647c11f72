"""The worker side of ``--workers``: a worker's share of the config, its logs, its watch on the supervisor."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from streamprep.config.schema import Config
from streamprep.ops.workers._shares import (
    parse_worker,
    read_plan,
    read_resume,
    socket_path,
)
from streamprep.values.errors import ConfigError
from streamprep.values.names import topic_level

log = logging.getLogger("streamprep.ops.workers")


def wants_json_lines(cfg: Config) -> bool:
    out = cfg.output
    return out.out is not None or out.mqtt is None


def worker_config(
    cfg: Config, index: int, placed: Mapping[str, int], directory: Path, resume: Mapping[str, int] | None = None
) -> Config:
    """Worker ``index``'s config: its share of the sources as ``placed`` says (their ids fixed as the whole
    config names them), its own outbox, MQTT client id and status socket; JSON lines to stdout (the
    supervisor's pipe). A source the plan does not know yet (the config changed again) waits for a reload.
    ``resume``: the seq a file replay resumes at, by source id (a restarted worker)."""
    ids = cfg.source_ids()
    resume = resume or {}
    kept = tuple(
        s.model_copy(update={"id": sid}).resumed_at(resume.get(sid, 0))
        for s, sid in zip(cfg.sources, ids, strict=True)
        if placed.get(sid) == index
    )
    output = cfg.output.model_copy(update={"out": "-" if wants_json_lines(cfg) else None})
    if cfg.output.mqtt is not None:
        base = cfg.output.mqtt.client_id or f"streamprep-{topic_level(cfg.device)}"
        mqtt = cfg.output.mqtt.model_copy(update={"client_id": f"{base}-worker{index}"[:128]})
        output = output.model_copy(update={"mqtt": mqtt})
    update: dict[str, Any] = {
        "sources": kept,
        "output": output,
        "workers": 1,
        "metrics": cfg.metrics.model_copy(update={"listen": None}),
        "status": cfg.status.model_copy(update={"socket": socket_path(directory, index)}),
    }
    if cfg.state_dir is not None:
        update["state_dir"] = cfg.state_dir / f"worker-{index}"
    return cfg.model_copy(update=update)


def as_worker(
    cfg: Config, spec: str, directory: Path | None, reload: Callable[[], Config] | None
) -> tuple[Config, Callable[[], Config] | None]:
    """This process is worker ``spec`` (``K/N``): its config, and its reload (the same share of the config
    read anew). Its logs name it, and it stops when its supervisor is gone."""
    index, _ = parse_worker(spec)
    if directory is None:
        raise ConfigError("--worker needs --worker-dir")
    label_logs(index)
    watch_parent()
    mine = worker_config(cfg, index, read_plan(directory), directory, read_resume(directory, index))
    if reload is None:
        return mine, None
    again = reload
    return mine, lambda: worker_config(again(), index, read_plan(directory), directory, read_resume(directory, index))


def label_logs(index: int) -> None:
    """Every log record of this process names its worker (``streamprep.run.supervisor [worker 1]: ...``)."""
    factory = logging.getLogRecordFactory()

    def labelled(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.name = f"{record.name} [worker {index}]"
        return record

    logging.setLogRecordFactory(labelled)


def watch_parent() -> None:
    """A worker stops itself (SIGTERM) when its supervisor is gone: its stdin, a pipe, reaches end of file."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        log.warning("the worker supervisor is gone: stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent watch", daemon=True).start()

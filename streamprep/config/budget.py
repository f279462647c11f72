"""What each source costs (memory, threads), and refusing a config that would not fit the machine.

Measured on a 2-core machine (see ``bench/RESULTS.md``, "Cost per source"): a file source's memory is
dominated by its decoder, which keeps about a dozen frames (references, reordering, its frame pool) whatever
the queue size; a 1080p H.264 file costs about 38 MB, a 720p one about 18 MB. At most ``limits.open_files``
files are decoded at once (the others wait their turn, holding nothing), and they share one pool of decode
threads (one FFmpeg thread each once there are more files than cores); every live source has a thread of
its own plus its decoder's. The estimate below uses those figures; ``[limits]`` sets the budget.

A file's frame size is read by opening it (:func:`probe_files`), each open bounded in time like the run's own
(a FIFO nobody writes to, a network mount that does not answer: see :mod:`streamprep.sources.opening`), and
all of them within :data:`PROBE_BUDGET_S`; a file not read in time is assumed 1080p.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamprep.config.resolve import resolve_sources
from streamprep.config.schema import Config
from streamprep.flow.threads import cores
from streamprep.sources.file import did_not_open, probe_file
from streamprep.sources.live import SourceKind
from streamprep.sources.opening import Opener, OpenTimeout
from streamprep.sources.spec import SourceSpec
from streamprep.values.errors import ConfigError, SourceOpenError

DECODER_FRAMES = 12  # frames a decoder holds (H.264: references, reordering, pool), measured
FILE_CHUNK = 4  # sampled frames a file source decodes ahead per trip to its thread
LIVE_HANDOFF = 2
OVERHEAD_MB = 1.0  # per source: containers, buffers, bookkeeping
PROCESS_MB = 250.0  # the process itself: Python, NumPy, OpenCV, ONNX Runtime and a small model
PROCESS_THREADS = 12
ASSUMED_SIZE = (1920, 1080)
PROBE_BUDGET_S = 10.0  # reading every file's frame size: files left when this has passed are not read


@dataclass(frozen=True)
class SourceCost:
    source: str
    width: int
    height: int
    size_known: bool  # False: the size was assumed (a camera not yet opened)
    memory_mb: float
    threads: int
    live: bool = False


@dataclass(frozen=True)
class FileProbe:
    """What opening a file source found: its frame size, or the error its run would give (or neither:
    it was not read, time ran out)."""

    size: tuple[int, int] | None = None
    problem: SourceOpenError | None = None


def probe_files(sources: Sequence[SourceSpec], budget_s: float = PROBE_BUDGET_S) -> dict[str, FileProbe]:
    """Open every file source of ``sources`` once (by source id), each within its ``open_timeout_s``, all
    within ``budget_s``."""
    deadline = time.monotonic() + budget_s
    found: dict[str, FileProbe] = {}
    for spec in sources:
        sid = spec.id
        if spec.kind is not SourceKind.FILE:
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            found[sid] = FileProbe()
            continue
        path = Path(spec.url)
        own = spec.options.open_timeout
        timeout = min(own, left)
        opener: Opener[tuple[int, int]] = Opener(sid, lambda _: None)
        try:
            found[sid] = FileProbe(size=opener.open(functools.partial(probe_file, path, sid), timeout))
        except SourceOpenError as exc:
            found[sid] = FileProbe(problem=exc)
        except OpenTimeout as exc:  # its own bound, or what was left of all of them (then: not read)
            found[sid] = FileProbe(problem=did_not_open(path, sid, exc) if timeout == own else None)
        except Exception:  # anything else: it fails in its own time, with its own message
            found[sid] = FileProbe()
    return found


def _frame_size(spec: SourceSpec, probe: FileProbe | None) -> tuple[int, int, bool]:
    if probe is not None and probe.size is not None:
        return (*probe.size, True)
    size = spec.options.input_options.get("video_size", "")
    w, _, h = size.partition("x")
    if w.isdigit() and h.isdigit():
        return int(w), int(h), True
    return (*ASSUMED_SIZE, False)


def estimate(
    cfg: Config, probes: Mapping[str, FileProbe] | None = None, sources: Sequence[SourceSpec] | None = None
) -> list[SourceCost]:
    """The estimated cost of each source of ``cfg`` (``probes``: what :func:`probe_files` found; read now
    when not given; ``sources``: the sources of ``cfg`` resolved, resolved now when not given)."""
    sources = resolve_sources(cfg) if sources is None else sources
    probes = probe_files(sources) if probes is None else probes
    files = sum(not s.live for s in sources)
    ffmpeg_threads = 1 if files >= cores() else cores() + 1
    costs = []
    for spec in sources:
        width, height, known = _frame_size(spec, probes.get(spec.id))
        frame_mb = width * height * 1.5 / 1e6
        if spec.live:
            held = DECODER_FRAMES + spec.queue_size + LIVE_HANDOFF + 1
            threads = 1 + cores() + 1
        else:
            held = DECODER_FRAMES + spec.queue_size + FILE_CHUNK
            threads = ffmpeg_threads if files < cores() else 0
        costs.append(SourceCost(spec.id, width, height, known, held * frame_mb + OVERHEAD_MB, threads, spec.live))
    return costs


def memory_available_mb() -> float | None:
    """What this process may use: the smaller of the machine's memory and its cgroup's limit (MemoryMax=)."""
    limits: list[float] = []
    with contextlib.suppress(ValueError, OSError):
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e6)
    try:
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit():
            limits.append(int(text) / 1e6)
    except OSError:
        pass
    return min(limits) if limits else None


def tasks_available() -> int | None:
    """The cgroup's task limit (TasksMax=), if any."""
    try:
        text = Path("/sys/fs/cgroup/pids.max").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def total_mb(costs: list[SourceCost], open_files: int) -> float:
    """The process, every live source, and the ``open_files`` costliest files (the others wait their turn)."""
    files = sorted((c.memory_mb for c in costs if not c.live), reverse=True)[:open_files]
    return PROCESS_MB + sum(c.memory_mb for c in costs if c.live) + sum(files)


def check(
    cfg: Config, probes: Mapping[str, FileProbe] | None = None, sources: Sequence[SourceSpec] | None = None
) -> list[SourceCost]:
    """Refuse a config whose sources would not fit ``[limits]``; returns the estimate (``probes`` and
    ``sources``: as for :func:`estimate`)."""
    limits = cfg.limits
    n = len(cfg.sources)
    if n > limits.max_sources:
        raise ConfigError(
            f"limits.max_sources: {n} sources configured, at most {limits.max_sources} allowed; "
            "raise limits.max_sources if this machine can take them"
        )
    costs = estimate(cfg, probes, sources)
    memory = total_mb(costs, limits.open_files)
    budget = limits.memory_mb
    origin = "limits.memory_mb"
    if budget is None and (available := memory_available_mb()) is not None:
        budget, origin = int(0.8 * available), "80% of the memory this process may use; set limits.memory_mb"
    if budget is not None and memory > budget:
        biggest = max(costs, key=lambda c: c.memory_mb)
        guessed = "" if biggest.size_known else ", size assumed: set options.video_size"
        raise ConfigError(
            f"limits.memory_mb: the {n} sources would need about {memory:.0f} MB, over the budget of {budget} MB "
            f"({origin}); the largest, {biggest.source} ({biggest.width}x{biggest.height}{guessed}), needs "
            f"{biggest.memory_mb:.0f} MB, mostly the ~{DECODER_FRAMES} frames its decoder keeps: use fewer or "
            "smaller streams, or raise the budget"
        )
    threads = PROCESS_THREADS + cores() * 2 + sum(c.threads for c in costs)
    cap = limits.threads
    origin = "limits.threads"
    if cap is None and (tasks := tasks_available()) is not None:
        cap, origin = int(0.8 * tasks), "80% of this service's task limit (TasksMax); set limits.threads"
    if cap is not None and threads > cap:
        live = sum(c.live for c in costs)
        raise ConfigError(
            f"limits.threads: the sources would need about {threads} threads ({live} live source(s) at "
            f"{2 + cores()} each), over the cap of {cap} ({origin}): use fewer live sources or raise the cap"
        )
    return costs

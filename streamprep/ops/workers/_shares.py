"""Which worker owns which source, and the files a supervisor and its workers share."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streamprep.values.errors import ConfigError
from streamprep.values.metrics import Snapshot

log = logging.getLogger("streamprep.ops.workers")


def _hash(text: str) -> int:
    """A stable 64-bit hash (never Python's per-process ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def preference(source_id: str, workers: int) -> list[int]:
    """The workers in ``source_id``'s order of preference: rendezvous (highest random weight) hashing."""
    return sorted(range(workers), key=lambda k: (-_hash(f"{k}/{source_id}"), k))


def plan(ids: Sequence[str], workers: int, previous: Mapping[str, int] | None = None) -> dict[str, int]:
    """Which worker owns each source id (see the module docstring). With ``previous`` (a reload), the ids
    it already placed keep their worker; only new ones are placed."""
    room = -(-len(ids) // workers)  # an equal share, rounded up
    load = [0] * workers
    found: dict[str, int] = {}
    wanted = set(ids)
    kept = {sid: k for sid, k in (previous or {}).items() if sid in wanted and 0 <= k < workers}
    for sid, k in kept.items():
        found[sid] = k
        load[k] += 1
    for sid in sorted((i for i in ids if i not in kept), key=lambda i: (_hash(i), i)):
        choices = preference(sid, workers)
        k = next((k for k in choices if load[k] < room), min(choices, key=lambda k: load[k]))
        found[sid] = k
        load[k] += 1
    return found


def shares(ids: Sequence[str], placed: Mapping[str, int], workers: int) -> list[list[str]]:
    """The source ids of each worker, in config order."""
    found: list[list[str]] = [[] for _ in range(workers)]
    for sid in ids:
        if sid in placed:
            found[placed[sid]].append(sid)
    return found


def plan_path(directory: Path) -> Path:
    return directory / "shares.json"


def write_plan(directory: Path, placed: Mapping[str, int]) -> None:
    """Atomically: a worker reading it never sees half of it."""
    write_atomically(plan_path(directory), dict(placed))


def read_plan(directory: Path) -> dict[str, int]:
    try:
        data = json.loads(plan_path(directory).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--worker-dir {directory}: no plan of the shares ({exc})") from None
    return {str(k): int(v) for k, v in data.items()}


def parse_worker(spec: str) -> tuple[int, int]:
    """``K/N`` from ``--worker K/N``."""
    k, _, n = spec.partition("/")
    if not (k.isdigit() and n.isdigit() and 0 <= int(k) < int(n)):
        raise ConfigError(f"--worker {spec!r}: expected K/N with 0 <= K < N")
    return int(k), int(n)


def socket_path(directory: Path, index: int) -> Path:
    return directory / f"worker-{index}.sock"


def resume_path(directory: Path, index: int) -> Path:
    """Where worker ``index`` finds the seq each of its files resumes at (written before every start)."""
    return directory / f"worker-{index}.resume.json"


def final_path(directory: Path, index: int) -> Path:
    """Where worker ``index`` leaves its end-of-run counts for the supervisor."""
    return directory / f"worker-{index}.final.json"


def write_atomically(path: Path, data: Any) -> None:
    """As JSON; a reader never sees half of it."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    tmp.replace(path)


def read_resume(directory: Path, index: int) -> dict[str, int]:
    """The seq each file of worker ``index`` resumes at (none on a first start)."""
    try:
        data = json.loads(resume_path(directory, index).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--worker-dir {directory}: unreadable resume points ({exc})") from None
    return {str(k): int(v) for k, v in data.items()}


def report_final(directory: Path | None, spec: str, snapshot: Snapshot | None) -> None:
    """A worker's counts at its end, for its supervisor (its last snapshot over the status socket may be a
    second old)."""
    if directory is None or snapshot is None:
        return
    index, _ = parse_worker(spec)
    write_atomically(final_path(directory, index), snapshot.to_json())


def read_final(directory: Path, index: int) -> Snapshot | None:
    """What :func:`report_final` left (None: the worker did not get that far), removed once read."""
    path = final_path(directory, index)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("worker %d: unreadable final counts (%s); its last snapshot is used", index, exc)
        return None
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return Snapshot.from_json(data)


def runtime_directory() -> Path:
    """Where the workers' status sockets live: ``$RUNTIME_DIRECTORY/workers`` under systemd, else a new
    temporary directory (removed at the end)."""
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        path = Path(runtime.split(":")[0]) / "workers"
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="streamprep-workers-"))

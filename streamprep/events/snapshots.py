"""Snapshots: JPEG crops (and optionally whole frames with the box drawn) of an object's best frame.

Rendering runs where the event engine runs (a worker thread, never the event loop). Files are written by
:class:`SnapshotStore`'s own thread, atomically (write, then rename), and the directory is kept under a
total size by removing the oldest files first. The engine waits (a bounded time) for its files to be
written: an event names a snapshot only once the file is there. A failed write leaves no ``.tmp`` behind;
the first failure is logged, the others are counted (``failed``) and summed up when the store closes.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import threading
from pathlib import Path

import cv2
import numpy as np

from streamprep.values.frames import BoxTuple, Image

log = logging.getLogger(__name__)

_QUEUE = 64  # snapshot files waiting to be written; beyond this they are dropped (counted)
WAIT_S = 2.0  # how long the engine waits for a snapshot to be written before its event goes without it


class Pending:
    """One file given to the store: ``wait`` says whether it was written."""

    __slots__ = ("_done", "ok")

    def __init__(self) -> None:
        self._done = threading.Event()
        self.ok = False

    def settle(self, ok: bool) -> None:
        self.ok = ok
        self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float = WAIT_S) -> bool:
        """True once the file is written; False if it failed, was dropped, or is not written within ``timeout``."""
        return self._done.wait(timeout) and self.ok


def _planes(image: Image) -> tuple[Image, Image, Image]:
    """The Y, U and V planes of an I420 frame stored as an (H·3/2)×W array."""
    width = image.shape[1]
    height = image.shape[0] * 2 // 3
    flat = image.reshape(-1)
    y = flat[: width * height].reshape(height, width)
    quarter = (height // 2) * (width // 2)
    u = flat[width * height : width * height + quarter].reshape(height // 2, width // 2)
    v = flat[width * height + quarter : width * height + 2 * quarter].reshape(height // 2, width // 2)
    return y, u, v


def to_bgr(image: Image, pixel_format: str, region: tuple[int, int, int, int] | None = None) -> Image:
    """The frame (or ``region`` x1, y1, x2, y2 of it; I420 regions are widened to even edges) as BGR."""
    if pixel_format != "yuv420p":
        if region is None:
            return image
        x1, y1, x2, y2 = region
        return np.ascontiguousarray(image[y1:y2, x1:x2])
    y, u, v = _planes(image)
    height, width = y.shape
    x1, y1, x2, y2 = region if region is not None else (0, 0, width, height)
    x1, y1 = x1 & ~1, y1 & ~1
    x2, y2 = min(width, x2 + (x2 & 1)), min(height, y2 + (y2 & 1))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return np.zeros((max(y2 - y1, 1), max(x2 - x1, 1), 3), np.uint8)
    parts = [y[y1:y2, x1:x2], u[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2], v[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2]]
    i420 = np.concatenate([p.reshape(-1) for p in parts]).reshape((y2 - y1) * 3 // 2, x2 - x1)
    return np.asarray(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420), dtype=np.uint8)


def crop_region(box: BoxTuple, width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """The box grown by ``margin`` of its size on every side, clipped to the frame, in whole pixels."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    x1 = max(0, int(np.floor(box[0] - margin * bw)))
    y1 = max(0, int(np.floor(box[1] - margin * bh)))
    x2 = min(width, int(np.ceil(box[2] + margin * bw)))
    y2 = min(height, int(np.ceil(box[3] + margin * bh)))
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def encode_jpeg(image: Image, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(data.tobytes())


def render_crop(image: Image, pixel_format: str, box: BoxTuple, margin: float, quality: int) -> bytes:
    height = image.shape[0] * 2 // 3 if pixel_format == "yuv420p" else image.shape[0]
    region = crop_region(box, image.shape[1], height, margin)
    return encode_jpeg(to_bgr(image, pixel_format, region), quality)


def render_full(image: Image, pixel_format: str, box: BoxTuple, caption: str, quality: int) -> bytes:
    frame = np.array(to_bgr(image, pixel_format), copy=True)
    p1 = (round(box[0]), round(box[1]))
    p2 = (round(box[2]), round(box[3]))
    thickness = max(2, frame.shape[0] // 300)
    cv2.rectangle(frame, p1, p2, (0, 220, 0), thickness)
    scale = max(0.5, frame.shape[0] / 1200)
    (tw, th), _ = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = max(p1[1] - th - 2 * thickness, 0)
    cv2.rectangle(frame, (p1[0], top), (p1[0] + tw + 2 * thickness, top + th + 2 * thickness), (0, 220, 0), -1)
    cv2.putText(
        frame, caption, (p1[0] + thickness, top + th + thickness), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness
    )
    return encode_jpeg(frame, quality)


def fit_jpeg(image: Image, pixel_format: str, box: BoxTuple, margin: float, quality: int, limit: int) -> bytes | None:
    """The crop as a JPEG of at most ``limit`` bytes, lowering the quality as needed (None if it never fits)."""
    q = quality
    while q >= 20:
        data = render_crop(image, pixel_format, box, margin, q)
        if len(data) <= limit:
            return data
        q -= 20
    return None


class SnapshotStore:
    """Writes snapshot files under ``root`` in a thread of its own, keeping the total under ``max_bytes``."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.written = 0
        self.dropped = 0  # files not written because the queue was full
        self.failed = 0
        self.removed = 0
        self._files: collections.OrderedDict[Path, int] = collections.OrderedDict()  # oldest first
        self._total = 0
        self._queue: queue.Queue[tuple[str, bytes, Pending] | None] = queue.Queue(_QUEUE)
        self._first_failure: str | None = None
        self._stalled = False  # a wait timed out: until a write completes, the engine does not wait again
        self._idle = threading.Condition()
        self._pending = 0
        root.mkdir(parents=True, exist_ok=True)
        existing = sorted((p.stat().st_mtime, p) for p in root.rglob("*.jpg") if p.is_file())
        for _, path in existing:
            size = path.stat().st_size
            self._files[path] = size
            self._total += size
        self._thread = threading.Thread(target=self._run, name="snapshot writer", daemon=True)
        self._thread.start()

    def save(self, relative: str, data: bytes) -> Pending:
        """Queue a file to be written (replacing one of the same name); never blocks. The answer says when
        (and whether) it is written."""
        pending = Pending()
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait((relative, data, pending))
        except queue.Full:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
            self.dropped += 1
            pending.settle(False)
            log.warning("snapshot writer is behind: %s not written (%d dropped so far)", relative, self.dropped)
        return pending

    def wait_written(self, pending: Pending) -> bool:
        """Whether the file is written, waiting up to :data:`WAIT_S` for it, or not at all while the writer is
        stalled (a hung disk must not hold the inference thread for every snapshot)."""
        if pending.wait(0.0 if self._stalled else WAIT_S):
            return True
        if not pending.done:
            self._stalled = True
        return False

    def flush(self, timeout: float) -> bool:
        """Wait until every queued file is written; False if that took longer than ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
        if self.failed:
            log.warning(
                "snapshots: %d file(s) could not be written under %s (the first: %s); their events name none",
                self.failed,
                self.root,
                self._first_failure,
            )

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            relative, data, pending = item
            ok = False
            try:
                self._write(self.root / relative, data)
                ok = True
            except OSError as exc:
                self.failed += 1
                if self._first_failure is None:
                    self._first_failure = f"{relative}: {exc.strerror or exc}"
                    log.error(
                        "snapshot %s: %s (further failures are counted, and summed up at the end)",
                        relative,
                        exc.strerror or exc,
                    )
            finally:
                self._stalled = False
                pending.settle(ok)
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        self._total -= self._files.pop(path, 0)
        self._files[path] = len(data)
        self._total += len(data)
        self.written += 1
        while self._total > self.max_bytes and len(self._files) > 1:
            oldest, size = self._files.popitem(last=False)
            self._total -= size
            try:
                oldest.unlink()
                self.removed += 1
            except FileNotFoundError:
                pass

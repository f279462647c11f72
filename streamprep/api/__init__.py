"""streamprep as a library: results (or bare tensors) from video, in a few lines.

    import asyncio
    import streamprep

    for result in streamprep.stream("video.mp4", fps=5):           # a synchronous iterator
        print(result.source, result.pts, result.detections)

    async def main() -> None:                                       # the same, async
        async with streamprep.open(["rtsp://cam/1", "rtsp://cam/2"], model="fastestdet_352") as run:
            async for result in run:
                print(run.snapshot().sources)

    asyncio.run(main())

    for batch in streamprep.tensors("video.mp4", "ssd_mobilenet_v2_fpnlite_256_int8", batch=8):  # your inference
        print(batch.tensor.shape, batch.slots[0].to_source([[64, 64, 192, 192]]))  # back to source pixels

Everything the command line can do is here: the same supervision, sampling, batching, preprocessing and
accounting. Options are the config's keys (top level or ``[model]``), by name. It is bounded by default:
a consumer slower than a live source makes that source's results drop (counted in ``snapshot()``), it never
makes memory grow; results from files wait for the consumer instead, so none is lost.

Errors: one that stops the whole run (a model that cannot be loaded) is raised at once. A source that
fails (a missing, corrupt or video-less file) does not stop the others: their results all come, and when
the run ends the iterator raises the first failure, a :class:`~streamprep.values.errors.SourceError` (the others
are notes on it, and all are in ``run.report.failures``). With one source that is at once. Leaving the loop
early (``break``, ``run.cancel()``) raises nothing.
"""

from streamprep.api._run import Run, configure, open, stream
from streamprep.api._tensors import Slot, TensorBatch, tensors

__all__ = ["Run", "Slot", "TensorBatch", "configure", "open", "stream", "tensors"]

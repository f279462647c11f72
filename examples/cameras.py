"""Several live sources at once, asynchronously, with the run's counters: streamprep.open.

    python examples/cameras.py [SOURCE ...] [--results 30]

Defaults to two FFmpeg test cameras. Leaving the ``async with`` block stops the sources and finishes what
is in flight; the counters show sampled = processed + dropped for every source.
"""

import argparse
import asyncio

import streamprep

CAMERAS = ["lavfi:testsrc2=size=1280x720:rate=30,realtime", "lavfi:mandelbrot=size=640x480:rate=25,realtime"]


async def main(sources: list[str], wanted: int) -> None:
    async with streamprep.open(sources, fps=5, batch=2) as run:
        async for result in run:
            print(f"{result.source:<40} seq {result.seq:3d}  age {result.timings.age_ms:5.1f} ms")
            wanted -= 1
            if wanted == 0:
                break
        for source in run.snapshot().sources:
            print(f"{source.source}: {source.state}, {source.summary()}")
    assert run.report is not None
    for source in run.report.snapshot.sources:
        print(f"at the end: {source.source}: {source.summary()}")


parser = argparse.ArgumentParser()
parser.add_argument("sources", nargs="*", default=CAMERAS)
parser.add_argument("--results", type=int, default=30)
args = parser.parse_args()
asyncio.run(main(args.sources, args.results))

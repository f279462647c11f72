"""The README's second example, exactly as it is printed there (run it from the repository's root)."""

import asyncio

import streamprep


async def main() -> None:
    async with streamprep.open(
        ["recordings/demo_720p.mp4", "lavfi:testsrc2=size=1280x720:rate=30,realtime"], fps=5, realtime=True
    ) as run:  # the same, async
        async for result in run:
            if result.seq == 10:
                break
        for s in run.snapshot().sources:
            print(s.source, s.state, s.summary())


asyncio.run(main())

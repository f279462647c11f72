"""The README's first example, exactly as it is printed there (run it from the repository's root)."""

import streamprep

for result in streamprep.stream("recordings/demo_720p.mp4", fps=1):  # a synchronous iterator
    print(result.source, result.pts, [(d.label, round(d.score, 2)) for d in result.detections])

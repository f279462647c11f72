"""The README's third example, exactly as it is printed there (run it from the repository's root)."""

import onnxruntime as ort

import streamprep
from streamprep.inference.settings import BUNDLED_MODELS

model = BUNDLED_MODELS / "ssd_mobilenet_v2_fpnlite_256_int8.onnx"
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])  # your own inference
name = session.get_inputs()[0].name
for batch in streamprep.tensors("recordings/demo_720p.mp4", model, fps=1, batch=4):
    outputs = session.run(None, {name: batch.tensor})
    slot = batch.slots[0]  # which frame row 0 is
    print(batch.tensor.shape, batch.tensor.dtype, slot.source, slot.pts, slot.to_source([[64, 64, 192, 192]]))

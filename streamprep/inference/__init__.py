"""Models: ONNX Runtime and KServe sessions, loading, contracts, test-time augmentation, decoders."""

"""The decoders' names, for the config to check against (without loading the decoders)."""

DECODERS = ("auto", "raw", "ssd", "yolov5", "yolov8", "grid", "classification", "yunet")
